// int8 x int8 -> int32 GEMM with dp4a (4 byte products per instruction), then a fused
// dequantize + bias + ReLU epilogue. Tiles of 16x16 outputs; each thread owns one output and
// walks K four bytes at a time through shared memory.
#include <cuda_runtime.h>

#include "int8_linear.h"

namespace joulecut::cuda {
namespace {

constexpr int kTile = 16;

__global__ void gemm_dp4a(const std::int32_t* __restrict__ x, const std::int32_t* __restrict__ w,
                          std::int32_t* __restrict__ c, int m, int n, int words) {
  __shared__ std::int32_t xs[kTile][kTile + 1];
  __shared__ std::int32_t ws[kTile][kTile + 1];
  const int row = blockIdx.y * kTile + threadIdx.y;  // output row (batch)
  const int col = blockIdx.x * kTile + threadIdx.x;  // output column (channel)
  const int w_row = blockIdx.x * kTile + threadIdx.y;
  int acc = 0;
  for (int t = 0; t < words; t += kTile) {
    const int kw = t + threadIdx.x;
    xs[threadIdx.y][threadIdx.x] = (row < m && kw < words) ? x[row * words + kw] : 0;
    ws[threadIdx.y][threadIdx.x] = (w_row < n && kw < words) ? w[w_row * words + kw] : 0;
    __syncthreads();
#pragma unroll
    for (int i = 0; i < kTile; ++i) acc = __dp4a(xs[threadIdx.y][i], ws[threadIdx.x][i], acc);
    __syncthreads();
  }
  if (row < m && col < n) c[row * n + col] = acc;
}

__global__ void dequantize(const std::int32_t* __restrict__ c, float x_scale, const float* __restrict__ w_scale,
                           const float* __restrict__ bias, float* __restrict__ y, int m, int n, bool relu) {
  const int i = blockIdx.x * blockDim.x + threadIdx.x;
  if (i >= m * n) return;
  const int col = i % n;
  float v = float(c[i]) * x_scale * w_scale[col] + (bias ? bias[col] : 0.0f);
  y[i] = relu ? fmaxf(v, 0.0f) : v;
}

}  // namespace

int int8_gemm(const std::int8_t* x, const std::int8_t* w, std::int32_t* c, int m, int n, int k, void* stream) {
  if (k % 4 != 0 || m <= 0 || n <= 0 || k <= 0) return int(cudaErrorInvalidValue);
  const dim3 block(kTile, kTile);
  const dim3 grid((n + kTile - 1) / kTile, (m + kTile - 1) / kTile);
  gemm_dp4a<<<grid, block, 0, static_cast<cudaStream_t>(stream)>>>(
      reinterpret_cast<const std::int32_t*>(x), reinterpret_cast<const std::int32_t*>(w), c, m, n, k / 4);
  return int(cudaGetLastError());
}

int int8_linear(const std::int8_t* x, const std::int8_t* w, float x_scale, const float* w_scale, const float* bias,
                float* y, std::int32_t* accumulator, int m, int n, int k, bool relu, void* stream) {
  const int rc = int8_gemm(x, w, accumulator, m, n, k, stream);
  if (rc != 0) return rc;
  const int threads = 256;
  dequantize<<<(m * n + threads - 1) / threads, threads, 0, static_cast<cudaStream_t>(stream)>>>(
      accumulator, x_scale, w_scale, bias, y, m, n, relu);
  return int(cudaGetLastError());
}

}  // namespace joulecut::cuda
