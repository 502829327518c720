// joulecut's runtime op library (libjoulecut_ops.so): joulecut::sparse_linear, a Linear layer
// whose weight is stored in CSR form and multiplied with Eigen's sparse kernels. Models
// lowered by the lower-sparse pass call it; load this library before loading such a model
// (C++: link it; Python: torch.ops.load_library("libjoulecut_ops.so")).
#include <ATen/ATen.h>
#include <torch/library.h>

#include <algorithm>

#include "joulecut/sparse.h"
#include "sparse_kernel.h"

namespace joulecut {
CsrWeight to_csr(const at::Tensor& weight) {
  TORCH_CHECK(weight.dim() == 2, "to_csr: weight must be [out, in], got ", weight.sizes());
  const at::Tensor w = weight.detach().to(at::kFloat).contiguous();
  const at::Tensor nonzero = w.ne(0);
  CsrWeight csr;
  csr.in_features = w.size(1);
  const at::Tensor counts = nonzero.sum(1, /*keepdim=*/false, at::kInt);
  csr.row_offsets = at::cat({at::zeros({1}, at::kInt), counts.cumsum(0, at::kInt)});
  const at::Tensor positions = nonzero.nonzero();  // row-major order: rows ascending, columns ascending
  csr.columns = positions.select(1, 1).to(at::kInt).contiguous();
  csr.values = w.masked_select(nonzero).contiguous();
  return csr;
}

at::Tensor sparse_linear(const at::Tensor& input, const at::Tensor& values, const at::Tensor& columns,
                         const at::Tensor& row_offsets, const c10::optional<at::Tensor>& bias, std::int64_t in_features) {
  TORCH_CHECK(input.device().is_cpu(), "joulecut::sparse_linear runs on the CPU only; got a tensor on ", input.device());
  TORCH_CHECK(input.scalar_type() == at::kFloat, "joulecut::sparse_linear takes float32 input, got ",
              input.scalar_type());
  TORCH_CHECK(input.dim() >= 1 && input.size(-1) == in_features, "joulecut::sparse_linear: input ", input.sizes(),
              " does not end in ", in_features, " features");
  TORCH_CHECK(values.scalar_type() == at::kFloat && columns.scalar_type() == at::kInt &&
                  row_offsets.scalar_type() == at::kInt && row_offsets.dim() == 1 && row_offsets.numel() >= 1 &&
                  values.numel() == columns.numel(),
              "joulecut::sparse_linear: malformed CSR weight");
  const std::int64_t rows = row_offsets.numel() - 1;
  // Every ATen call costs microseconds here, a good part of a small layer's time: read raw
  // pointers, and make copies only when a tensor is not contiguous.
  const at::Tensor x = input.dim() == 2 && input.is_contiguous() ? input : input.reshape({-1, in_features}).contiguous();
  const at::Tensor v = values.is_contiguous() ? values : values.contiguous();
  const at::Tensor c = columns.is_contiguous() ? columns : columns.contiguous();
  const at::Tensor r = row_offsets.is_contiguous() ? row_offsets : row_offsets.contiguous();
  // A malformed file must not make the kernel read out of bounds: O(rows + nnz) integer checks,
  // a few microseconds next to the product itself.
  const std::int32_t* offsets = r.data_ptr<std::int32_t>();
  TORCH_CHECK(offsets[0] == 0 && offsets[rows] == v.numel(), "joulecut::sparse_linear: row offsets do not match values");
  for (std::int64_t i = 0; i < rows; ++i)
    TORCH_CHECK(offsets[i] <= offsets[i + 1], "joulecut::sparse_linear: row offsets are not ascending");
  const std::int32_t* cols = c.data_ptr<std::int32_t>();
  const auto [low, high] = std::minmax_element(cols, cols + c.numel());
  TORCH_CHECK(c.numel() == 0 || (*low >= 0 && *high < in_features),
              "joulecut::sparse_linear: a column index is outside [0, ", in_features, ")");
  at::Tensor b;
  if (bias && bias->defined()) {
    TORCH_CHECK(bias->scalar_type() == at::kFloat && bias->numel() == rows, "joulecut::sparse_linear: bias must be float32 [",
                rows, "]");
    b = bias->is_contiguous() ? *bias : bias->contiguous();
  }
  at::Tensor y = at::empty({x.size(0), rows}, x.options());
  if (x.size(0) > 0) {
    kernels::SparseLinearArgs args{rows,
                                   in_features,
                                   v.numel(),
                                   x.size(0),
                                   r.data_ptr<std::int32_t>(),
                                   c.data_ptr<std::int32_t>(),
                                   v.data_ptr<float>(),
                                   b.defined() ? b.data_ptr<float>() : nullptr,
                                   x.data_ptr<float>(),
                                   y.data_ptr<float>()};
    kernels::sparse_linear_f32(args);
  }
  if (input.dim() == 2) return y;
  std::vector<std::int64_t> shape(input.sizes().begin(), input.sizes().end());
  shape.back() = rows;
  return y.view(shape);
}

const char* sparse_kernel_name() { return kernels::sparse_kernel_isa(); }

}  // namespace joulecut

TORCH_LIBRARY(joulecut, m) {
  m.def("sparse_linear(Tensor input, Tensor values, Tensor columns, Tensor row_offsets, Tensor? bias, int in_features) -> Tensor",
        &joulecut::sparse_linear);
}
