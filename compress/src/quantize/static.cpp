// quantize-static: Conv2d/Linear to int8 with calibrated activation ranges, activations int8 from
// layer to layer, on joulecut's oneDNN ops or LibTorch's quantized ops (see quantize.h).
//
// How the graph is rewritten: the forward graph is inlined, and its top-level values are
// numbered in order, so that calibration (run on one copy) and each rewrite (on a fresh clone,
// possibly with a different set of fp32 layers) name the same values. Each int8 op gets its
// input in int8 (reusing an int8 producer, or quantizing an fp32 value that has a calibrated
// range) and gives its consumers a dequantized copy of its output. Consumers that are int8 ops
// take the int8 value directly, so dequantize ops survive dead-code elimination only where an
// fp32 op reads the value.
#include <ATen/ATen.h>
#include <torch/csrc/jit/ir/ir.h>
#include <torch/csrc/jit/passes/dead_code_elimination.h>

#include <torch/csrc/jit/api/module.h>

#include <cmath>
#include <cstdio>
#include <map>
#include <optional>
#include <set>

#include "analysis/attention.h"
#include "io/root_attributes.h"
#include "prune/common.h"
#include "engine.h"
#include "quantize/static_graph.h"
#include "joulecut/error.h"
#include "joulecut/evaluate.h"
#include "joulecut/fidelity.h"
#include "joulecut/model.h"
#include "joulecut/observers.h"
#include "joulecut/progress.h"
#include "joulecut/quantize.h"
#include "joulecut/int8_cuda.h"
#ifdef JOULECUT_HAVE_ONEDNN
#include "joulecut/int8.h"
#endif

namespace joulecut {
using namespace prune_detail;
using namespace quantize_detail;
using namespace static_quant;
namespace {

using torch::jit::Graph;
using torch::jit::Node;
using torch::jit::Value;
using torch::jit::WithInsertPoint;

// An int8 value: the op that produced it, its scale and zero point.
struct Int8Value {
  Value* value = nullptr;
  QuantRange range;
};

struct Built {
  torch::jit::Module module;
  std::vector<LayerChange> layers;
  int int8_layers = 0, quantize_ops = 0, dequantize_ops = 0, fused = 0, fused_adds = 0, scaled = 0;
};

class Rewriter {
 public:
  Rewriter(const torch::jit::Module& input, const StaticQuantizeOptions& options,
           const std::map<std::size_t, QuantRange>& ranges, const std::set<std::string>& keep_fp32)
      : module_(clone_for_transform(input)),
        options_(options),
        keep_fp32_(keep_fp32),
        onednn_(options.backend == "onednn"),
        cuda_(options.backend == "cuda") {
    graph_ = inlined_forward(module_, "quantize-static", GraphUse::inference);
    const auto values = numbered_values(*graph_);
    for (const auto& [index, range] : ranges) {
      JOULECUT_ASSERT(index < values.size(), "calibrated value outside the graph");
      ranges_[values[index]] = range;
    }
    self_ = graph_->inputs()[0];
    for (const auto& p : module_.named_parameters(true)) tensors_[p.name] = p.value;
  }

  Built build() {
    at::NoGradGuard no_grad;
    const auto layers = find_layers(*graph_, module_, "quantize-static", onednn_);
    std::map<Node*, const Layer*> by_node;
    std::vector<std::string> names;
    for (const auto& l : layers) {
      by_node[l.node] = &l;
      names.push_back(l.name);
    }
    const auto unreached = unreached_layers(module_, names);
    std::set<Node*> consumed;  // activations fused into an int8 op
    Built built;
    // Found before any rewrite: the gate's op is consumed into its layer as the graph changes.
    std::map<Node*, int> channel_scales;
    if (onednn_)
      for (Node* n : graph_->nodes())
        if (const auto scale = channel_scale_input(n)) channel_scales[n] = *scale;
    channel_scales_ = channel_scales;
    const std::vector<Node*> nodes(graph_->nodes().begin(), graph_->nodes().end());
    for (Node* n : nodes) {
      if (consumed.count(n)) continue;
      if (by_node.count(n)) {
        const Layer& l = *by_node[n];
        LayerChange change{l.name, "bits", 32, 32, l.why_fp32.empty() ? "" : "fp32: " + l.why_fp32};
        if (l.why_fp32.empty()) change.note = quantize_layer(l, consumed, built);
        if (change.note.empty()) change.after = 8;
        if (change.after == 8) {
          ++built.int8_layers;
          change.note = std::string(l.conv ? "conv2d" : "linear") + fused_note_ + weight_note_;
        }
        built.layers.push_back(change);
      } else if (is_tensor_add(n)) {
        quantize_add(n, consumed, built);
      } else if (channel_scales.count(n)) {
        quantize_channel_scale(n, channel_scales[n], built);
      } else if (n->kind() == c10::aten::max_pool2d || n->kind() == c10::aten::adaptive_avg_pool2d ||
                 n->kind() == c10::aten::flatten || is_relu(n)) {
        pass_through(n);
      }
    }
    // The report names every layer: those control flow hid, and those forward never reached.
    for (const auto& l : layers)
      if (l.node->owningBlock() != graph_->block()) built.layers.push_back({l.name, "bits", 32, 32, "fp32: " + l.why_fp32});
    for (const auto& [layer, why] : unreached) built.layers.push_back({layer, "bits", 32, 32, "fp32: " + why});
    // Shape queries read the uint8 tensor, which has the same shape: a dequantize kept only for
    // them (scripted F.adaptive_avg_pool2d asks its input's size) then goes.
    for (Node* n : graph_->nodes()) {
      if (n->kind() != kOurDequantize && n->kind() != c10::aten::dequantize) continue;
      const auto uses = n->output()->uses();
      for (const auto& use : uses)
        if (use.user->kind() == c10::aten::size || use.user->kind() == c10::aten::dim)
          use.user->replaceInput(use.offset, n->input(0));
    }
    torch::jit::EliminateDeadCode(graph_);
    for (Node* n : graph_->nodes()) {
      if (n->kind() == kOurQuantize || n->kind() == c10::aten::quantize_per_tensor) ++built.quantize_ops;
      if (n->kind() == kOurDequantize || n->kind() == c10::aten::dequantize) ++built.dequantize_ops;
    }
    if (built.int8_layers > 0) {
      replace_forward(module_, graph_);
      // The int8 state holds weight and bias now: the fp32 copies would only inflate the file.
      for (const auto& path : emptied_) {
        auto [owner, attribute] = owner_of(module_, path);
        owner.setattr(attribute, at::empty({0}));
      }
      drop_unread_attributes(module_, *module_.get_method("forward").graph());
    }
    module_.eval();
    built.module = module_;
    return built;
  }

 private:
  std::optional<QuantRange> range_of(Value* v) const {
    const auto it = ranges_.find(v);
    if (it == ranges_.end()) return std::nullopt;
    return it->second;
  }

  // The int8 version of `v`: an int8 producer's output, or a new quantize op when `v` is fp32
  // with a calibrated range.
  std::optional<Int8Value> int8_input(Value* v) {
    if (int8_.count(v)) return int8_[v];
    const auto range = range_of(v);
    if (!range) return std::nullopt;
    Node* at = v->node()->kind() == c10::prim::Param ? graph_->block()->nodes().front() : v->node()->next();
    WithInsertPoint guard(at);
    Value* q = onednn_ ? graph_->insert(kOurQuantize, {v, double(range->scale), std::int64_t(range->zero_point)})
                       : graph_->insert(c10::aten::quantize_per_tensor,
                                        {v, double(range->scale), std::int64_t(range->zero_point), kQuint8});
    int8_[v] = {q, *range};
    return int8_[v];
  }

  // Consumers of `fp32` read a dequantized copy of `q`; int8 consumers will find `q` instead.
  void publish(Value* fp32, Value* q, const QuantRange& range) {
    Value* dequantized = onednn_ ? graph_->insert(kOurDequantize, {q, double(range.scale), std::int64_t(range.zero_point)})
                                 : graph_->insert(c10::aten::dequantize, {q});
    fp32->replaceAllUsesWith(dequantized);
    int8_[dequantized] = {q, range};
  }

  // Would an int8 op read this value? (If not, a last layer can output float directly.)
  bool read_by_int8_op(Value* v) const {
    for (const auto& use : v->uses()) {
      const Node* n = use.user;
      // A channel scaling reads its x int8; its gate stays float.
      const auto scale = channel_scales_.find(const_cast<Node*>(n));
      if (scale != channel_scales_.end() && int(use.offset) != scale->second) return true;
      if (n->kind() == c10::aten::conv2d || n->kind() == c10::aten::_convolution || n->kind() == c10::aten::linear ||
          is_tensor_add(const_cast<Node*>(n)) ||
          n->kind() == c10::aten::max_pool2d || n->kind() == c10::aten::adaptive_avg_pool2d ||
          n->kind() == c10::aten::flatten || is_relu(n))
        return true;
    }
    return false;
  }

  // Returns "" when the layer became int8, else why it stays fp32.
  std::string quantize_layer(const Layer& l, std::set<Node*>& consumed, Built& built) {
    if (keep_fp32_.count(l.name)) return "fp32: kept by the accuracy budget";
    if (matches_any(l.name, options_.exclude)) return "fp32: excluded";
    if (cuda_) return quantize_layer_for_cuda(l, consumed, built);
    // onednn: a residual add that reads only this convolution's output and a value already int8
    // runs inside the convolution (oneDNN's sum post-op), with the ReLU after it.
    Node* add = nullptr;
    std::optional<Int8Value> residual;
    if (onednn_ && l.conv && !l.activation && l.node->output()->uses().size() == 1) {
      Node* user = l.node->output()->uses()[0].user;
      if (is_tensor_add(user) && user->owningBlock() == l.node->owningBlock()) {
        Value* other = user->input(0) == l.node->output() ? user->input(1) : user->input(0);
        if (other != l.node->output() && int8_.count(other)) {
          add = user;
          residual = int8_[other];
        }
      }
    }
    Node* relu = add ? fused_relu(add) : (l.relu() ? l.activation : nullptr);
    Node* activation = add ? relu : l.activation;
    Value* result = add ? (relu ? relu->output() : add->output()) : l.output();
    const auto out_range = range_of(result);
    if (!out_range) return "fp32: output not calibrated";
    WithInsertPoint guard(l.node);
    const auto input = int8_input(l.node->input(0));
    if (!input) return "fp32: input not calibrated";
    const at::Tensor weight = tensors_[l.weight_path];
    c10::optional<at::Tensor> bias;
    if (l.bias_path) bias = tensors_[*l.bias_path].detach().clone();
    const bool float_out = onednn_ && !add && !read_by_int8_op(result);
    const std::string attribute = root_attribute_name(kInt8Layer, l.name);
    c10::IValue state;
    char note[160];
    if (onednn_) {
#ifdef JOULECUT_HAVE_ONEDNN
      Int8LayerSpec spec;
      spec.kind = l.conv ? "conv2d" : "linear";
      spec.weight = weight;
      if (bias) spec.bias = *bias;
      if (l.conv) {
        spec.stride = l.stride;
        spec.padding = l.padding;
        spec.dilation = l.dilation;
        spec.groups = l.groups;
      }
      spec.input_scale = input->range.scale;
      spec.input_zero_point = input->range.zero_point;
      spec.output_scale = out_range->scale;
      spec.output_zero_point = out_range->zero_point;
      spec.relu = relu != nullptr;
      if (activation && !relu) {
        spec.activation = l.activation_kind.name;
        spec.activation_min = l.activation_kind.min;
        spec.activation_max = l.activation_kind.max;
      }
      spec.output_float = float_out;
      if (add) {
        spec.residual = true;
        spec.residual_scale = double(residual->range.scale) / out_range->scale;
        spec.residual_zero_point = residual->range.zero_point;
      }
      state = make_int8_layer(spec);
      std::snprintf(note, sizeof note, "%s (weight error <= %.2g)", float_out ? ", float output" : "",
                    int8_weight_error(state));
#else
      throw UserError("quantize-static: backend=onednn needs libjoulecut_ops built with oneDNN (libdnnl-dev)");
#endif
    } else {
      const at::Tensor qweight = quantize_weight_per_channel(weight);
      state = l.conv ? prepack_conv2d(qweight, bias, l.stride, l.padding, l.dilation, l.groups) : prepack_linear(qweight, bias);
      std::snprintf(note, sizeof note, " (weight error %.2g)", (qweight.dequantize() - weight).abs().max().item<double>());
    }
    weight_note_ = note;
    module_.register_attribute(attribute, state.type(), state);
    Value* params = graph_->insertGetAttr(self_, attribute);
    Value* out = nullptr;
    if (onednn_) {
      out = add ? graph_->insert(kOurConvAdd, {input->value, params, residual->value})
                : graph_->insert(l.conv ? kOurConv : kOurLinear, {input->value, params});
    } else {
      const c10::Symbol op = l.conv ? (l.relu() ? kQuantizedConvRelu : kQuantizedConv)
                                    : (l.relu() ? kQuantizedLinearRelu : kQuantizedLinear);
      out = graph_->insert(op, {input->value, params, double(out_range->scale), std::int64_t(out_range->zero_point)});
    }
    if (float_out) {
      result->replaceAllUsesWith(out);
    } else {
      publish(result, out, *out_range);
    }
    const std::string activation_name = activation ? (relu ? "relu" : l.activation_kind.name) : "";
    fused_note_ = std::string(add ? " + residual add" : "") + (activation ? " + " + activation_name : "") +
                  (add || activation ? " fused" : "");
    if (activation) {
      consumed.insert(activation);
      ++built.fused;
    }
    if (add) {
      consumed.insert(add);
      ++built.fused_adds;
    }
    emptied_.push_back(l.weight_path);
    if (l.bias_path) emptied_.push_back(*l.bias_path);
    return "";
  }

  // backend=cuda: a Linear becomes joulecut::int8_linear_dp4a, which quantizes its fp32 input
  // itself (symmetric int8, the calibrated range) and returns fp32, ReLU fused. Its weights are
  // root buffers, so module.to("cuda") moves them.
  std::string quantize_layer_for_cuda(const Layer& l, std::set<Node*>& consumed, Built& built) {
    if (l.conv) return "fp32: backend=cuda has an int8 kernel for Linear layers only";
    const auto input_range = range_of(l.node->input(0));
    if (!input_range) return "fp32: input not calibrated";
    const double bound = std::max(std::abs(double(input_range->min)), std::abs(double(input_range->max)));
    const double input_scale = bound > 0 ? bound / 127 : 1.0;
    const Dp4aWeight packed = pack_dp4a_weight(tensors_[l.weight_path]);
    const std::string weight_name = root_attribute_name(kDp4aWeight, l.name);
    const std::string scale_name = root_attribute_name(kDp4aScale, l.name);
    module_.register_buffer(weight_name, packed.weight);
    module_.register_buffer(scale_name, packed.scale);
    WithInsertPoint guard(l.node);
    Value* bias = nullptr;
    if (l.bias_path) {
      const std::string bias_name = root_attribute_name(kDp4aBias, l.name);
      module_.register_buffer(bias_name, tensors_[*l.bias_path].detach().to(at::kFloat).contiguous().clone());
      bias = graph_->insertGetAttr(self_, bias_name);
    } else {
      bias = graph_->insertConstant(c10::IValue());
    }
    Value* out = graph_->insert(kOurLinearDp4a, {l.node->input(0), graph_->insertGetAttr(self_, weight_name),
                                                 graph_->insertGetAttr(self_, scale_name), bias, input_scale,
                                                 l.relu()});
    // The next layer reads `out` now: it keeps the calibrated range of the value it replaces.
    if (const auto out_range = range_of(l.output())) ranges_[out] = *out_range;
    l.output()->replaceAllUsesWith(out);
    const at::Tensor weight = tensors_[l.weight_path].detach().to(at::kFloat);
    const at::Tensor restored = packed.weight.narrow(1, 0, weight.size(1)).to(at::kFloat) * packed.scale.unsqueeze(1);
    char note[120];
    std::snprintf(note, sizeof note, ", dp4a, input scale %.3g (weight error %.2g)", input_scale,
                  (restored - weight).abs().max().item<double>());
    weight_note_ = note;
    fused_note_ = l.relu() ? " + relu fused" : "";
    if (l.relu()) {
      consumed.insert(l.activation);
      ++built.fused;
    }
    emptied_.push_back(l.weight_path);
    if (l.bias_path) emptied_.push_back(*l.bias_path);
    return "";
  }

  void quantize_add(Node* n, std::set<Node*>& consumed, Built& built) {
    Node* relu = fused_relu(n);
    Value* result = relu ? relu->output() : n->output();
    const auto out_range = range_of(result);
    // Only worth it when one side is already int8: otherwise two quantizes buy one int8 add.
    if (!out_range || (!int8_.count(n->input(0)) && !int8_.count(n->input(1)))) return;
    WithInsertPoint guard(n);
    const auto a = int8_input(n->input(0));
    const auto b = int8_input(n->input(1));
    if (!a || !b) return;
    Value* out = nullptr;
    if (onednn_) {
      out = graph_->insert(kOurAdd, {a->value, double(a->range.scale), std::int64_t(a->range.zero_point), b->value,
                                     double(b->range.scale), std::int64_t(b->range.zero_point), double(out_range->scale),
                                     std::int64_t(out_range->zero_point), relu != nullptr});
    } else {
      out = graph_->insert(relu ? kQuantizedAddRelu : kQuantizedAdd,
                           {a->value, b->value, double(out_range->scale), std::int64_t(out_range->zero_point)});
    }
    publish(result, out, *out_range);
    if (relu) {
      consumed.insert(relu);
      ++built.fused;
    }
  }

  // Squeeze-and-excitation's `scale * x` with x already int8: one pass on uint8 scales each
  // channel by the float gate and requantizes, where fp32 would dequantize x and quantize again.
  void quantize_channel_scale(Node* n, int scale_input, Built& built) {
    Value* x = n->input(1 - scale_input);
    const auto out_range = range_of(n->output());
    if (!int8_.count(x) || !out_range) return;
    const Int8Value in = int8_[x];
    WithInsertPoint guard(n);
    Value* out = graph_->insert(kOurScaleChannels, {in.value, double(in.range.scale), std::int64_t(in.range.zero_point),
                                                    n->input(scale_input), double(out_range->scale),
                                                    std::int64_t(out_range->zero_point)});
    publish(n->output(), out, *out_range);
    ++built.scaled;
  }

  // Ops that keep an int8 tensor's scale and zero point: they run on the int8 value directly.
  void pass_through(Node* n) {
    if (!int8_.count(n->input(0))) return;
    const Int8Value in = int8_[n->input(0)];
    WithInsertPoint guard(n);
    Value* out = nullptr;
    if (n->kind() == c10::aten::flatten) {
      out = graph_->insert(c10::aten::flatten, {in.value, n->input(1), n->input(2)});
    } else if (is_relu(n)) {
      out = onednn_ ? graph_->insert(c10::aten::clamp_min, {in.value, std::int64_t(in.range.zero_point)})
                    : graph_->insert(c10::aten::relu, {in.value});
    } else if (n->kind() == c10::aten::adaptive_avg_pool2d) {
      out = onednn_ ? graph_->insert(kOurAvgPool, {in.value, n->input(1)})
                    : graph_->insert(c10::aten::adaptive_avg_pool2d, {in.value, n->input(1)});
    } else {  // max_pool2d(x, kernel, stride, padding, dilation, ceil_mode)
      if (onednn_) {
        const auto dilation = int_list(n->input(4));
        const auto ceil = torch::jit::toIValue(n->input(5));
        if (!dilation || *dilation != std::vector<std::int64_t>{1, 1} || !ceil || !ceil->isBool() || ceil->toBool()) return;
        out = graph_->insert(kOurMaxPool, {in.value, n->input(1), n->input(2), n->input(3)});
      } else {
        out = graph_->insert(c10::aten::max_pool2d, {in.value, n->input(1), n->input(2), n->input(3), n->input(4), n->input(5)});
      }
    }
    publish(n->output(), out, in.range);
  }

  torch::jit::Module module_;
  const StaticQuantizeOptions& options_;
  const std::set<std::string>& keep_fp32_;
  bool onednn_, cuda_;
  std::shared_ptr<Graph> graph_;
  Value* self_ = nullptr;
  std::map<Value*, QuantRange> ranges_;
  std::map<std::string, at::Tensor> tensors_;
  std::map<Value*, Int8Value> int8_;
  std::map<Node*, int> channel_scales_;
  std::vector<std::string> emptied_;
  std::string weight_note_, fused_note_;
};

#ifdef JOULECUT_HAVE_ONEDNN
// The layer alone in fp32 as it would be deployed: a module of the layer and its activation,
// frozen and optimized for inference (prepacked oneDNN convolution where LibTorch picks it), so
// that the fp32 side is timed as fast as the fp32 model runs it.
torch::jit::Module deployed_fp32_layer(const Layer& l, const at::Tensor& weight, const at::Tensor& bias) {
  torch::jit::Module m("JoulecutTimedLayer");
  m.register_attribute("training", c10::BoolType::get(), false);
  m.register_parameter("weight", weight, false);
  if (bias.defined()) m.register_parameter("bias", bias, false);
  const auto list = [](const std::vector<std::int64_t>& v) {
    std::string out;
    for (auto x : v) out += (out.empty() ? "" : ", ") + std::to_string(x);
    return "[" + out + "]";
  };
  const std::string b = bias.defined() ? "self.bias" : "None";
  std::string y = l.conv ? "torch.conv2d(x, self.weight, " + b + ", " + list(l.stride) + ", " + list(l.padding) + ", " +
                               list(l.dilation) + ", " + std::to_string(l.groups) + ")"
                         : "torch.linear(x, self.weight, " + b + ")";
  if (l.activation) {
    const Activation& a = l.activation_kind;
    char bounds[96];
    std::snprintf(bounds, sizeof bounds, ", %.17g, %.17g", a.min, a.max);
    if (a.name == "hardtanh") y = "torch.hardtanh(" + y + bounds + ")";
    else if (a.name == "gelu_tanh") y = "torch.gelu(" + y + ", approximate=\"tanh\")";
    else y = "torch." + a.name + "(" + y + ")";
  }
  m.define("def forward(self, x):\n    return " + y + "\n");
  m.eval();
  try {
    torch::jit::Module frozen = torch::jit::freeze(m);
    return torch::jit::optimize_for_inference(frozen);
  } catch (const c10::Error&) {
    return m;
  }
}

struct LayerTiming {
  double fp32_us = 0, int8_us = 0;
  std::string note;  // why it was not timed, when it was not
};

// Each int8 layer timed in place at the batch of `inputs`: its fp32 op (with its activation) on
// the layer's real input, against its int8 op with the quantize of its input and the dequantize
// of its output that the int8 model runs only because of it.
using Timer = std::function<std::pair<double, double>(const std::string&, const std::function<void()>&,
                                                      const std::function<void()>&)>;

std::map<std::string, LayerTiming> time_layers(const torch::jit::Module& input, const Built& built,
                                               const std::vector<c10::IValue>& inputs, const Timer& timer) {
  torch::jit::Module probe = clone_for_transform(input);
  auto graph = inlined_forward(probe, "quantize-static", GraphUse::inference);
  const auto layers = find_layers(*graph, probe, "quantize-static", true);
  const auto values = numbered_values(*graph);
  std::map<Value*, std::size_t> index;
  for (std::size_t i = 0; i < values.size(); ++i) index[values[i]] = i;
  std::set<std::size_t> wanted;
  for (const auto& l : layers)
    if (index.count(l.node->input(0))) wanted.insert(index[l.node->input(0)]);
  const auto captured = capture_values(input, wanted, inputs);
  std::map<std::string, at::Tensor> tensors;
  for (const auto& p : probe.named_parameters(true)) tensors[p.name] = p.value.detach();

  // The int8 op of each layer in the built model, with its boundary ops.
  struct Int8Op {
    Node* node = nullptr;
    Node* quantize = nullptr;    // the quantize of its input, when it has one of its own
    Node* dequantize = nullptr;  // the dequantize of its output, when some fp32 op reads it
  };
  std::map<std::string, Int8Op> ops;
  auto built_graph = built.module.get_method("forward").graph();
  for (Node* n : built_graph->nodes()) {
    if (n->kind() != kOurConv && n->kind() != kOurLinear && n->kind() != kOurConvAdd) continue;
    Node* attr = n->input(1)->node();
    if (attr->kind() != c10::prim::GetAttr) continue;
    const std::string layer = layer_of_root_attribute(kInt8Layer, attr->s(c10::attr::name));
    Int8Op op{n};
    if (n->input(0)->node()->kind() == kOurQuantize) op.quantize = n->input(0)->node();
    for (const auto& use : n->output()->uses())
      if (use.user->kind() == kOurDequantize) op.dequantize = use.user;
    ops[layer] = op;
  }
  std::map<std::string, LayerTiming> out;
  at::NoGradGuard no_grad;
  for (const auto& l : layers) {
    if (!ops.count(l.name)) continue;
    LayerTiming t;
    const Int8Op& op = ops[l.name];
    if (op.node->kind() == kOurConvAdd) {
      t.note = "not timed: its residual add runs inside it";
      out[l.name] = t;
      continue;
    }
    if (!index.count(l.node->input(0)) || !captured.count(index[l.node->input(0)])) {
      t.note = "not timed: input not captured";
      out[l.name] = t;
      continue;
    }
    const at::Tensor x = captured.at(index[l.node->input(0)]).contiguous(
        l.conv ? at::MemoryFormat::ChannelsLast : at::MemoryFormat::Contiguous);
    const at::Tensor w = tensors.at(l.weight_path);
    const at::Tensor b = l.bias_path ? tensors.at(*l.bias_path) : at::Tensor();
    const c10::IValue state = built.module.attr(root_attribute_name(kInt8Layer, l.name));
    const auto constant = [](Node* n, std::size_t i) { return *torch::jit::toIValue(n->input(i)); };
    // The uint8 input the int8 op reads: quantized here once when a producer hands it over int8.
    at::Tensor q;
    double in_scale = 1;
    std::int64_t in_zero = 0;
    if (op.quantize) {
      in_scale = constant(op.quantize, 1).toDouble();
      in_zero = constant(op.quantize, 2).toInt();
    } else {
      const auto range = affine_uint8(x.min().item<float>(), x.max().item<float>());
      in_scale = range.scale;
      in_zero = range.zero_point;
    }
    q = call_op("joulecut::quantize_u8", {x, in_scale, in_zero}).toTensor();
    torch::jit::Module fp32_layer = deployed_fp32_layer(l, w, b);
    const std::vector<c10::IValue> fp32_input{x};
    const auto fp32 = [&] { fp32_layer.forward(fp32_input); };
    const char* name = l.conv ? "joulecut::int8_conv2d" : "joulecut::int8_linear";
    const auto int8 = [&] {
      const at::Tensor in = op.quantize ? call_op("joulecut::quantize_u8", {x, in_scale, in_zero}).toTensor() : q;
      const at::Tensor y = call_op(name, {in, state}).toTensor();
      if (op.dequantize)
        call_op("joulecut::dequantize_u8", {y, constant(op.dequantize, 1), constant(op.dequantize, 2)});
    };
    std::tie(t.fp32_us, t.int8_us) = timer("layer " + l.name + ": fp32 vs int8", fp32, int8);
    out[l.name] = t;
  }
  return out;
}
#endif

double accuracy_points(torch::jit::Module module, const TensorDataset& data) {
  return 100.0 * evaluate(module, data).accuracy.value;
}

// The budget's measure of quality, in points: top-1 accuracy on the labels, or (agreement) the
// share of samples on which `module` picks the class the fp32 model picks (100 for fp32 itself).
double quality_points(torch::jit::Module& fp32, torch::jit::Module module, const TensorDataset& data, bool agreement) {
  if (!agreement) return accuracy_points(module, data);
  const Fidelity f = fidelity(fp32, module, data);
  if (!f.agreement)
    throw UserError("quantize-static: metric=agreement needs class scores ([batch, classes], or --model-output naming them)");
  return 100.0 * f.agreement->value;
}

}  // namespace

StaticQuantizePass::StaticQuantizePass(StaticQuantizeOptions options) : options_(std::move(options)) {}

namespace {

// The accuracy budget: points ("0.5") or relative to fp32 ("1%"); "" (the default) is none.
OptionDecl<StaticQuantizeOptions> accuracy_budget_option() {
  OptionDecl<StaticQuantizeOptions> d;
  d.info = {"max-accuracy-drop", OptionType::text, "",
            "accuracy budget in points (0.5), or relative to fp32 (1%); the most sensitive layers stay fp32"};
  d.get = [](const StaticQuantizeOptions& o) {
    return o.max_accuracy_drop < 0 ? std::string() : number_text(o.max_accuracy_drop) + (o.relative_drop ? "%" : "");
  };
  d.set = [](StaticQuantizeOptions& o, const std::string& pass, std::string drop) {
    o.max_accuracy_drop = -1;
    o.relative_drop = false;
    if (drop.empty()) return;  // no budget, as by default
    o.relative_drop = drop.back() == '%';
    if (o.relative_drop) drop.pop_back();
    try {
      std::size_t used = 0;
      o.max_accuracy_drop = std::stod(drop, &used);
      if (used != drop.size() || o.max_accuracy_drop < 0) throw std::invalid_argument(drop);
    } catch (const std::exception&) {
      throw UserError(pass + ": max-accuracy-drop '" + drop +
                      "' is not a number >= 0 (points, e.g. 0.5; or relative to fp32, e.g. 1%)");
    }
  };
  return d;
}

}  // namespace

const OptionTable<StaticQuantizeOptions>& StaticQuantizePass::options_table() {
  using O = StaticQuantizeOptions;
  static const OptionTable<O> table(
      "quantize-static",
      {option("backend",
              "onednn: joulecut's int8 runtime; torch: LibTorch's quantized ops (stock PyTorch loads it); cuda: "
              "joulecut's dp4a kernel for Linear layers on NVIDIA GPUs",
              &O::backend),
       option("observer", "activation ranges: minmax, percentile, entropy (KL) or mse", &O::observer),
       option("percentile", "with observer=percentile, in (0, 100]", &O::percentile),
       option("samples", "calibration images (the first N of the training split)", &O::samples),
       option("exclude", "keep layers matching these '|'-separated globs in fp32", &O::exclude),
       accuracy_budget_option(),
       option("validation", "images at the end of the training split that the budget is measured on", &O::validation),
       option("metric", "what the budget is on: top1 (accuracy, needs labels) or agreement (top-1 agreement with the "
                        "fp32 model, label-free; the default for data without labels)",
              &O::metric),
       option("per-layer", "all (every layer int8) or auto (onednn: a layer stays fp32 where int8 is slower, timed "
                           "here at the batch)",
              &O::per_layer),
       option("batch", "with per-layer=auto: the batch size the layers are timed at", &O::batch)});
  return table;
}

StaticQuantizeOptions StaticQuantizePass::parse(const PassOptionMap& map) {
  const StaticQuantizeOptions o = options_table().parse(map);
  if (o.backend != "onednn" && o.backend != "torch" && o.backend != "cuda")
    throw UserError("quantize-static: backend '" + o.backend + "': choose onednn (joulecut's int8 runtime), torch "
                    "(LibTorch's quantized ops, loads in stock PyTorch) or cuda (int8 Linear layers on NVIDIA GPUs)");
  make_observer(o.observer, o.percentile);  // validates both
  if (map.count("percentile") && o.observer != "percentile")
    throw UserError("quantize-static: percentile applies to observer=percentile only");
  if (o.samples < 1) throw UserError("quantize-static: samples must be >= 1");
  if (o.validation < 1) throw UserError("quantize-static: validation must be >= 1");
  if (o.per_layer != "all" && o.per_layer != "auto")
    throw UserError("quantize-static: per-layer '" + o.per_layer + "': choose all (every layer int8) or auto (timed)");
  if (o.per_layer == "auto" && o.backend != "onednn")
    throw UserError("quantize-static: per-layer=auto times joulecut's int8 ops: it needs backend=onednn");
  if (o.batch < 1) throw UserError("quantize-static: batch must be >= 1");
  if (o.metric != "top1" && o.metric != "agreement")
    throw UserError("quantize-static: metric '" + o.metric + "': choose top1 (accuracy) or agreement (with the fp32 model)");
  return o;
}

std::string StaticQuantizePass::options_text() const { return options_table().print(options_); }

PassResult StaticQuantizePass::run(const torch::jit::Module& input, PassContext& context) const {
  if (!context.train) throw UserError("quantize-static: calibration needs training data (--data)");
  const TensorDataset& train = *context.train;
#ifndef JOULECUT_HAVE_ONEDNN
  if (options_.backend == "onednn")
    throw UserError("quantize-static: backend=onednn needs libjoulecut_ops built with oneDNN (libdnnl-dev); use "
                    "backend=torch");
#endif
  std::string engine;
  if (options_.backend == "torch") engine = choose_engine(name());
  torch::jit::Module probe = clone_for_transform(input);
  auto graph = inlined_forward(probe, name(), GraphUse::inference);
  const auto layers = find_layers(*graph, probe, name(), options_.backend == "onednn");
  std::vector<std::string> names;
  for (const auto& l : layers) names.push_back(l.name);
  check_patterns({"", options_.exclude, false}, names, name());
  for (Node* n : graph->nodes())
    if (n->kind() == c10::aten::batch_norm)
      for (const auto& l : layers)
        if (n->input(0) == l.node->output())
          throw UserError("quantize-static: " + l.name + " is followed by a BatchNorm; run fold-batchnorm first");

  const auto ranges = calibrate_values(input, values_to_observe(*graph, layers), train, options_, context.progress);

  PassReport report;
  report.pass = text();
  std::set<std::string> keep;
  std::map<std::string, std::string> budget_notes;  // layers the accuracy budget keeps fp32, and why
  Built built = Rewriter(input, options_, ranges, keep).build();
  if (built.int8_layers == 0)
    throw UserError("quantize-static: no layer could be made int8 (" +
                    (built.layers.empty() ? std::string("none found") : built.layers.front().layer + ": " + built.layers.front().note) + ")");
  if (options_.max_accuracy_drop >= 0) {
    const std::int64_t count = std::min<std::int64_t>(options_.validation, train.size());
    TensorDataset validation = slice(train, train.size() - count, count);
    validation.description = "last " + std::to_string(count) + " training images";
    torch::jit::Module fp32 = input.clone();
    // Data without labels: the budget is on top-1 agreement with the fp32 model instead.
    const bool agreement = options_.metric == "agreement" || !validation.labelled();
    const double baseline = agreement ? 100.0 : accuracy_points(fp32, validation);
    const double budget = options_.relative_drop ? baseline * options_.max_accuracy_drop / 100 : options_.max_accuracy_drop;
    double accuracy = quality_points(fp32, built.module, validation, agreement);
    char line[240];
    std::snprintf(line, sizeof line, "%s budget: fp32 %.2f%% on the %s; all int8 %.2f%% (drop %.2f pt, budget %.2f pt)",
                  agreement ? "top-1 agreement with fp32" : "accuracy", baseline, validation.description.c_str(), accuracy,
                  baseline - accuracy, budget);
    report.notes.push_back(line);
    std::map<std::string, double> cost;
    while (baseline - accuracy > budget) {
      std::vector<std::string> int8_layers;
      for (const auto& l : built.layers)
        if (l.after == 8) int8_layers.push_back(l.layer);
      if (int8_layers.empty()) break;
      std::string best;
      double best_accuracy = -1;
      Built best_build;
      ProgressBar bar("accuracy budget: trying each int8 layer in fp32", std::int64_t(int8_layers.size()), context.progress);
      for (std::size_t i = 0; i < int8_layers.size(); ++i) {
        std::set<std::string> trial = keep;
        trial.insert(int8_layers[i]);
        Built candidate = Rewriter(input, options_, ranges, trial).build();
        const double a = candidate.int8_layers > 0 ? quality_points(fp32, candidate.module, validation, agreement) : baseline;
        if (a > best_accuracy) {
          best_accuracy = a;
          best = int8_layers[i];
          best_build = candidate;
        }
        bar.update(std::int64_t(i + 1), int8_layers[i]);
      }
      bar.finish("keeps " + best + " in fp32");
      cost[best] = best_accuracy - accuracy;
      keep.insert(best);
      accuracy = best_accuracy;
      built = best_build;
    }
    if (built.int8_layers == 0)
      throw UserError("quantize-static: no layer can be int8 within the accuracy budget of " + number_text(budget) +
                      " pt; raise --max-accuracy-drop");
    for (const auto& [layer, points] : cost) {
      std::snprintf(line, sizeof line, "fp32: accuracy budget (int8 here cost %.2f pt)", points);
      budget_notes[layer] = line;
    }
    std::snprintf(line, sizeof line, "accuracy budget: %zu layer(s) kept fp32; int8 model %.2f%% (drop %.2f pt) %s budget",
                  keep.size(), accuracy, baseline - accuracy, baseline - accuracy <= budget ? "within" : "OVER");
    report.notes.push_back(line);
  }
#ifdef JOULECUT_HAVE_ONEDNN
  if (options_.per_layer == "auto") {
    if (context.progress) std::fprintf(stderr, "quantize-static: timing each layer in fp32 and int8 at batch %lld\n",
                                        (long long)options_.batch);
    // The target batch, from the first training samples (repeated when there are fewer).
    std::vector<c10::IValue> batch = train.inputs(0, std::min<std::int64_t>(options_.batch, train.size()));
    for (auto& v : batch) {
      at::Tensor t = v.toTensor();
      while (t.size(0) < options_.batch) t = at::cat({t, t}).narrow(0, 0, std::min<std::int64_t>(2 * t.size(0), options_.batch));
      v = t;
    }
    const Timer timer = options_.timer ? options_.timer
                                       : Timer([](const std::string& what, const std::function<void()>& a,
                                                  const std::function<void()>& b) {
                                           return interleaved_median_us(a, b, what.rfind("model", 0) == 0 ? 1.0 : 0.2);
                                         });
    const auto timings = time_layers(input, built, batch, timer);
    std::set<std::string> slower;
    for (const auto& [layer, t] : timings)
      if (t.note.empty() && t.int8_us > t.fp32_us) slower.insert(layer);
    std::set<std::string> trial = keep;
    trial.insert(slower.begin(), slower.end());
    Built per_layer = slower.empty() ? built : Rewriter(input, options_, ranges, trial).build();
    // The whole models at the batch: fp32, all int8, and int8 where faster; the faster int8 kept.
    // fp32 as it would be deployed and measured: frozen and optimized for inference.
    torch::jit::Module fp32 = input.clone();
    fp32.eval();
    try {
      torch::jit::Module frozen = torch::jit::freeze(fp32);
      fp32 = torch::jit::optimize_for_inference(frozen);
    } catch (const c10::Error&) {
      // Not freezable (an attribute forward assigns): timed as it is.
    }
    at::NoGradGuard no_grad;
    const auto [fp32_us, all_us] =
        timer("model: fp32 vs all int8", [&] { fp32.forward(batch); }, [&] { built.module.forward(batch); });
    double chosen_us = all_us;
    if (!slower.empty()) {
      const auto [all_again, per_layer_us] = timer("model: all int8 vs per layer", [&] { built.module.forward(batch); },
                                                   [&] { per_layer.module.forward(batch); });
      if (per_layer_us < all_again) {
        built = per_layer;
        keep = trial;
        chosen_us = per_layer_us * all_us / all_again;  // on the first pair's scale
      }
    }
    for (auto& l : built.layers) {
      const auto it = timings.find(l.layer);
      if (it == timings.end()) continue;
      char line[200];
      if (!it->second.note.empty())
        std::snprintf(line, sizeof line, "; %s", it->second.note.c_str());
      else
        std::snprintf(line, sizeof line, "; at batch %lld: fp32 %.1f us, int8 %.1f us%s", (long long)options_.batch,
                      it->second.fp32_us, it->second.int8_us,
                      l.after == 8 ? "" : " (fp32: faster here)");
      if (l.after != 8 && slower.count(l.layer) && !budget_notes.count(l.layer)) l.note = "fp32: int8 is slower here";
      l.note += line;
    }
    char line[320];
    std::snprintf(line, sizeof line,
                  "per-layer=auto at batch %lld: %zu layer(s) faster in fp32%s; whole model fp32 %.3g ms, all int8 %.3g "
                  "ms, kept %.3g ms (%.2fx)",
                  (long long)options_.batch, slower.size(),
                  slower.empty() ? ""
                  : (built.module._ivalue() == per_layer.module._ivalue()
                         ? " kept fp32"
                         : " alone, yet the whole model ran faster with every layer int8: all int8 kept"),
                  fp32_us / 1e3, all_us / 1e3, chosen_us / 1e3, fp32_us / chosen_us);
    report.notes.push_back(line);
    if (chosen_us > fp32_us)
      report.notes.push_back("**slower than fp32 at batch " + std::to_string(options_.batch) +
                             "**: the int8 ops and their quantize/dequantize cost more than they save on this model "
                             "and machine; keep the fp32 model, or quantize for another batch");
  }
#endif
  for (auto& l : built.layers)
    if (budget_notes.count(l.layer)) l.note = budget_notes[l.layer] + l.note.substr(std::min(l.note.size(), l.note.find(';')));
  // One run on calibration images: errors surface here, not later, and the report can say which
  // int8 kernels ran (oneDNN's, or joulecut's for few channels).
  try {
    at::NoGradGuard no_grad;
    built.module.forward(train.inputs(0, std::min<std::int64_t>(64, train.size())));
  } catch (const c10::Error& e) {
    JOULECUT_ASSERT(false, std::string("the int8 model does not run: ") + e.what_without_backtrace());
  }
  report.layers = built.layers;
  char summary[240];
  if (options_.backend == "cuda")
    std::snprintf(summary, sizeof summary,
                  "%d of %zu Conv2d/Linear layer(s) int8 on the cuda backend (Linear only), %d ReLU(s) fused; each "
                  "int8 Linear quantizes its fp32 input and returns fp32",
                  built.int8_layers, built.layers.size(), built.fused);
  else
    std::snprintf(summary, sizeof summary,
                  "%d of %zu Conv2d/Linear layer(s) int8 on the %s backend, %d activation(s) fused, %d residual add(s) run "
                  "inside convolutions; int8 between layers, %d quantize and %d dequantize op(s) at fp32 boundaries",
                  built.int8_layers, built.layers.size(), options_.backend.c_str(), built.fused, built.fused_adds,
                  built.quantize_ops, built.dequantize_ops);
  report.summary = summary;
  if (attention::has_attention(input))
    report.notes.push_back("attention: its Linear layers (the packed Q/K/V projection and the output projection) as "
                           "listed; LayerNorm, softmax and the two attention matrix products stay fp32, activations "
                           "quantized per tensor");
  if (built.scaled > 0)
    report.notes.push_back("squeeze-and-excitation: " + std::to_string(built.scaled) +
                           " channel scaling(s) run on uint8 (joulecut::int8_scale_channels)");
  report.notes.push_back("calibration: " + options_.observer + " observer on the first " +
                         std::to_string(std::min<std::int64_t>(options_.samples, train.size())) + " training images");
#ifdef JOULECUT_HAVE_ONEDNN
  if (options_.backend == "onednn") report.notes.push_back("int8 kernels: " + int8_implementations());
#endif
  if (options_.backend == "cuda")
    report.notes.push_back(std::string("backend=cuda: joulecut::int8_linear_dp4a runs the dp4a kernel on CUDA tensors") +
                           (dp4a_kernel_compiled() ? "" : " (not in this build: LibTorch without CUDA)") +
                           " and an exact CPU reference on CPU tensors; measure on a GPU with --device cuda");
  if (options_.backend == "torch") report.notes.push_back("LibTorch quantized engine: " + engine + " (loads in stock PyTorch)");
  else report.notes.push_back("needs libjoulecut_ops at load time (C++: link it; Python: torch.ops.load_library)");
  return {built.module, report};
}

}  // namespace joulecut
