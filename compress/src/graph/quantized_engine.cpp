#include "graph/quantized_engine.h"

#include <ATen/core/dispatch/Dispatcher.h>

#include <algorithm>

#include "joulecut/error.h"
#include "joulecut/observers.h"

namespace joulecut::graph {

std::string choose_engine(const std::string& pass) {
  const auto& engines = at::globalContext().supportedQEngines();
  for (auto engine : {at::QEngine::FBGEMM, at::QEngine::ONEDNN, at::QEngine::QNNPACK})
    if (std::find(engines.begin(), engines.end(), engine) != engines.end()) {
      at::globalContext().setQEngine(engine);
      return c10::toString(engine);
    }
  throw UserError(pass + ": this LibTorch has no quantized engine (FBGEMM, oneDNN or QNNPACK)");
}

at::Tensor quantize_weight_per_channel(const at::Tensor& weight) {
  const at::Tensor w = weight.detach().to(at::kFloat).contiguous();
  const auto scales = symmetric_int8_scales(w.data_ptr<float>(), w.size(0), w.numel() / std::max<std::int64_t>(1, w.size(0)));
  return at::quantize_per_channel(w, at::tensor(std::vector<double>(scales.begin(), scales.end()), at::kDouble),
                                  at::zeros({w.size(0)}, at::kLong), 0, at::kQInt8);
}

c10::IValue call_op(const char* op, std::vector<c10::IValue> stack) {
  const auto handle = c10::Dispatcher::singleton().findSchemaOrThrow(op, "");
  handle.callBoxed(&stack);
  return stack.at(0);
}

namespace {
c10::IValue optional_tensor(const c10::optional<at::Tensor>& t) { return t ? c10::IValue(*t) : c10::IValue(); }
}  // namespace

c10::IValue prepack_linear(const at::Tensor& qweight, const c10::optional<at::Tensor>& bias) {
  return call_op("quantized::linear_prepack", {qweight, optional_tensor(bias)});
}

c10::IValue prepack_conv2d(const at::Tensor& qweight, const c10::optional<at::Tensor>& bias,
                           const std::vector<std::int64_t>& stride, const std::vector<std::int64_t>& padding,
                           const std::vector<std::int64_t>& dilation, std::int64_t groups) {
  return call_op("quantized::conv2d_prepack", {qweight, optional_tensor(bias), stride, padding, dilation, groups});
}

}  // namespace joulecut::graph
