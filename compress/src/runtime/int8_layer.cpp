// joulecut's int8 runtime: the Int8Layer object's state and pickling, the joulecut/int8.h
// functions on it (make_int8_layer and the accessors), and the record of the implementations run.
#include <cstdio>
#include <mutex>
#include <set>
#include <string>
#include <tuple>
#include <utility>
#include <vector>

#include "int8_layer.h"
#include "joulecut/int8.h"

namespace joulecut {
namespace int8_runtime {
namespace {

std::mutex implementations_mutex;
std::set<std::string> implementations_seen;

}  // namespace

void remember_implementation(const std::string& name) {
  std::lock_guard<std::mutex> lock(implementations_mutex);
  implementations_seen.insert(name);
}
void remember_implementation(const dnnl::primitive_desc_base& pd) { remember_implementation(pd.impl_info_str()); }

}  // namespace int8_runtime

std::string Int8Layer::pickled_kind() const {
  if (activation.empty()) return kind;
  if (activation != "hardtanh") return kind + "+" + activation;
  char bounds[64];
  std::snprintf(bounds, sizeof bounds, "(%.17g,%.17g)", activation_min, activation_max);
  return kind + "+hardtanh" + bounds;
}

// Splits "conv2d+hardtanh(0,6)" into kind and activation.
void Int8Layer::unpickle_kind(const std::string& text) {
  const auto plus = text.find('+');
  kind = text.substr(0, plus);
  if (plus == std::string::npos) return;
  activation = text.substr(plus + 1);
  const auto open = activation.find('(');
  if (open == std::string::npos) return;
  TORCH_CHECK(std::sscanf(activation.c_str() + open, "(%lf,%lf)", &activation_min, &activation_max) == 2,
              "joulecut.Int8Layer: bad activation '", activation, "'");
  activation.resize(open);
}

Int8Layer::State Int8Layer::state() const {
  return State{kStateVersion, pickled_kind(), weight, weight_scales, bias, stride, padding, dilation, groups, input_scale,
               input_zero_point, output_scale, output_zero_point, relu, output_float, residual, residual_scale,
               residual_zero_point};
}

c10::intrusive_ptr<Int8Layer> Int8Layer::from_state(State s) {
  auto layer = c10::make_intrusive<Int8Layer>();
  TORCH_CHECK(std::get<0>(s) == kStateVersion, "joulecut.Int8Layer: state version ", std::get<0>(s),
              " is not supported by this libjoulecut_ops (", kStateVersion, ")");
  std::string kind;
  std::tie(std::ignore, kind, layer->weight, layer->weight_scales, layer->bias, layer->stride, layer->padding,
           layer->dilation, layer->groups, layer->input_scale, layer->input_zero_point, layer->output_scale,
           layer->output_zero_point, layer->relu, layer->output_float, layer->residual, layer->residual_scale,
           layer->residual_zero_point) = std::move(s);
  layer->unpickle_kind(kind);
  layer->validate();
  return layer;
}

void Int8Layer::validate() const {
  TORCH_CHECK(kind == "conv2d" || kind == "linear", "joulecut.Int8Layer: unknown kind '", kind, "'");
  TORCH_CHECK(weight.scalar_type() == at::kChar && weight.dim() == (kind == "conv2d" ? 4 : 2),
              "joulecut.Int8Layer: weight must be int8 ", kind == "conv2d" ? "4-D" : "2-D");
  const std::int64_t out = weight.size(0);
  TORCH_CHECK(weight_scales.scalar_type() == at::kFloat && weight_scales.numel() == out,
              "joulecut.Int8Layer: one float32 weight scale per output channel expected");
  TORCH_CHECK(bias.numel() == 0 || (bias.scalar_type() == at::kFloat && bias.numel() == out),
              "joulecut.Int8Layer: bias must be float32 [", out, "]");
  TORCH_CHECK(input_scale > 0 && (output_float || output_scale > 0), "joulecut.Int8Layer: scales must be positive");
  TORCH_CHECK(input_zero_point >= 0 && input_zero_point <= 255 && output_zero_point >= 0 && output_zero_point <= 255,
              "joulecut.Int8Layer: zero points must be in [0, 255]");
  TORCH_CHECK(!residual || (kind == "conv2d" && !output_float && residual_scale > 0 && residual_zero_point >= 0 &&
                             residual_zero_point <= 255),
              "joulecut.Int8Layer: bad residual (conv2d with uint8 output, positive scale, zero point in [0, 255])");
  TORCH_CHECK(activation.empty() || (int8_activation_supported(activation) && !relu && !residual),
              "joulecut.Int8Layer: activation '", activation, "' is unknown or combined with relu or a residual");
  TORCH_CHECK(activation != "hardtanh" || activation_min < activation_max,
              "joulecut.Int8Layer: hardtanh needs min < max");
  if (kind == "conv2d")
    TORCH_CHECK(stride.size() == 2 && padding.size() == 2 && dilation.size() == 2 && groups >= 1 && out % groups == 0,
                "joulecut.Int8Layer: bad convolution geometry");
}

c10::IValue make_int8_layer(const Int8LayerSpec& spec) {
  TORCH_CHECK(spec.kind == "conv2d" || spec.kind == "linear", "make_int8_layer: kind must be conv2d or linear");
  auto layer = c10::make_intrusive<Int8Layer>();
  const at::Tensor w = spec.weight.detach().to(at::kFloat).contiguous();
  const at::Tensor rows = w.reshape({w.size(0), -1});
  // Symmetric per-channel scales: max|w| / 127, 1 for an all-zero channel.
  at::Tensor scales = rows.abs().amax(1).div(127.0);
  scales = at::where(scales.gt(0), scales, at::ones_like(scales)).contiguous();
  layer->kind = spec.kind;
  layer->weight_scales = scales;
  const std::vector<std::int64_t> per_channel =
      spec.kind == "conv2d" ? std::vector<std::int64_t>{-1, 1, 1, 1} : std::vector<std::int64_t>{-1, 1};
  layer->weight = at::round(w / scales.view(per_channel)).clamp(-127, 127).to(at::kChar).contiguous();
  layer->bias = spec.bias.defined() ? spec.bias.detach().to(at::kFloat).contiguous().clone() : at::empty({0});
  layer->stride = spec.stride;
  layer->padding = spec.padding;
  layer->dilation = spec.dilation;
  layer->groups = spec.groups;
  layer->input_scale = spec.input_scale;
  layer->input_zero_point = spec.input_zero_point;
  layer->output_scale = spec.output_scale;
  layer->output_zero_point = spec.output_zero_point;
  layer->relu = spec.relu;
  layer->activation = spec.activation;
  layer->activation_min = spec.activation_min;
  layer->activation_max = spec.activation_max;
  layer->output_float = spec.output_float;
  layer->residual = spec.residual;
  layer->residual_scale = spec.residual_scale;
  layer->residual_zero_point = spec.residual_zero_point;
  layer->validate();
  return c10::IValue(layer);
}

bool int8_activation_supported(const std::string& activation) {
  static const std::set<std::string> supported{"hardtanh", "hardswish", "hardsigmoid", "silu", "sigmoid", "gelu",
                                               "gelu_tanh"};
  return supported.count(activation) > 0;
}

double int8_weight_error(const c10::IValue& value) {
  const auto layer = value.toCustomClass<Int8Layer>();
  return 0.5 * layer->weight_scales.max().item<double>();  // round to nearest: at most half a step per weight
}

Int8Geometry int8_layer_geometry(const c10::IValue& value) {
  const auto layer = value.toCustomClass<Int8Layer>();
  if (layer->kind != "conv2d") return {};
  return {layer->stride, layer->padding, layer->dilation, layer->groups};
}

std::pair<at::Tensor, at::Tensor> int8_layer_tensors(const c10::IValue& value) {
  const auto layer = value.toCustomClass<Int8Layer>();
  return {layer->weight, layer->bias.numel() ? layer->bias : at::Tensor()};
}

std::string int8_implementations() {
  std::lock_guard<std::mutex> lock(int8_runtime::implementations_mutex);
  std::string out;
  for (const auto& s : int8_runtime::implementations_seen) out += (out.empty() ? "" : ", ") + s;
  return out;
}

}  // namespace joulecut
