#pragma once
// The threads a model runs on, and the BLAS behind them. Torch-free header.
#include "joulecut/platform.h"

namespace joulecut {

// The BLAS LibTorch's fp32 linear layers call: the library loaded in the process (Debian's
// LibTorch calls libblas.so.3), else the one LibTorch carries inside (PyPI's: MKL).
BlasInfo blas_in_use();

// Sets LibTorch's intra-op threads and pins the BLAS pool to one thread so they do not
// oversubscribe. threads <= 0 means all logical cores. Returns the thread count set.
int configure_threads(int threads);

}  // namespace joulecut
