// quantize-static's bias correction (DFQ, Nagel et al. 2019): rounding a layer's weights to int8
// shifts its mean output by (W - Wq)·E[x]. Per output channel the rounding errors do not cancel
// (a depthwise 3x3 kernel has nine weights), and inputs after ReLU have a mean far from zero, so
// the shift is systematic and adds up layer after layer. The int8 layer's bias takes it back.
#include <ATen/ATen.h>

#include <optional>

#include "quantize/static_internal.h"

namespace joulecut::static_quant {

namespace {

// The weight as the int8 backends round it: symmetric per output channel, max|w| / 127 (a zero
// channel keeps scale 1), round half to even (joulecut::Int8Layer and quantize_weight_per_channel).
at::Tensor int8_rounded(const at::Tensor& rows) {
  at::Tensor scales = rows.abs().amax(1).div(127.0);
  scales = at::where(scales.gt(0), scales, at::ones_like(scales)).unsqueeze(1);
  return at::round(rows / scales).clamp(-127, 127) * scales;
}

}  // namespace

std::optional<at::Tensor> corrected_bias(const at::Tensor& weight, const c10::optional<at::Tensor>& bias,
                                         const at::Tensor& input_mean, std::int64_t groups) {
  const at::Tensor w = weight.detach().to(at::kFloat).contiguous();
  const std::int64_t out = w.size(0);
  const at::Tensor rows = w.reshape({out, -1});
  const at::Tensor error = (rows - int8_rounded(rows)).reshape(w.sizes());
  const at::Tensor mean = input_mean.to(at::kFloat).contiguous();
  at::Tensor shift;
  if (w.dim() == 4) {  // [out, in / groups, kh, kw]: each kernel position reads the channel's mean
    const at::Tensor per_input = error.sum({2, 3});
    const std::int64_t in_per_group = per_input.size(1);
    if (groups < 1 || out % groups != 0 || mean.numel() != in_per_group * groups) return std::nullopt;
    shift = at::bmm(per_input.view({groups, out / groups, in_per_group}), mean.view({groups, in_per_group, 1}))
                .reshape({out});
  } else {
    if (w.dim() != 2 || mean.numel() != w.size(1)) return std::nullopt;
    shift = at::mv(error, mean);
  }
  const at::Tensor base = bias && bias->defined() ? bias->detach().to(at::kFloat) : at::zeros({out}, at::kFloat);
  return base + shift;
}

}  // namespace joulecut::static_quant
