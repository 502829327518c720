#pragma once
// Internal to joulecut_ops: the int8 Linear kernel for NVIDIA GPUs (LibTorch's quantized ops are CPU-only),
// behind the public op of joulecut/int8_cuda.h.
// Plain CUDA C++ with no LibTorch dependency, so it compiles (and is compile-checked in CI)
// wherever nvcc exists. This header needs neither CUDA nor Torch.
#include <cstdint>

namespace joulecut::cuda {

// y[m, n] = (sum_k x[m, k] * w[n, k]) * x_scale * w_scale[n] + bias[n], then ReLU if asked.
// x is int8 symmetric per tensor, w int8 symmetric per output channel (as stored by a Linear
// layer: [out, in], row-major). Products accumulate exactly in int32 (dp4a).
// Preconditions: every pointer is device memory; k % 4 == 0 (pad the input dimension);
// `accumulator` holds m * n int32; bias may be null; `stream` is a cudaStream_t or null.
// Returns 0 on success, else the cudaError_t of the failed launch.
int int8_linear(const std::int8_t* x, const std::int8_t* w, float x_scale, const float* w_scale, const float* bias,
                float* y, std::int32_t* accumulator, int m, int n, int k, bool relu, void* stream);

// Just the int32 product c[m, n] = x[m, k] . w[n, k], for exact tests.
int int8_gemm(const std::int8_t* x, const std::int8_t* w, std::int32_t* c, int m, int n, int k, void* stream);

}  // namespace joulecut::cuda
