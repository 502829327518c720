#pragma once
// joulecut's sparse runtime (libjoulecut_ops.so): a Linear layer with its weight in CSR form,
// registered as the TorchScript op joulecut::sparse_linear. Runs on one thread, like the dense
// Linear layers it replaces (joulecut's harness pins OpenBLAS to one thread), so a comparison
// between them is like for like.
#include <ATen/core/Tensor.h>

#include <cstdint>

namespace joulecut {

struct CsrWeight {
  at::Tensor values;       // float32 [nnz]
  at::Tensor columns;      // int32 [nnz]
  at::Tensor row_offsets;  // int32 [out + 1]
  std::int64_t in_features = 0;
};

// Precondition: `weight` is [out, in]. Zeros are dropped; order is row-major.
CsrWeight to_csr(const at::Tensor& weight);

// input [..., in_features] (float32, CPU) -> [..., out]: input x W^T + bias. Throws c10::Error
// on a GPU tensor, another dtype, a width mismatch or a malformed CSR weight.
at::Tensor sparse_linear(const at::Tensor& input, const at::Tensor& values, const at::Tensor& columns,
                         const at::Tensor& row_offsets, const c10::optional<at::Tensor>& bias, std::int64_t in_features);

// The kernel as compiled: "eigen-csr-avx512", "eigen-csr-avx2" or "eigen-csr-sse2".
const char* sparse_kernel_name();

}  // namespace joulecut
