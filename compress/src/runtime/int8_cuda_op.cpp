// The CUDA int8 Linear as a TorchScript op (see joulecut/int8_cuda.h). The CPU branch is the
// reference the GPU test compares against: the same quantization (ATen ops on either device),
// an exact integer product, and the same dequantize order.
#include <ATen/ATen.h>
#include <torch/library.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <vector>

#include "joulecut/int8_cuda.h"

#ifdef JOULECUT_CUDA_INT8_OP
#include <c10/cuda/CUDAGuard.h>
#include <c10/cuda/CUDAStream.h>

#include "cuda/int8_linear.h"
#endif

namespace joulecut {
namespace {

void check_arguments(const at::Tensor& x, const at::Tensor& weight, const at::Tensor& weight_scale,
                     const c10::optional<at::Tensor>& bias, double input_scale) {
  TORCH_CHECK(x.scalar_type() == at::kFloat && x.dim() >= 1, "joulecut::int8_linear_dp4a: x must be float32 [..., in], got ",
              x.scalar_type(), " ", x.sizes());
  TORCH_CHECK(weight.scalar_type() == at::kChar && weight.dim() == 2 && weight.size(1) % 4 == 0,
              "joulecut::int8_linear_dp4a: weight must be int8 [out, in4] with in4 a multiple of 4, got ",
              weight.scalar_type(), " ", weight.sizes());
  const std::int64_t in = x.size(-1), in4 = weight.size(1);
  TORCH_CHECK(in <= in4 && in4 - in < 4, "joulecut::int8_linear_dp4a: x has ", in, " features, the weight was packed for ",
              in4 - 3, "..", in4);
  TORCH_CHECK(weight_scale.scalar_type() == at::kFloat && weight_scale.dim() == 1 && weight_scale.size(0) == weight.size(0),
              "joulecut::int8_linear_dp4a: weight_scale must be float32 [", weight.size(0), "], got ",
              weight_scale.scalar_type(), " ", weight_scale.sizes());
  if (bias)
    TORCH_CHECK(bias->scalar_type() == at::kFloat && bias->dim() == 1 && bias->size(0) == weight.size(0),
                "joulecut::int8_linear_dp4a: bias must be float32 [", weight.size(0), "], got ", bias->scalar_type(), " ",
                bias->sizes());
  TORCH_CHECK(input_scale > 0 && std::isfinite(input_scale), "joulecut::int8_linear_dp4a: input_scale must be > 0, got ",
              input_scale);
  const auto device = x.device();
  TORCH_CHECK(weight.device() == device && weight_scale.device() == device && (!bias || bias->device() == device),
              "joulecut::int8_linear_dp4a: x is on ", device, " but the weights are on ", weight.device(),
              " (move the whole module: module.to(device))");
}

}  // namespace

Dp4aWeight pack_dp4a_weight(const at::Tensor& weight) {
  TORCH_CHECK(weight.dim() == 2, "pack_dp4a_weight: a Linear weight [out, in] is 2-D, got ", weight.sizes());
  const at::Tensor w = weight.detach().to(at::kFloat).contiguous();
  at::Tensor scale = w.abs().amax({1}) / 127.0;
  scale = at::where(scale > 0, scale, at::ones_like(scale));  // an all-zero row: any scale is exact
  const std::int64_t in = w.size(1), pad = (4 - in % 4) % 4;
  at::Tensor q = at::clamp(at::round(w / scale.unsqueeze(1)), -127, 127).to(at::kChar);
  if (pad) q = at::constant_pad_nd(q, {0, pad}, 0);
  return {q.contiguous(), scale.contiguous()};
}

bool dp4a_kernel_compiled() {
#ifdef JOULECUT_CUDA_INT8_OP
  return true;
#else
  return false;
#endif
}

at::Tensor int8_linear_dp4a(const at::Tensor& x, const at::Tensor& weight, const at::Tensor& weight_scale,
                            const c10::optional<at::Tensor>& bias, double input_scale, bool relu) {
  check_arguments(x, weight, weight_scale, bias, input_scale);
  const std::int64_t in = x.size(-1), in4 = weight.size(1), out = weight.size(0);
  const std::int64_t rows = x.numel() / std::max<std::int64_t>(in, 1);
  std::vector<std::int64_t> out_shape(x.sizes().begin(), x.sizes().end());
  out_shape.back() = out;
  at::Tensor q = at::clamp(at::round(x.reshape({rows, in}) / input_scale), -127, 127).to(at::kChar);
  if (in4 != in) q = at::constant_pad_nd(q, {0, in4 - in}, 0);
  q = q.contiguous();
  if (x.is_cuda()) {
#ifdef JOULECUT_CUDA_INT8_OP
    const c10::cuda::CUDAGuard guard(x.device());
    TORCH_CHECK(rows <= INT32_MAX && out <= INT32_MAX && in4 <= INT32_MAX, "joulecut::int8_linear_dp4a: too large");
    at::Tensor accumulator = at::empty({rows, out}, x.options().dtype(at::kInt));
    at::Tensor y = at::empty({rows, out}, x.options());
    const at::Tensor w = weight.contiguous(), s = weight_scale.contiguous();
    const at::Tensor b = bias ? bias->contiguous() : at::Tensor();
    const int rc = cuda::int8_linear(q.data_ptr<std::int8_t>(), w.data_ptr<std::int8_t>(), float(input_scale),
                                     s.data_ptr<float>(), b.defined() ? b.data_ptr<float>() : nullptr, y.data_ptr<float>(),
                                     accumulator.data_ptr<std::int32_t>(), int(rows), int(out), int(in4), relu,
                                     c10::cuda::getCurrentCUDAStream().stream());
    TORCH_CHECK(rc == 0, "joulecut::int8_linear_dp4a: CUDA kernel launch failed (cudaError ", rc, ")");
    return y.reshape(out_shape);
#else
    TORCH_CHECK(false, "joulecut::int8_linear_dp4a: this libjoulecut_ops has no CUDA kernel (it needs nvcc and a "
                       "CUDA-enabled LibTorch at build time: scripts/setup --torch pypi)");
#endif
  }
  // The reference: int64 products are exact (|sum| <= in4 * 127 * 127), as are the GPU's int32 ones.
  const at::Tensor accumulator = at::mm(q.to(at::kLong), weight.to(at::kLong).t());
  at::Tensor y = accumulator.to(at::kFloat) * float(input_scale) * weight_scale;
  if (bias) y = y + *bias;
  if (relu) y = at::relu(y);
  return y.reshape(out_shape);
}

}  // namespace joulecut

TORCH_LIBRARY_FRAGMENT(joulecut, m) {
  m.def("int8_linear_dp4a(Tensor x, Tensor weight, Tensor weight_scale, Tensor? bias, float input_scale, bool relu) -> Tensor",
        &joulecut::int8_linear_dp4a);
}
