// quantize-static's rewrite: a fresh clone of the model, its Conv2d/Linear layers int8, with
// activations int8 from layer to layer.
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

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <map>
#include <optional>
#include <set>

#include "graph/layer_selection.h"
#include "graph/module_graph.h"
#include "graph/quantized_engine.h"
#include "graph/root_attributes.h"
#include "joulecut/error.h"
#include "joulecut/int8_cuda.h"
#include "joulecut/text.h"
#include "quantize/static_internal.h"
#ifdef JOULECUT_HAVE_ONEDNN
#include "joulecut/int8.h"
#endif

namespace joulecut::static_quant {
using namespace graph;
namespace {

using torch::jit::WithInsertPoint;

// An int8 value: the op that produced it, its scale and zero point.
struct Int8Value {
  Value* value = nullptr;
  QuantRange range;
};

// How one layer runs int8: what fuses into it, and the values it reads and writes.
struct LayerPlan {
  Node* add = nullptr;                // a residual add run inside the convolution (onednn)
  std::optional<Int8Value> residual;  // the add's other input, already int8
  Node* relu = nullptr;               // the ReLU fused into it
  Node* activation = nullptr;         // the activation fused into it (the ReLU, or another kind)
  Value* result = nullptr;            // the fp32 value the int8 op stands for
  QuantRange out_range;
  Int8Value input;
  bool float_out = false;  // onednn: the op returns float (no int8 op reads its output)
};

class Rewriter {
 public:
  Rewriter(const torch::jit::Module& input, const StaticQuantizeOptions& options,
           const CalibratedValues& calibration, const std::set<std::string>& keep_fp32)
      : module_(clone_for_transform(input)),
        options_(options),
        keep_fp32_(keep_fp32),
        onednn_(options.backend == "onednn"),
        cuda_(options.backend == "cuda") {
    graph_ = inlined_forward(module_, StaticQuantizePass::kName, GraphUse::inference);
    const auto values = numbered_values(*graph_);
    for (const auto& [index, range] : calibration.ranges) {
      JOULECUT_ASSERT(index < values.size(), "calibrated value outside the graph");
      ranges_[values[index]] = range;
    }
    for (const auto& [index, mean] : calibration.conv_channel_means) conv_channel_means_[values[index]] = mean;
    for (const auto& [index, mean] : calibration.feature_means) feature_means_[values[index]] = mean;
    self_ = graph_->inputs()[0];
    for (const auto& p : module_.named_parameters(true)) tensors_[p.name] = p.value;
  }

  Built build() {
    at::NoGradGuard no_grad;
    const auto layers = find_layers(*graph_, module_, StaticQuantizePass::kName, onednn_);
    std::vector<std::string> names;
    for (const auto& l : layers) names.push_back(l.name);
    const auto unreached = unreached_layers(module_, names);
    // Read before any rewrite: a layer's input becomes a dequantized copy as the graph changes.
    for (const auto& l : layers) {
      const auto& means = l.conv ? conv_channel_means_ : feature_means_;
      const auto mean = means.find(l.node->input(0));
      if (mean != means.end()) input_means_[l.node] = mean->second;
    }
    Built built;
    // Found before any rewrite: the gate's op is consumed into its layer as the graph changes.
    if (onednn_)
      for (Node* n : graph_->nodes())
        if (const auto scale = channel_scale_input(n)) channel_scales_[n] = *scale;
    rewrite_nodes(layers, built);
    built.bias_corrected = bias_corrected_;
    // The report names every layer: those control flow hid, and those forward never reached.
    for (const auto& l : layers)
      if (l.node->owningBlock() != graph_->block()) built.layers.push_back({l.name, "bits", 32, 32, "fp32: " + l.why_fp32});
    for (const auto& [layer, why] : unreached) built.layers.push_back({layer, "bits", 32, 32, "fp32: " + why});
    bypass_shape_dequantizes();
    torch::jit::EliminateDeadCode(graph_);
    for (Node* n : graph_->nodes()) {
      if (n->kind() == kOurQuantize || n->kind() == c10::aten::quantize_per_tensor) ++built.quantize_ops;
      if (n->kind() == kOurDequantize || n->kind() == c10::aten::dequantize) ++built.dequantize_ops;
    }
    if (built.int8_layers > 0) install_forward();
    module_.eval();
    built.module = module_;
    return built;
  }

 private:
  // The top-level nodes in order, each rewritten to its int8 form where it has one.
  void rewrite_nodes(const std::vector<Layer>& layers, Built& built) {
    std::map<Node*, const Layer*> by_node;
    for (const auto& l : layers) by_node[l.node] = &l;
    std::set<Node*> consumed;  // activations fused into an int8 op
    const std::vector<Node*> nodes(graph_->nodes().begin(), graph_->nodes().end());
    for (Node* n : nodes) {
      if (consumed.count(n)) continue;
      if (by_node.count(n)) {
        built.layers.push_back(layer_change(*by_node[n], consumed, built));
      } else if (is_tensor_add(n)) {
        quantize_add(n, consumed, built);
      } else if (channel_scales_.count(n)) {
        quantize_channel_scale(n, channel_scales_[n], built);
      } else if (n->kind() == c10::aten::max_pool2d || n->kind() == c10::aten::adaptive_avg_pool2d ||
                 n->kind() == c10::aten::flatten || is_relu(n)) {
        pass_through(n);
      }
    }
  }

  // A layer's report row, after it is made int8 where it can be.
  LayerChange layer_change(const Layer& l, std::set<Node*>& consumed, Built& built) {
    LayerChange change{l.name, "bits", 32, 32, l.why_fp32.empty() ? "" : "fp32: " + l.why_fp32};
    if (l.why_fp32.empty()) change.note = quantize_layer(l, consumed, built);
    if (change.note.empty()) change.after = 8;
    if (change.after == 8) {
      ++built.int8_layers;
      change.note = std::string(l.conv ? "conv2d" : "linear") + fused_note_ + weight_note_;
    }
    return change;
  }

  // Shape queries read the uint8 tensor, which has the same shape: a dequantize kept only for
  // them (scripted F.adaptive_avg_pool2d asks its input's size) then goes.
  void bypass_shape_dequantizes() {
    for (Node* n : graph_->nodes()) {
      if (n->kind() != kOurDequantize && n->kind() != c10::aten::dequantize) continue;
      const auto uses = n->output()->uses();
      for (const auto& use : uses)
        if (use.user->kind() == c10::aten::size || use.user->kind() == c10::aten::dim)
          use.user->replaceInput(use.offset, n->input(0));
    }
  }

  // The rewritten graph becomes forward.
  void install_forward() {
    replace_forward(module_, graph_);
    // The int8 state holds weight and bias now: the fp32 copies would only inflate the file.
    for (const auto& path : emptied_) {
      auto [owner, attribute] = owner_of(module_, path);
      owner.setattr(attribute, at::empty({0}));
    }
    drop_unread_attributes(module_, *module_.get_method("forward").graph());
  }

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
      if (is_tensor_add(const_cast<Node*>(n))) {
        if (add_runs_int8(const_cast<Node*>(n))) return true;
        continue;
      }
      if (n->kind() == c10::aten::conv2d || n->kind() == c10::aten::_convolution || n->kind() == c10::aten::linear ||
          n->kind() == c10::aten::max_pool2d || n->kind() == c10::aten::adaptive_avg_pool2d ||
          n->kind() == c10::aten::flatten || is_relu(n))
        return true;
    }
    return false;
  }

  // An add runs int8 only where an int8 op reads its result (a CNN's residual add, before the next
  // convolution). A transformer's residual add feeds LayerNorm: quantizing the residual stream,
  // outlier channels and all, to one uint8 scale would cost more precision than it saves time.
  bool add_runs_int8(Node* add) const {
    Node* relu = fused_relu(add);
    return read_by_int8_op(relu ? relu->output() : add->output());
  }

  // Returns "" when the layer became int8, else why it stays fp32.
  std::string quantize_layer(const Layer& l, std::set<Node*>& consumed, Built& built) {
    if (keep_fp32_.count(l.name)) return "fp32: kept by the accuracy budget";
    if (matches_any(l.name, options_.exclude)) return "fp32: excluded";
    if (cuda_) return quantize_layer_for_cuda(l, consumed, built);
    LayerPlan p;
    find_residual_add(l, p);
    p.relu = p.add ? fused_relu(p.add) : (l.relu() ? l.activation : nullptr);
    p.activation = p.add ? p.relu : l.activation;
    p.result = p.add ? (p.relu ? p.relu->output() : p.add->output()) : l.output();
    const auto out_range = range_of(p.result);
    if (!out_range) return "fp32: output not calibrated";
    p.out_range = *out_range;
    WithInsertPoint guard(l.node);
    const auto input = int8_input(l.node->input(0));
    if (!input) return "fp32: input not calibrated";
    p.input = *input;
    p.float_out = onednn_ && !p.add && !read_by_int8_op(p.result);
    const std::string attribute = root_attribute_name(kInt8Layer, l.name);
    const c10::IValue state = onednn_ ? onednn_state(l, p) : torch_state(l);
    module_.register_attribute(attribute, state.type(), state);
    Value* out = insert_int8_op(l, p, graph_->insertGetAttr(self_, attribute));
    if (p.float_out) {
      p.result->replaceAllUsesWith(out);
    } else {
      publish(p.result, out, p.out_range);
    }
    record_fusions(l, p, consumed, built);
    return "";
  }

  // onednn: a residual add that reads only this convolution's output and a value already int8
  // runs inside the convolution (oneDNN's sum post-op), with the ReLU after it.
  void find_residual_add(const Layer& l, LayerPlan& p) {
    if (!onednn_ || !l.conv || l.activation || l.node->output()->uses().size() != 1) return;
    Node* user = l.node->output()->uses()[0].user;
    if (!is_tensor_add(user) || user->owningBlock() != l.node->owningBlock()) return;
    Value* other = user->input(0) == l.node->output() ? user->input(1) : user->input(0);
    if (other != l.node->output() && int8_.count(other)) {
      p.add = user;
      p.residual = int8_[other];
    }
  }

  // The int8 layer's bias: the fp32 one, corrected for the weights' rounding unless
  // bias-correction=off (or the input's mean is unknown).
  c10::optional<at::Tensor> layer_bias(const Layer& l) {
    c10::optional<at::Tensor> bias;
    if (l.bias_path) bias = tensors_[*l.bias_path].detach().clone();
    const auto mean = input_means_.find(l.node);
    if (options_.bias_correction != "on" || mean == input_means_.end()) return bias;
    const auto corrected = corrected_bias(tensors_[l.weight_path], bias, mean->second, l.conv ? l.groups : 1);
    if (!corrected) return bias;
    ++bias_corrected_;
    return *corrected;
  }

  // backend=onednn: the layer's state for joulecut's int8 ops (joulecut/int8.h).
  c10::IValue onednn_state(const Layer& l, const LayerPlan& p) {
#ifdef JOULECUT_HAVE_ONEDNN
    Int8LayerSpec spec;
    spec.kind = l.conv ? "conv2d" : "linear";
    spec.weight = tensors_[l.weight_path];
    if (const auto bias = layer_bias(l)) spec.bias = *bias;
    if (l.conv) {
      spec.stride = l.stride;
      spec.padding = l.padding;
      spec.dilation = l.dilation;
      spec.groups = l.groups;
    }
    spec.input_scale = p.input.range.scale;
    spec.input_zero_point = p.input.range.zero_point;
    spec.output_scale = p.out_range.scale;
    spec.output_zero_point = p.out_range.zero_point;
    spec.relu = p.relu != nullptr;
    if (p.activation && !p.relu) {
      spec.activation = l.activation_kind.name;
      spec.activation_min = l.activation_kind.min;
      spec.activation_max = l.activation_kind.max;
    }
    spec.output_float = p.float_out;
    if (p.add) {
      spec.residual = true;
      spec.residual_scale = double(p.residual->range.scale) / p.out_range.scale;
      spec.residual_zero_point = p.residual->range.zero_point;
    }
    const c10::IValue state = make_int8_layer(spec);
    weight_note_ = format("%s (weight error <= %.2g)", p.float_out ? ", float output" : "", int8_weight_error(state));
    return state;
#else
    (void)l;
    (void)p;
    throw pass_error(StaticQuantizePass::kName, "backend=onednn needs libjoulecut_ops built with oneDNN (libdnnl-dev)");
#endif
  }

  // backend=torch: LibTorch's packed params, the weight quantized per channel.
  c10::IValue torch_state(const Layer& l) {
    const at::Tensor weight = tensors_[l.weight_path];
    const c10::optional<at::Tensor> bias = layer_bias(l);
    const at::Tensor qweight = quantize_weight_per_channel(weight);
    const c10::IValue state =
        l.conv ? prepack_conv2d(qweight, bias, l.stride, l.padding, l.dilation, l.groups) : prepack_linear(qweight, bias);
    weight_note_ = format(" (weight error %.2g)", (qweight.dequantize() - weight).abs().max().item<double>());
    return state;
  }

  // The int8 op of the layer, reading its state `params`.
  Value* insert_int8_op(const Layer& l, const LayerPlan& p, Value* params) {
    if (onednn_)
      return p.add ? graph_->insert(kOurConvAdd, {p.input.value, params, p.residual->value})
                   : graph_->insert(l.conv ? kOurConv : kOurLinear, {p.input.value, params});
    const c10::Symbol op = l.conv ? (l.relu() ? kQuantizedConvRelu : kQuantizedConv)
                                  : (l.relu() ? kQuantizedLinearRelu : kQuantizedLinear);
    return graph_->insert(op, {p.input.value, params, double(p.out_range.scale), std::int64_t(p.out_range.zero_point)});
  }

  // What fused into the int8 layer: its note, the nodes it consumed, and the tensors it replaced.
  void record_fusions(const Layer& l, const LayerPlan& p, std::set<Node*>& consumed, Built& built) {
    const std::string activation_name = p.activation ? (p.relu ? "relu" : l.activation_kind.name) : "";
    fused_note_ = std::string(p.add ? " + residual add" : "") + (p.activation ? " + " + activation_name : "") +
                  (p.add || p.activation ? " fused" : "");
    if (p.activation) {
      consumed.insert(p.activation);
      ++built.fused;
    }
    if (p.add) {
      consumed.insert(p.add);
      ++built.fused_adds;
    }
    emptied_.push_back(l.weight_path);
    if (l.bias_path) emptied_.push_back(*l.bias_path);
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
    Value* bias = dp4a_bias(l);
    Value* out = graph_->insert(kOurLinearDp4a, {l.node->input(0), graph_->insertGetAttr(self_, weight_name),
                                                 graph_->insertGetAttr(self_, scale_name), bias, input_scale,
                                                 l.relu()});
    // The next layer reads `out` now: it keeps the calibrated range of the value it replaces.
    if (const auto out_range = range_of(l.output())) ranges_[out] = *out_range;
    l.output()->replaceAllUsesWith(out);
    const at::Tensor weight = tensors_[l.weight_path].detach().to(at::kFloat);
    const at::Tensor restored = packed.weight.narrow(1, 0, weight.size(1)).to(at::kFloat) * packed.scale.unsqueeze(1);
    weight_note_ = format(", dp4a, input scale %.3g (weight error %.2g)", input_scale,
                          (restored - weight).abs().max().item<double>());
    fused_note_ = l.relu() ? " + relu fused" : "";
    if (l.relu()) {
      consumed.insert(l.activation);
      ++built.fused;
    }
    emptied_.push_back(l.weight_path);
    if (l.bias_path) emptied_.push_back(*l.bias_path);
    return "";
  }

  // The dp4a op's bias argument: a root buffer, or None. Inserted at the current insert point.
  Value* dp4a_bias(const Layer& l) {
    const c10::optional<at::Tensor> bias = layer_bias(l);
    if (!bias) return graph_->insertConstant(c10::IValue());
    const std::string bias_name = root_attribute_name(kDp4aBias, l.name);
    module_.register_buffer(bias_name, bias->to(at::kFloat).contiguous());
    return graph_->insertGetAttr(self_, bias_name);
  }

  void quantize_add(Node* n, std::set<Node*>& consumed, Built& built) {
    Node* relu = fused_relu(n);
    Value* result = relu ? relu->output() : n->output();
    const auto out_range = range_of(result);
    // Only worth it when one side is already int8: otherwise two quantizes buy one int8 add.
    if (!out_range || (!int8_.count(n->input(0)) && !int8_.count(n->input(1))) || !add_runs_int8(n)) return;
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
  std::map<Value*, at::Tensor> conv_channel_means_, feature_means_;  // calibrated means (static_graph.h)
  std::map<Node*, at::Tensor> input_means_;     // each layer's input's, by the layer's node
  int bias_corrected_ = 0;
  std::map<std::string, at::Tensor> tensors_;
  std::map<Value*, Int8Value> int8_;
  std::map<Node*, int> channel_scales_;
  std::vector<std::string> emptied_;
  std::string weight_note_, fused_note_;
};

}  // namespace

Built build_int8(const torch::jit::Module& input, const StaticQuantizeOptions& options,
                 const CalibratedValues& calibration, const std::set<std::string>& keep_fp32) {
  return Rewriter(input, options, calibration, keep_fp32).build();
}

}  // namespace joulecut::static_quant
