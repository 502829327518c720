#include "joulecut/graph_stats.h"

#include "graph/attention.h"
#include "graph/layer_selection.h"
#include "graph/module_graph.h"

#include <ATen/native/quantized/PackedParams.h>  // LinearPackedParamsBase::unpack

#include <ATen/ATen.h>
#include <ATen/record_function.h>
#include <ATen/core/grad_mode.h>

#include <map>
#include <set>
#include <sstream>

#include "joulecut/error.h"
#include "joulecut/model.h"
#include "joulecut/torch_compat.h"
#include "graph/root_attributes.h"
#ifdef JOULECUT_HAVE_ONEDNN
#include "joulecut/int8.h"
#endif

namespace joulecut {

double ModelStats::weight_sparsity() const {
  std::int64_t weights = 0;
  for (const auto& l : layers) weights += l.weight_shape.empty() ? 0 : c10::multiply_integers(l.weight_shape);
  return weights == 0 ? 0.0 : double(layer_weight_zeros) / double(weights);
}

namespace {

enum class OpKind { none, conv, linear, matmul, addmm, sparse_linear, quantized_linear, quantized_conv, dp4a_linear };

OpKind classify(const std::string& name) {
  static const std::map<std::string, OpKind> kinds = {
      {"aten::conv1d", OpKind::conv},        {"aten::conv2d", OpKind::conv},
      {"aten::conv3d", OpKind::conv},        {"aten::convolution", OpKind::conv},
      {"aten::_convolution", OpKind::conv},  {"aten::linear", OpKind::linear},
      {"aten::mm", OpKind::matmul},          {"aten::bmm", OpKind::matmul},
      {"aten::matmul", OpKind::matmul},      {"aten::addmm", OpKind::addmm},
      {"aten::baddbmm", OpKind::addmm},  // (bias, a, b): attention scores in F.scaled_dot_product paths
      {"joulecut::sparse_linear", OpKind::sparse_linear},  // (input, values, columns, rows, bias, in)
      {"quantized::linear_dynamic", OpKind::quantized_linear},  // (input, packed params, ...)
      {"quantized::linear", OpKind::quantized_linear},
      {"quantized::linear_relu", OpKind::quantized_linear},
      {"quantized::conv2d", OpKind::quantized_conv},  // (input, packed params, scale, zero point)
      {"quantized::conv2d_relu", OpKind::quantized_conv},
      {"joulecut::int8_linear", OpKind::quantized_linear},  // (input, Int8Layer)
      {"joulecut::int8_conv2d", OpKind::quantized_conv},
      {"joulecut::int8_conv2d_add", OpKind::quantized_conv},  // (input, Int8Layer, residual)
      {"joulecut::int8_linear_dp4a", OpKind::dp4a_linear},  // (input, int8 weight, scales, bias, ...)
  };
  const auto it = kinds.find(name);
  return it == kinds.end() ? OpKind::none : it->second;
}

// The weight and bias inside a packed layer object (LibTorch's packed params, or joulecut's
// Int8Layer); false for anything else.
bool unpack_layer(const c10::IValue& v, at::Tensor& weight, at::Tensor& bias) {
  if (!v.isCustomClass()) return false;
  const std::string type = v.type()->str();
  c10::optional<at::Tensor> b;
  if (type.find("LinearPackedParamsBase") != std::string::npos) {
    std::tie(weight, b) = v.toCustomClass<LinearPackedParamsBase>()->unpack();
  } else if (type.find("Conv2dPackedParamsBase") != std::string::npos) {
    std::tie(weight, b) = v.toCustomClass<ConvPackedParamsBase<2>>()->unpack();
#ifdef JOULECUT_HAVE_ONEDNN
  } else if (type.find("joulecut.Int8Layer") != std::string::npos) {
    std::tie(weight, bias) = int8_layer_tensors(v);
    return true;
#endif
  } else {
    return false;
  }
  bias = b ? *b : at::Tensor();
  return true;
}

std::vector<std::int64_t> shape_of(const c10::IValue& v) {
  if (!v.isTensor()) return {};
  const auto sizes = v.toTensor().sizes();
  return {sizes.begin(), sizes.end()};
}

struct Recording : at::ObserverContext {
  LayerStats layer;
  std::string name;  // of a packed layer, found by its object
  OpKind kind = OpKind::none;
  at::Tensor weight;
  at::Tensor bias;
  // A packed convolution's geometry: its output shape follows from the input's. (The recorded
  // outputs of custom-class ops called by the interpreter are not reliably theirs.)
  std::vector<std::int64_t> stride, padding, dilation;
  bool geometry = false;
};

// The packed convolution's stride, padding and dilation, when `v` is one.
bool packed_conv_geometry(const c10::IValue& v, Recording& rec) {
  if (!v.isCustomClass()) return false;
  const std::string type = v.type()->str();
  if (type.find("Conv2dPackedParamsBase") != std::string::npos) {
    const auto packed = v.toCustomClass<ConvPackedParamsBase<2>>();
    const auto to_vector = [](const torch::List<std::int64_t>& l) { return std::vector<std::int64_t>(l.begin(), l.end()); };
    rec.stride = to_vector(packed->stride());
    rec.padding = to_vector(packed->padding());
    rec.dilation = to_vector(packed->dilation());
    rec.geometry = true;
#ifdef JOULECUT_HAVE_ONEDNN
  } else if (type.find("joulecut.Int8Layer") != std::string::npos) {
    const Int8Geometry g = int8_layer_geometry(v);
    if (g.stride.size() != 2) return false;
    rec.stride = g.stride;
    rec.padding = g.padding;
    rec.dilation = g.dilation;
    rec.geometry = true;
#endif
  }
  return rec.geometry;
}

// State of one analysis; only the thread running the model touches it.
struct Recorder {
  std::map<const void*, std::string> names;  // weight data pointer -> parameter path
  std::map<const void*, std::string> packed;  // packed layer object -> layer
  std::vector<LayerStats> layers;
  int depth = 0;  // > 0 while inside a counted op: its internals are not counted again
  int activation_products = 0;
};
thread_local Recorder* active = nullptr;

std::unique_ptr<at::ObserverContext> on_enter(const at::RecordFunction& fn) {
  if (!active) return nullptr;
  const OpKind kind = classify(fn.name());
  if (kind == OpKind::none || active->depth > 0) return nullptr;
  ++active->depth;
  auto rec = std::make_unique<Recording>();
  rec->kind = kind;
  rec->layer.op = fn.name();
  const auto inputs = fn.inputs();
  // addmm(bias, a, b); the others take (input, weight, [bias], ...).
  const std::size_t in = kind == OpKind::addmm ? 1 : 0;
  const std::size_t w = kind == OpKind::addmm ? 2 : 1;
  if (kind == OpKind::quantized_linear || kind == OpKind::quantized_conv) {
    // The weight and bias live in a packed object, and the activation comes just before it. The
    // interpreter's recorded inputs sometimes start with an unrelated live tensor (seen on
    // ResNet shortcut convolutions), so the object is searched for rather than taken at [1].
    for (std::size_t i = 1; i < inputs.size(); ++i) {
      if (!inputs[i - 1].isTensor() || !unpack_layer(inputs[i], rec->weight, rec->bias)) continue;
      rec->layer.input_shape = shape_of(inputs[i - 1]);
      rec->layer.activation_bytes += inputs[i - 1].toTensor().nbytes();
      if (kind == OpKind::quantized_conv) packed_conv_geometry(inputs[i], *rec);
      const auto name = active->packed.find(inputs[i].internalToPointer());
      if (name != active->packed.end()) rec->name = name->second;
      break;
    }
  } else if (inputs.size() > w && inputs[in].isTensor() && inputs[w].isTensor()) {
    rec->layer.input_shape = shape_of(inputs[in]);
    rec->weight = inputs[w].toTensor();
    rec->layer.activation_bytes += inputs[in].toTensor().nbytes();
    const std::size_t b = kind == OpKind::addmm ? 0 : kind == OpKind::sparse_linear ? 4 : kind == OpKind::dp4a_linear ? 3 : 2;
    if (inputs.size() > b && inputs[b].isTensor()) rec->bias = inputs[b].toTensor();
  }
  return rec;
}

void on_exit(const at::RecordFunction& fn, at::ObserverContext* context) {
  if (!active || !context) return;
  --active->depth;
  auto* rec = static_cast<Recording*>(context);
  LayerStats layer = rec->layer;
  const auto outputs = fn.outputs();
  if (!rec->weight.defined() || outputs.empty() || !outputs[0].isTensor()) return;
  const at::Tensor out = outputs[0].toTensor();
  const at::Tensor& w = rec->weight;
  layer.output_shape = shape_of(outputs[0]);
  const auto& in = layer.input_shape;
  if (rec->geometry && in.size() == 4 && w.dim() == 4 && rec->stride.size() == 2 && rec->padding.size() == 2 &&
      rec->dilation.size() == 2) {
    std::vector<std::int64_t> shape{in[0], w.size(0), 0, 0};
    for (int d = 0; d < 2; ++d)
      shape[std::size_t(2 + d)] =
          (in[std::size_t(2 + d)] + 2 * rec->padding[std::size_t(d)] - rec->dilation[std::size_t(d)] * (w.size(2 + d) - 1) - 1) /
              rec->stride[std::size_t(d)] + 1;
    layer.output_shape = shape;
  }
  layer.weight_shape = {w.sizes().begin(), w.sizes().end()};
  layer.activation_bytes += out.nbytes();
  layer.dtype = std::string(c10::toString(w.scalar_type()));
  const std::int64_t out_elems = rec->geometry && !layer.output_shape.empty() ? c10::multiply_integers(layer.output_shape)
                                                                             : out.numel();
  switch (rec->kind) {
    case OpKind::conv:  // weight [Cout, Cin/groups, k...]: each output element sums Cin/groups*k...
    case OpKind::quantized_conv:
      layer.macs = w.dim() >= 2 ? out_elems * (w.numel() / w.size(0)) : 0;
      break;
    case OpKind::linear:  // weight [out, in]: each input row costs out x in
    case OpKind::quantized_linear: {
      const std::int64_t in_features = w.size(-1);
      const std::int64_t in_elems = c10::multiply_integers(layer.input_shape);
      if (!layer.input_shape.empty() && layer.input_shape.back() == in_features) {
        layer.macs = in_elems / in_features * w.numel();
        // A packed layer's recorded output is not reliably its own (see Recording): its shape
        // follows from the input and the weight, as a convolution's from its geometry.
        if (rec->kind == OpKind::quantized_linear) {
          layer.output_shape = layer.input_shape;
          layer.output_shape.back() = w.size(0);
        }
      } else {
        layer.macs = out_elems * in_features;
      }
      break;
    }
    case OpKind::sparse_linear:  // one multiply-accumulate per stored weight per input row
      layer.macs = out.size(-1) > 0 ? out_elems / out.size(-1) * w.numel() : 0;
      break;
    case OpKind::matmul:
    case OpKind::dp4a_linear:  // its weight is padded to a multiple of 4 inputs: count the real ones
    case OpKind::addmm:  // a [.., k] x b [k, ..]
      layer.macs = out_elems * (layer.input_shape.empty() ? 0 : layer.input_shape.back());
      break;
    case OpKind::none:
      break;
  }
  const auto it = active->names.find(w.data_ptr());
  // A product of two activations (attention's scores and mixing): work, but no parameters.
  const bool activations_only = rec->name.empty() && it == active->names.end() &&
                                (rec->kind == OpKind::matmul || rec->kind == OpKind::addmm);
  if (activations_only) {
    layer.weight_shape.clear();  // the second operand is an activation: not a weight for sparsity
  } else {
    layer.params = w.numel() + (rec->bias.defined() ? rec->bias.numel() : 0);
    layer.weight_bytes = w.nbytes() + (rec->bias.defined() ? rec->bias.nbytes() : 0);
    layer.weight_zeros = (w.is_floating_point() ? (w == 0).sum().item<std::int64_t>() : 0);
  }
  if (!rec->name.empty()) {
    layer.name = rec->name;
  } else if (it != active->names.end()) {
    layer.name = it->second;
  } else if (activations_only) {
    layer.name = "activation product #" + std::to_string(++active->activation_products);
  } else {
    layer.name = "op#" + std::to_string(active->layers.size());
  }
  active->layers.push_back(std::move(layer));
}

}  // namespace

ModelStats analyze_model(torch::jit::Module& module, const at::Tensor& example) {
  return analyze_model(module, std::vector<at::Tensor>{example});
}

ModelStats analyze_model(torch::jit::Module& input_module, const std::vector<at::Tensor>& arguments) {
  JOULECUT_ASSERT(!arguments.empty(), "analyze_model needs at least one input");
  const at::Tensor& example = arguments.front();
  // A fresh clone, run once: after a module has run, the graph executor may replace its graph
  // with an optimized plan whose recorded op arguments are not the layers' weights, and the
  // counts must not depend on what ran before.
  torch::jit::Module module;
  {
    at::NoGradGuard no_grad;
    module = input_module.clone();
  }
  // PyTorch's fused attention kernels (aten::_transformer_encoder_layer_fwd and the like) hide
  // their matrix products from the op recorder: the same arithmetic, written out in plain ops, is
  // what gets counted.
  if (attention::has_attention(module) && !module.is_training())
    graph::replace_forward(module, graph::inlined_forward(module, "info", graph::GraphUse::inference));
  Recorder recorder;
  ModelStats stats;
  stats.batch = example.dim() > 0 ? example.size(0) : 1;
  std::set<std::string> dtypes;
  for (const auto& p : module.named_parameters(/*recurse=*/true)) {
    stats.parameters += p.value.numel();
    stats.parameter_bytes += p.value.nbytes();
    dtypes.insert(std::string(c10::toString(p.value.scalar_type())));
    std::string name = p.name;
    const auto dot = name.rfind('.');
    recorder.names[p.value.data_ptr()] = dot == std::string::npos ? name : name.substr(0, dot);
  }
  // Packed int8 weights (quantize-dynamic, quantize-static) are attributes, not parameters.
  for (const auto& a : module.named_attributes(/*recurse=*/true)) {
    at::Tensor weight, bias;
    if (!unpack_layer(a.value, weight, bias)) continue;
    stats.parameters += weight.numel() + (bias.defined() ? bias.numel() : 0);
    stats.parameter_bytes += std::int64_t(weight.nbytes()) + (bias.defined() ? std::int64_t(bias.nbytes()) : 0);
    dtypes.insert(std::string(c10::toString(weight.scalar_type())));
    std::string layer = layer_of_root_attribute(kPackedLinear, a.name);  // set by quantize-dynamic
    if (layer.empty()) layer = layer_of_root_attribute(kInt8Layer, a.name);  // set by quantize-static
    recorder.packed[a.value.internalToPointer()] = layer.empty() ? a.name : layer;
  }
  for (const auto& b : module.named_buffers(/*recurse=*/true)) {
    stats.parameter_bytes += b.value.nbytes();
    // lower-sparse keeps a layer's CSR weight in root buffers, quantize-static backend=cuda its int8 weight.
    // A dp4a bias is counted as a parameter; the layer is named by its weight.
    if (!layer_of_root_attribute(kDp4aBias, b.name).empty()) stats.parameters += b.value.numel();
    std::string layer = layer_of_root_attribute(kCsrValues, b.name);
    if (layer.empty()) layer = layer_of_root_attribute(kDp4aWeight, b.name);
    if (layer.empty()) continue;
    dtypes.insert(std::string(c10::toString(b.value.scalar_type())));
    stats.parameters += b.value.numel();  // the layer's stored weights: they are parameters
    recorder.names[b.value.data_ptr()] = layer;
  }
  stats.dtypes.assign(dtypes.begin(), dtypes.end());

  auto handle = at::addThreadLocalCallback(
      at::RecordFunctionCallback(on_enter, on_exit).needsInputs(true).needsOutputs(true).scopes(
          {at::RecordScope::FUNCTION}));
  active = &recorder;
  try {
    at::NoGradGuard no_grad;
    module.forward(std::vector<c10::IValue>(arguments.begin(), arguments.end()));
  } catch (const std::exception& e) {
    active = nullptr;
    at::removeCallback(handle);
    std::ostringstream shape;
    for (std::size_t i = 0; i < arguments.size(); ++i) shape << (i ? ", " : "") << arguments[i].sizes();
    throw UserError("model fails on an input of shape " + shape.str() + " (" +
                    torch_error_summary(e) + ")");
  }
  active = nullptr;
  at::removeCallback(handle);
  JOULECUT_ASSERT(recorder.depth == 0, "unbalanced RecordFunction callbacks");
  stats.layers = std::move(recorder.layers);
  for (const auto& l : stats.layers) {
    stats.macs += l.macs;
    stats.layer_params += l.params;
    stats.layer_weight_zeros += l.weight_zeros;
  }
  return stats;
}

}  // namespace joulecut
