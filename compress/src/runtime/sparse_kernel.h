#pragma once
// Internal: the Torch-free sparse kernel, one copy per instruction set.
#include <cstdint>

namespace joulecut::kernels {

struct SparseLinearArgs {
  std::int64_t rows, cols, nnz, batch;  // W [rows, cols] in CSR; x [batch, cols]; y [batch, rows]
  const std::int32_t* row_offsets;      // rows + 1 entries
  const std::int32_t* columns;          // nnz entries
  const float* values;                  // nnz entries
  const float* bias;  // rows entries, or nullptr
  const float* x;
  float* y;  // written, not accumulated
};

void sparse_linear_f32(const SparseLinearArgs& args);
const char* sparse_kernel_isa();  // the instruction set the kernel was compiled for

}  // namespace joulecut::kernels
