#pragma once
// The threads a model runs on. Torch-free header.
namespace joulecut {

// Sets LibTorch's intra-op threads and pins the BLAS pool to one thread so they do not
// oversubscribe. threads <= 0 means all logical cores. Returns the thread count set.
int configure_threads(int threads);

}  // namespace joulecut
