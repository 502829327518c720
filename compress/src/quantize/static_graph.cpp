#include "quantize/static_graph.h"

#include <ATen/ATen.h>
#include <torch/csrc/jit/passes/dead_code_elimination.h>

#include <cmath>
#include <cstdio>
#include <optional>

#include "graph/root_attributes.h"
#include "joulecut/error.h"
#include "joulecut/model.h"
#include "joulecut/progress.h"
#include "graph/layer_selection.h"
#include "graph/module_graph.h"

namespace joulecut::static_quant {
using namespace graph;
using torch::jit::WithInsertPoint;

bool is_relu(const Node* n) { return n->kind() == c10::aten::relu || n->kind() == c10::aten::relu_; }

// The ReLU that is a node's only reader, if any: it runs fused into the node.
Node* fused_relu(Node* n) {
  const auto& uses = n->output()->uses();
  if (uses.size() == 1 && is_relu(uses[0].user) && uses[0].user->owningBlock() == n->owningBlock()) return uses[0].user;
  return nullptr;
}

std::optional<Activation> fusable_activation(const Node* n, bool any) {
  if (is_relu(n)) return Activation{"relu"};
  if (!any) return std::nullopt;
  const auto kind = n->kind();
  if (kind == c10::aten::hardtanh || kind == c10::aten::hardtanh_) {
    const auto low = torch::jit::toIValue(n->input(1)), high = torch::jit::toIValue(n->input(2));
    if (!low || !high || !(low->isDouble() || low->isInt()) || !(high->isDouble() || high->isInt())) return std::nullopt;
    const double lo = low->isDouble() ? low->toDouble() : double(low->toInt());
    const double hi = high->isDouble() ? high->toDouble() : double(high->toInt());
    if (!(lo < hi)) return std::nullopt;
    return Activation{"hardtanh", lo, hi};
  }
  if (kind == c10::aten::relu6 || kind == c10::Symbol::fromQualString("aten::relu6_")) return Activation{"hardtanh", 0, 6};
  if (kind == c10::aten::hardswish || kind == c10::aten::hardswish_) return Activation{"hardswish"};
  if (kind == c10::aten::hardsigmoid || kind == c10::aten::hardsigmoid_) return Activation{"hardsigmoid"};
  if (kind == c10::aten::silu || kind == c10::aten::silu_) return Activation{"silu"};
  if (kind == c10::aten::sigmoid || kind == c10::aten::sigmoid_) return Activation{"sigmoid"};
  if (kind == c10::aten::gelu) {
    if (n->inputs().size() == 1) return Activation{"gelu"};  // LibTorch before 1.12: erf only
    const auto approximate = torch::jit::toIValue(n->input(1));
    if (!approximate || !approximate->isString()) return std::nullopt;
    if (approximate->toStringRef() == "none") return Activation{"gelu"};
    if (approximate->toStringRef() == "tanh") return Activation{"gelu_tanh"};
  }
  return std::nullopt;
}

// A constant int list, written as a constant or as a list of constants (inlined code has both).
std::optional<std::vector<std::int64_t>> int_list(Value* v) {
  if (v->node()->kind() == c10::prim::ListConstruct) {
    std::vector<std::int64_t> out;
    for (Value* item : v->node()->inputs()) {
      const auto constant = torch::jit::toIValue(item);
      if (!constant || !constant->isInt()) return std::nullopt;
      out.push_back(constant->toInt());
    }
    return out;
  }
  const auto constant = torch::jit::toIValue(v);
  if (!constant || !constant->isIntList()) return std::nullopt;
  return constant->toIntVector();
}

// a + b with alpha 1 on two tensors (the residual add). In place (`out += identity`, as
// torchvision writes it) counts too when nothing else reads `a`: then it is the same value.
bool is_tensor_add(Node* n) {
  const bool in_place = n->kind() == c10::aten::add_ && n->input(0)->uses().size() == 1;
  if ((n->kind() != c10::aten::add && !in_place) || n->inputs().size() != 3) return false;
  if (!n->input(0)->type()->cast<c10::TensorType>() || !n->input(1)->type()->cast<c10::TensorType>()) return false;
  const auto alpha = torch::jit::toIValue(n->input(2));
  return alpha && ((alpha->isInt() && alpha->toInt() == 1) || (alpha->isDouble() && alpha->toDouble() == 1.0));
}


std::optional<int> channel_scale_input(Node* n) {
  if ((n->kind() != c10::aten::mul && n->kind() != c10::aten::mul_) || n->inputs().size() != 2) return std::nullopt;
  if (!n->input(0)->type()->cast<c10::TensorType>() || !n->input(1)->type()->cast<c10::TensorType>()) return std::nullopt;
  const auto gate = [](Value* v) {
    const auto kind = v->node()->kind();
    return kind == c10::aten::sigmoid || kind == c10::aten::sigmoid_ || kind == c10::aten::hardsigmoid ||
           kind == c10::aten::hardsigmoid_;
  };
  // In place (`x.mul_(scale)`) only when nothing else reads x: then it is the same value.
  if (n->kind() == c10::aten::mul_ && n->input(0)->uses().size() != 1) return std::nullopt;
  if (gate(n->input(1)) && !gate(n->input(0))) return 1;
  if (gate(n->input(0)) && !gate(n->input(1))) return 0;
  return std::nullopt;
}

// Numbers the top-level values of a graph: its inputs, then each node's outputs in order.
std::vector<Value*> numbered_values(Graph& graph) {
  std::vector<Value*> values(graph.inputs().begin(), graph.inputs().end());
  for (Node* n : graph.nodes())
    for (Value* v : n->outputs()) values.push_back(v);
  return values;
}

// The layers of the inlined forward, in order, each with its geometry or the reason it stays fp32.
namespace {

// Why a node nested in a block cannot be rewritten: the control flow around it.
std::string nesting_reason(const Node* n) {
  const Node* outer = n->owningBlock()->owningNode();
  if (outer && outer->kind() == c10::prim::Loop) return "inside a loop (prim::Loop): runs fp32";
  return "inside a branch (prim::If) whose condition is not a module constant: runs fp32";
}

}  // namespace

std::vector<Layer> find_layers(Graph& graph, const torch::jit::Module& module, const std::string& pass,
                               bool any_activation) {
  Value* self = graph.inputs()[0];
  std::map<std::string, at::Tensor> tensors;
  for (const auto& p : module.named_parameters(true)) tensors[p.name] = p.value;
  std::map<std::string, int> reads;
  count_reads(graph.block(), self, reads);
  std::vector<Layer> layers;
  for (Node* n : all_nodes(graph.block())) {
    // aten::_convolution is what tracing records for Conv2d.
    const bool traced = n->kind() == c10::aten::_convolution;
    const bool conv = n->kind() == c10::aten::conv2d || traced;
    if (!conv && n->kind() != c10::aten::linear) continue;
    Layer l;
    l.node = n;
    l.conv = conv;
    const auto weight = attribute_path(n->input(1), self);
    if (!weight || !tensors.count(*weight)) continue;  // weights computed in the graph: not a layer
    l.weight_path = *weight;
    l.name = weight->substr(0, weight->rfind('.'));
    const bool no_bias = n->input(2)->type()->kind() == c10::TypeKind::NoneType;
    if (!no_bias) l.bias_path = attribute_path(n->input(2), self);
    const auto& uses = n->output()->uses();
    if (uses.size() == 1 && uses[0].user->owningBlock() == n->owningBlock())
      if (const auto activation = fusable_activation(uses[0].user, any_activation)) {
        l.activation = uses[0].user;
        l.activation_kind = *activation;
      }
    if (n->owningBlock() != graph.block()) l.why_fp32 = nesting_reason(n);
    else if (tensors[*weight].scalar_type() != at::kFloat) l.why_fp32 = "weight is not float32";
    else if (reads[*weight] > 1 || (l.bias_path && reads[*l.bias_path] > 1)) l.why_fp32 = "weight or bias shared by several readers";
    else if (!no_bias && !(l.bias_path && tensors.count(*l.bias_path))) l.why_fp32 = "bias not read from the module";
    if (conv && l.why_fp32.empty()) {
      const auto stride = int_list(n->input(3)), padding = int_list(n->input(4)), dilation = int_list(n->input(5));
      const auto groups = torch::jit::toIValue(n->input(traced ? 8 : 6));
      const auto transposed = traced ? torch::jit::toIValue(n->input(6)) : c10::optional<c10::IValue>(false);
      if (!transposed || !transposed->isBool() || transposed->toBool()) {
        l.why_fp32 = "transposed convolution";
      } else if (!stride || !padding || !dilation || !groups || !groups->isInt() || stride->size() != 2 || padding->size() != 2 ||
          dilation->size() != 2) {
        l.why_fp32 = "stride, padding (e.g. 'same') or dilation not constant 2-D lists";
      } else {
        l.stride = *stride;
        l.padding = *padding;
        l.dilation = *dilation;
        l.groups = groups->toInt();
      }
    }
    layers.push_back(l);
  }
  if (layers.empty())
    throw UserError(pass + ": the model has no Conv2d or Linear layer (aten::conv2d, aten::linear) with its weight in the "
                           "module, in the top level of forward");
  return layers;
}

std::vector<std::pair<std::string, std::string>> unreached_layers(const torch::jit::Module& module,
                                                                  const std::vector<std::string>& reached) {
  const std::set<std::string> known(reached.begin(), reached.end());
  std::vector<std::pair<std::string, std::string>> out;
  for (const auto& child : module.named_modules()) {
    if (child.name.empty() || known.count(child.name)) continue;
    const std::string type = child.value.type()->name() ? child.value.type()->name()->name() : "";
    const bool layer = type == "Conv2d" || type == "Linear" || type == "NonDynamicallyQuantizableLinear";
    // nn.MultiheadAttention's packed Q, K, V projection is a parameter of the attention module.
    const bool packed_projection = type == "MultiheadAttention" && child.value.hasattr("in_proj_weight") &&
                                   child.value.attr("in_proj_weight").isTensor();
    if (layer || packed_projection)
      out.push_back({child.name + (packed_projection ? " (in_proj)" : ""),
                     "not reached: forward's graph never reads its weight where the pass can follow (a method other "
                     "than forward, a fused kernel such as aten::_native_multi_head_attention, or a computed weight)"});
  }
  return out;
}

// The values calibration observes: each layer's input and (fused) output, and the inputs and
// (fused) output of each residual add.
std::set<std::size_t> values_to_observe(Graph& graph, const std::vector<Layer>& layers) {
  const auto values = numbered_values(graph);
  std::map<Value*, std::size_t> index;
  for (std::size_t i = 0; i < values.size(); ++i) index[values[i]] = i;
  std::set<std::size_t> observed;
  auto add = [&](Value* v) {
    if (index.count(v)) observed.insert(index[v]);
  };
  for (const auto& l : layers) {
    add(l.node->input(0));
    add(l.output());
  }
  for (Node* n : graph.nodes())
    if (channel_scale_input(n)) add(n->output());
  for (Node* n : graph.nodes())
    if (is_tensor_add(n)) {
      add(n->input(0));
      add(n->input(1));
      Node* relu = fused_relu(n);
      add(relu ? relu->output() : n->output());
    }
  return observed;
}

MeansToTake layer_inputs_to_average(Graph& graph, const std::vector<Layer>& layers) {
  const auto values = numbered_values(graph);
  std::map<Value*, std::size_t> index;
  for (std::size_t i = 0; i < values.size(); ++i) index[values[i]] = i;
  MeansToTake means;
  for (const auto& l : layers) {
    const auto it = index.find(l.node->input(0));
    if (it != index.end()) (l.conv ? means.conv_inputs : means.linear_inputs).insert(it->second);
  }
  return means;
}

// A clone of `input` with a method "joulecut_probe" returning, as a tuple, a copy of each listed
// value (numbered as numbered_values does) taken where it is made. `order` receives the indices
// the tuple holds, in order (values that are not tensors are left out).
torch::jit::Module probe_module(const torch::jit::Module& input, const std::set<std::size_t>& wanted,
                                std::vector<std::size_t>& order) {
  torch::jit::Module module = clone_for_transform(input);
  module.eval();
  auto graph = inlined_forward(module, StaticQuantizePass::kName, GraphUse::inference);
  const auto values = numbered_values(*graph);
  std::vector<Value*> outputs;
  for (std::size_t i : wanted) {
    Value* v = values[i];
    if (!v->type()->cast<c10::TensorType>()) continue;
    // A copy taken where the value is made: in-place ops later in forward (`out += identity`,
    // ReLU(inplace=True)) would otherwise change what is returned at the end.
    Node* at = v->node()->kind() == c10::prim::Param ? graph->block()->nodes().front() : v->node()->next();
    WithInsertPoint guard(at);
    outputs.push_back(graph->insert(c10::aten::clone, {v}));
    order.push_back(i);
  }
  add_method_returning(module, graph, outputs, "joulecut_probe");
  return module;
}

std::map<std::size_t, at::Tensor> capture_values(const torch::jit::Module& input, const std::set<std::size_t>& wanted,
                                                 const std::vector<c10::IValue>& inputs) {
  std::vector<std::size_t> order;
  torch::jit::Module module = probe_module(input, wanted, order);
  at::NoGradGuard no_grad;
  const auto elements = module.get_method("joulecut_probe")(inputs).toTuple()->elements();
  std::map<std::size_t, at::Tensor> out;
  for (std::size_t k = 0; k < elements.size(); ++k) out[order[k]] = elements[k].toTensor();
  return out;
}

namespace {

// A value's running mean along one dim over the calibration batches.
struct MeanAlong {
  at::Tensor sum;  // double
  std::int64_t count = 0;
  bool consistent = true;  // the same size along the dim in every batch
  void add(const at::Tensor& t, std::int64_t dim) {
    if (!consistent) return;
    std::vector<std::int64_t> other_dims;
    for (std::int64_t d = 0; d < t.dim(); ++d)
      if (d != dim) other_dims.push_back(d);
    const at::Tensor batch_sum = at::sum(t, other_dims, false, at::kDouble);
    if (sum.defined() && sum.sizes() != batch_sum.sizes()) {
      consistent = false;
      return;
    }
    sum = sum.defined() ? sum + batch_sum : batch_sum;
    count += t.numel() / t.size(dim);
  }
  std::optional<at::Tensor> mean() const {
    if (!consistent || count == 0) return std::nullopt;
    return (sum / double(count)).to(at::kFloat);
  }
};

// The means a value's readers need: along dim 1 of a convolution's 4-D input, along the last dim
// of a Linear's input (also a channels-last [N, H, W, C] one).
struct ChannelMean {
  bool conv_input = false, linear_input = false;
  MeanAlong conv_channels, features;
  void add(const at::Tensor& t) {
    if (conv_input && t.dim() == 4) conv_channels.add(t, 1);
    if (linear_input && t.dim() >= 2) features.add(t, t.dim() - 1);
  }
};

}  // namespace

// Runs the calibration images through a copy of the forward that returns every observed value.
CalibratedValues calibrate_values(const torch::jit::Module& input, const std::set<std::size_t>& observed,
                                  const MeansToTake& means_to_take, const TensorDataset& data,
                                  const StaticQuantizeOptions& options, bool progress) {
  std::vector<std::size_t> order;
  torch::jit::Module module = probe_module(input, observed, order);

  std::vector<std::unique_ptr<Observer>> observers;
  for (std::size_t k = 0; k < order.size(); ++k) observers.push_back(make_observer(options.observer, options.percentile));
  const std::int64_t samples = std::min<std::int64_t>(options.samples, data.size());
  const std::int64_t batch = 100;
  ProgressBar bar("calibration (" + options.observer + ")", samples, progress);
  std::vector<ChannelMean> means(order.size());
  for (std::size_t k = 0; k < order.size(); ++k) {
    means[k].conv_input = means_to_take.conv_inputs.count(order[k]) > 0;
    means[k].linear_input = means_to_take.linear_inputs.count(order[k]) > 0;
  }
  at::NoGradGuard no_grad;
  auto method = module.get_method("joulecut_probe");
  for (std::int64_t start = 0; start < samples; start += batch) {
    const std::int64_t count = std::min(batch, samples - start);
    c10::IValue result;
    try {
      result = method(data.inputs(start, count));
    } catch (const std::exception& e) {
      throw pass_error(StaticQuantizePass::kName,
                       "the model does not run on the calibration images (" + torch_error_summary(e) + ")");
    }
    const auto elements = result.toTuple()->elements();
    for (std::size_t k = 0; k < elements.size(); ++k) {
      const at::Tensor t = elements[k].toTensor().detach().to(at::kFloat).contiguous();
      observers[k]->observe(t.data_ptr<float>(), std::size_t(t.numel()));
      means[k].add(t);
    }
    bar.update(start + count, std::to_string(start + count) + " images");
  }
  bar.finish(std::to_string(samples) + " images, " + std::to_string(order.size()) + " activations");
  CalibratedValues calibration;
  for (std::size_t k = 0; k < order.size(); ++k) {
    calibration.ranges[order[k]] = observers[k]->range();
    if (const auto mean = means[k].conv_channels.mean()) calibration.conv_channel_means[order[k]] = *mean;
    if (const auto mean = means[k].features.mean()) calibration.feature_means[order[k]] = *mean;
  }
  return calibration;
}

// Drops the root's submodules and tensors that forward no longer reads (the fp32 layers the
// int8 state replaced, folded BatchNorms): each costs a few records, class code and debug info
// in the file, a good part of a small model's size. Only when forward is the only method.
void drop_unread_attributes(torch::jit::Module& module, Graph& forward) {
  if (module.type()->methods().size() != 1) return;
  std::set<std::string> read;
  std::vector<torch::jit::Block*> blocks{forward.block()};
  while (!blocks.empty()) {
    torch::jit::Block* block = blocks.back();
    blocks.pop_back();
    for (Node* n : block->nodes()) {
      if (n->kind() == c10::prim::GetAttr && n->input(0) == forward.inputs()[0]) read.insert(n->s(c10::attr::name));
      for (torch::jit::Block* inner : n->blocks()) blocks.push_back(inner);
    }
  }
  const auto type = module.type();
  std::vector<std::string> unread;
  for (std::size_t i = 0; i < type->numAttributes(); ++i) {
    const std::string name = type->getAttributeName(i);
    const auto& attribute = type->getAttribute(i);
    if (!read.count(name) && (attribute->is_module() || attribute->cast<c10::TensorType>())) unread.push_back(name);
  }
  for (const auto& name : unread) {
    module._ivalue()->unsafeRemoveAttr(name);
    type->unsafeRemoveAttribute(name);
  }
}

}  // namespace joulecut::static_quant
