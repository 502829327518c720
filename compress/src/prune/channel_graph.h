#pragma once
// Internal to prune-channel: the channel groups of an inlined forward graph. Every tensor that
// carries channels gets a layout (which "channel spaces" make up its channel dimension); ops
// that tie channels together unite spaces; each united set is a group, pruned as one.
#include <ATen/ATen.h>
#include <torch/csrc/jit/ir/ir.h>
#include <torch/csrc/jit/passes/inliner.h>

#include <algorithm>
#include <map>
#include <numeric>
#include <optional>
#include <set>
#include <string>
#include <unordered_map>
#include <vector>

#include "joulecut/error.h"
#include "joulecut/prune.h"
#include "joulecut/text.h"
#include "graph/module_graph.h"

namespace joulecut::channel_detail {

using torch::jit::Block;
using torch::jit::Graph;
using torch::jit::Node;
using torch::jit::Value;
namespace aten = c10::aten;
namespace prim = c10::prim;

// A run of a tensor's channel dimension that belongs to one channel space.
struct Segment {
  int space;
  std::int64_t channels;  // 0: unknown (the model's input)
};

struct Layout {
  std::vector<Segment> segments;
  bool features = false;    // [N, F] (flattened, or a Linear's output) instead of [N, C, ...]
  std::int64_t factor = 1;  // features per channel when `features`; 0 = not known yet
  std::int64_t channels() const {
    std::int64_t total = 0;
    for (const auto& s : segments) {
      if (s.channels == 0) return 0;
      total += s.channels;
    }
    return total;
  }
};

// Channel c of a space is entries [(offset + c) * factor, (offset + c + 1) * factor) of
// dimension `dim` of parameter `param`.
struct Slice {
  std::string param;
  std::int64_t dim;
  std::int64_t offset;
  std::int64_t factor;
};

struct Space {
  std::int64_t channels = 0;
  std::vector<std::string> producers;         // layer names
  std::vector<std::string> producer_weights;  // their weights (dim 0, offset 0)
  std::vector<Slice> bn_scales;               // BatchNorm weights (gamma)
  std::vector<Slice> slices;
  std::vector<std::string> blocked;
};

// A node argument to rewrite once the new widths are known: the sum of kept channels over
// `segments`, times `factor` (a depthwise convolution's groups, a reshape's feature count).
struct CountPatch {
  Node* node;
  std::size_t input;
  int list_index;  // -1: the input is an int; otherwise the element of a constant int list
  std::vector<Segment> segments;
  std::int64_t factor;
};

inline std::optional<std::int64_t> constant_int(Value* v) {
  const auto iv = torch::jit::toIValue(v);
  if (iv && iv->isInt()) return iv->toInt();
  return std::nullopt;
}

inline bool carries_tensor(const c10::TypePtr& type) {
  if (type->kind() == c10::TypeKind::TensorType) return true;
  for (const auto& contained : type->containedTypes())
    if (carries_tensor(contained)) return true;
  return false;
}

inline std::string strip_suffix(const std::string& name, const std::string& suffix) {
  if (name.size() > suffix.size() && name.compare(name.size() - suffix.size(), suffix.size(), suffix) == 0)
    return name.substr(0, name.size() - suffix.size());
  return name;
}

template <typename T>
inline void append(std::vector<T>& to, const std::vector<T>& from) {
  to.insert(to.end(), from.begin(), from.end());
}

class Analyzer {
 public:
  explicit Analyzer(const torch::jit::Module& module) {
    for (const auto& p : module.named_parameters(/*recurse=*/true)) tensors_[p.name] = p.value;
    for (const auto& b : module.named_buffers(/*recurse=*/true)) tensors_[b.name] = b.value;
    graph_ = graph::inlined_forward(module, ChannelPrunePass::kName);
    self_ = graph_->inputs()[0];
    for (std::size_t i = 1; i < graph_->inputs().size(); ++i) {
      Value* input = graph_->inputs()[i];
      if (input->type()->kind() != c10::TypeKind::TensorType) continue;
      const int s = new_space(0);
      block(s, "the model's input");
      layouts_[input] = Layout{{{s, 0}}};
    }
    visit(graph_->block());
    for (Value* output : graph_->outputs()) block_value(output, "the model's output");
  }

  std::shared_ptr<Graph> graph() const { return graph_; }
  const std::vector<CountPatch>& patches() const { return patches_; }
  const at::Tensor& tensor(const std::string& name) const { return tensors_.at(name); }

  int find(int s) {
    while (parent_[s] != s) s = parent_[s] = parent_[parent_[s]];
    return s;
  }
  // The united spaces, keyed by their root.
  std::map<int, Space> groups() {
    std::map<int, Space> out;
    for (int s = 0; s < int(spaces_.size()); ++s) {
      Space& g = out[find(s)];
      const Space& in = spaces_[s];
      if (in.channels != 0) {
        if (g.channels != 0 && g.channels != in.channels)
          g.blocked.push_back("channel counts disagree (" + std::to_string(g.channels) + " vs " +
                              std::to_string(in.channels) + ")");
        g.channels = in.channels;
      }
      append(g.producers, in.producers);
      append(g.producer_weights, in.producer_weights);
      append(g.blocked, in.blocked);
      append(g.bn_scales, in.bn_scales);
      append(g.slices, in.slices);
    }
    return out;
  }

 private:
  int new_space(std::int64_t channels) {
    spaces_.push_back(Space{});
    spaces_.back().channels = channels;
    parent_.push_back(int(parent_.size()));
    return int(spaces_.size()) - 1;
  }
  void block(int s, const std::string& why) {
    auto& list = spaces_[s].blocked;
    if (std::find(list.begin(), list.end(), why) == list.end()) list.push_back(why);
  }
  void unite(int a, int b) {
    a = find(a);
    b = find(b);
    if (a > b) std::swap(a, b);  // the oldest space is the root: groups list in graph order
    if (a != b) parent_[b] = a;
  }

  std::optional<std::string> parameter(Value* v) const {
    auto path = graph::attribute_path(v, self_);
    if (path && tensors_.count(*path)) return path;
    return std::nullopt;
  }

  // The tensors a value stands for: itself, or the elements of a list/tuple it was built from.
  std::vector<Value*> sources(Value* v) const {
    const auto kind = v->node()->kind();
    if (kind != prim::ListConstruct && kind != prim::TupleConstruct) return {v};
    std::vector<Value*> out;
    for (Value* element : v->node()->inputs()) {
      const auto inner = sources(element);
      out.insert(out.end(), inner.begin(), inner.end());
    }
    return out;
  }
  const Layout* layout(Value* v) const {
    const auto it = layouts_.find(v);
    return it == layouts_.end() ? nullptr : &it->second;
  }
  void block_layout(const Layout& l, const std::string& why) {
    for (const auto& s : l.segments) block(s.space, why);
  }
  void block_value(Value* v, const std::string& why) {
    for (Value* source : sources(v))
      if (const Layout* l = layout(source)) block_layout(*l, why);
  }
  void block_inputs(Node* n, const std::string& why) {
    for (Value* input : n->inputs()) block_value(input, why);
  }
  std::string producers_of(const Layout& l) {
    std::vector<std::string> names;
    for (const auto& s : l.segments)
      for (const auto& p : spaces_[s.space].producers) names.push_back(p);
    return names.empty() ? "the model's input" : join(names, ", ");
  }
  std::string op_reason(Node* n, const std::string& detail = "") {
    std::string where;
    for (Value* input : n->inputs())
      for (Value* source : sources(input))
        if (const Layout* l = layout(source)) {
          where = producers_of(*l);
          break;
        }
    return std::string(n->kind().toQualString()) + (detail.empty() ? "" : " (" + detail + ")") +
           (where.empty() ? "" : " after " + where);
  }

  // Unites two layouts element by element; anything that doesn't line up blocks both.
  void unite_layouts(const Layout& a, const Layout& b, Node* n) {
    bool same = a.segments.size() == b.segments.size() && a.features == b.features;
    for (std::size_t i = 0; same && i < a.segments.size(); ++i)
      same = a.segments[i].channels == b.segments[i].channels;
    if (!same) {
      const std::string why = op_reason(n, "its operands' channels don't line up");
      block_layout(a, why);
      block_layout(b, why);
      return;
    }
    for (std::size_t i = 0; i < a.segments.size(); ++i) unite(a.segments[i].space, b.segments[i].space);
  }

  void add_slices(const Layout& l, const std::string& param, std::int64_t dim, std::int64_t factor, bool bn_scale = false) {
    // Offsets after a segment of unknown width (the model's input) are unknown too.
    if (l.segments.size() > 1 && l.channels() == 0) {
      block_layout(l, "a concatenation with a tensor of unknown width (before " + param + ")");
      return;
    }
    std::int64_t offset = 0;
    for (const auto& s : l.segments) {
      spaces_[s.space].slices.push_back({param, dim, offset, factor});
      if (bn_scale) spaces_[s.space].bn_scales.push_back({param, dim, offset, factor});
      offset += s.channels;
    }
  }

  // A new space of `channels` produced by `layer` (weight `weight`, optional `bias`).
  Layout produce(const std::string& layer, const std::string& weight, const std::optional<std::string>& bias,
                 std::int64_t channels, bool features) {
    const int s = new_space(channels);
    spaces_[s].producers.push_back(layer);
    spaces_[s].producer_weights.push_back(weight);
    spaces_[s].slices.push_back({weight, 0, 0, 1});
    if (bias) spaces_[s].slices.push_back({*bias, 0, 0, 1});
    if (!used_weights_.insert(weight).second) block(s, "weights of " + layer + " are used by two calls");
    Layout out{{{s, channels}}};
    out.features = features;
    return out;
  }

  Layout input_layout(Node* n, Value* x) {
    if (const Layout* l = layout(x)) return *l;
    // A tensor of unknown origin: its own space, never pruned.
    const int s = new_space(0);
    block(s, op_reason(n, "input of unknown origin"));
    return Layout{{{s, 0}}};
  }

  void visit(Block* block) {
    for (Node* n : block->nodes()) visit(n);
  }

  void visit(Node* n) {
    const auto kind = n->kind();
    if (kind == prim::If) return visit_if(n);
    if (kind == prim::Loop) {
      for (Block* b : n->blocks()) {
        visit(b);
        for (Value* v : b->outputs()) block_value(v, "prim::Loop");
      }
      block_inputs(n, "prim::Loop");
      for (Value* o : n->outputs()) block_value(o, "prim::Loop");
      return;
    }
    bool any = false;
    for (Value* input : n->inputs())
      for (Value* source : sources(input)) any = any || layout(source) != nullptr;
    if (!any) return;
    if (kind == prim::ListConstruct || kind == prim::TupleConstruct) return;  // judged where they are used
    if (kind == aten::conv2d || kind == aten::_convolution) return visit_conv(n);
    if (kind == aten::linear) return visit_linear(n);
    if (kind == aten::batch_norm) return visit_batch_norm(n);
    if (kind == aten::add || kind == aten::add_ || kind == aten::sub || kind == aten::sub_ || kind == aten::mul ||
        kind == aten::mul_ || kind == aten::div || kind == aten::div_)
      return visit_elementwise(n);
    if (kind == aten::flatten) return visit_flatten(n);
    if (kind == aten::view || kind == aten::reshape) return visit_reshape(n);
    if (kind == aten::cat) return visit_cat(n);
    if (kind == aten::mean) return visit_mean(n);
    if (kind == aten::softmax || kind == aten::log_softmax) {
      const auto dim = constant_int(n->input(1));
      const Layout l = *layout(n->input(0));
      if (!dim || *dim == 1 || (l.features && *dim == -1)) block_layout(l, op_reason(n, "across channels"));
      layouts_[n->output(0)] = l;
      return;
    }
    static const std::set<c10::Symbol> passthrough = {
        aten::relu,        aten::relu_,        aten::relu6,          aten::hardtanh,   aten::hardtanh_,
        aten::sigmoid,     aten::sigmoid_,     aten::tanh,           aten::tanh_,      aten::gelu,
        aten::silu,        aten::silu_,        aten::hardswish,      aten::hardswish_, aten::hardsigmoid,
        aten::hardsigmoid_, aten::leaky_relu,  aten::leaky_relu_,    aten::elu,        aten::elu_,
        aten::dropout,     aten::dropout_,     aten::feature_dropout, aten::alpha_dropout,
        aten::max_pool2d,  aten::avg_pool2d,   aten::adaptive_avg_pool2d, aten::contiguous,
        aten::clone,       aten::detach};
    if (passthrough.count(kind)) {
      const Layout* l = layout(n->input(0));
      for (std::size_t i = 1; i < n->inputs().size(); ++i) block_value(n->input(i), op_reason(n));
      if (l) layouts_[n->output(0)] = *l;
      return;
    }
    bool produces_tensors = false;
    for (Value* o : n->outputs()) produces_tensors = produces_tensors || carries_tensor(o->type());
    if (!produces_tensors) return;  // size(), dim() and the like read shapes, not channels
    block_inputs(n, op_reason(n));
  }

  void visit_if(Node* n) {
    for (Block* b : n->blocks()) visit(b);
    for (std::size_t i = 0; i < n->outputs().size(); ++i) {
      if (n->output(i)->type()->kind() != c10::TypeKind::TensorType) {
        // Lists and tuples of tensors leaving a branch can't be followed: block what they hold.
        for (Block* b : n->blocks()) block_value(b->outputs()[i], op_reason(n, "a branch returning a list or tuple"));
        continue;
      }
      std::vector<const Layout*> branches;
      for (Block* b : n->blocks()) branches.push_back(layout(b->outputs()[i]));
      const Layout* first = branches.empty() ? nullptr : branches[0];
      bool all = true, none = true;
      for (const Layout* l : branches) (l ? none : all) = false;
      if (none) continue;
      if (!all) {
        for (const Layout* l : branches)
          if (l) block_layout(*l, op_reason(n, "a branch of unknown origin"));
        continue;
      }
      for (const Layout* l : branches) unite_layouts(*first, *l, n);
      layouts_[n->output(i)] = *first;
    }
  }

  void visit_conv(Node* n) {
    const bool plain = n->kind() == aten::conv2d;
    const Layout x = input_layout(n, n->input(0));
    const auto weight = parameter(n->input(1));
    const auto bias = parameter(n->input(2));
    const auto groups = constant_int(n->input(plain ? 6 : 8));
    if (!weight || !groups) {
      block_layout(x, op_reason(n, "weights or groups not read from the module"));
      return block_outputs(n, op_reason(n, "weights or groups not read from the module"));
    }
    const std::string layer = strip_suffix(*weight, ".weight");
    const at::Tensor& w = tensors_.at(*weight);
    if (!plain) {
      const auto transposed = torch::jit::toIValue(n->input(6));
      if (!transposed || !transposed->isBool() || transposed->toBool()) {
        block_layout(x, op_reason(n, "transposed convolution " + layer));
        return block_outputs(n, op_reason(n, "transposed convolution " + layer));
      }
    }
    if (w.dim() != 4 || x.features) {
      block_layout(x, op_reason(n, layer + " is not a 2-D convolution on [N, C, H, W]"));
      return block_outputs(n, op_reason(n, layer + " is not a 2-D convolution on [N, C, H, W]"));
    }
    const std::int64_t out_channels = w.size(0), in_channels = w.size(1) * *groups;
    if (*groups == 1) {
      add_slices(x, *weight, 1, 1);
      layouts_[n->output(0)] = produce(layer, *weight, bias, out_channels, false);
      return;
    }
    if (*groups == in_channels && out_channels == in_channels && x.channels() == in_channels) {
      // Depthwise: each output channel is its input channel; the group count follows the width.
      add_slices(x, *weight, 0, 1);
      if (bias) add_slices(x, *bias, 0, 1);
      if (!used_weights_.insert(*weight).second) block_layout(x, "weights of " + layer + " are used by two calls");
      patches_.push_back({n, std::size_t(plain ? 6 : 8), -1, x.segments, 1});
      layouts_[n->output(0)] = x;
      return;
    }
    const std::string why = op_reason(n, "grouped convolution " + layer + " with groups=" + std::to_string(*groups));
    block_layout(x, why);
    Layout out = produce(layer, *weight, bias, out_channels, false);
    block_layout(out, why);
    layouts_[n->output(0)] = out;
  }

  void block_outputs(Node* n, const std::string& why) {
    for (Value* o : n->outputs()) {
      if (o->type()->kind() != c10::TypeKind::TensorType) continue;
      const int s = new_space(0);
      block(s, why);
      layouts_[o] = Layout{{{s, 0}}};
    }
  }

  void visit_linear(Node* n) {
    Layout x = input_layout(n, n->input(0));
    const auto weight = parameter(n->input(1));
    const auto bias = parameter(n->input(2));
    if (!weight) {
      block_layout(x, op_reason(n, "weights not read from the module"));
      return block_outputs(n, op_reason(n, "weights not read from the module"));
    }
    const std::string layer = strip_suffix(*weight, ".weight");
    const at::Tensor& w = tensors_.at(*weight);
    const std::int64_t channels = x.channels();
    if (!x.features) {
      block_layout(x, op_reason(n, layer + " applied to a tensor that is not flattened"));
    } else if (channels == 0) {
      block_layout(x, op_reason(n, "unknown width"));
    } else {
      const std::int64_t factor = x.factor != 0 ? x.factor : w.size(1) / channels;
      if (factor * channels != w.size(1)) {
        block_layout(x, op_reason(n, layer + " takes " + std::to_string(w.size(1)) + " features from " +
                                         std::to_string(channels) + " channels"));
      } else {
        add_slices(x, *weight, 1, factor);
      }
    }
    layouts_[n->output(0)] = produce(layer, *weight, bias, w.size(0), true);
  }

  void visit_batch_norm(Node* n) {
    const Layout x = input_layout(n, n->input(0));
    for (std::size_t i = 1; i <= 4; ++i) {
      if (n->input(i)->type()->kind() == c10::TypeKind::NoneType) continue;
      const auto p = parameter(n->input(i));
      if (!p) {
        block_layout(x, op_reason(n, "statistics not read from the module"));
        continue;
      }
      add_slices(x, *p, 0, 1, /*bn_scale=*/i == 1);
    }
    layouts_[n->output(0)] = x;
  }

  void visit_elementwise(Node* n) {
    std::vector<Layout> operands;
    for (std::size_t i = 0; i < 2 && i < n->inputs().size(); ++i) {
      Value* v = n->input(i);
      if (v->type()->kind() != c10::TypeKind::TensorType) continue;
      if (const Layout* l = layout(v)) {
        operands.push_back(*l);
      } else if (!(v->node()->kind() == prim::Constant && v->type()->cast<c10::TensorType>() &&
                   torch::jit::toIValue(v)->toTensor().numel() == 1)) {
        // A fixed tensor (an attribute, say) broadcast over channels can't be sliced here.
        block_inputs(n, op_reason(n, "with a tensor joulecut can't slice"));
        operands.clear();
        break;
      }
    }
    if (operands.empty()) return block_outputs(n, op_reason(n));
    if (operands.size() == 2) unite_layouts(operands[0], operands[1], n);
    layouts_[n->output(0)] = operands[0];
  }

  void visit_flatten(Node* n) {
    Layout x = *layout(n->input(0));
    const auto start = constant_int(n->input(1)), end = constant_int(n->input(2));
    if (start == 1 && end == -1) {
      if (!x.features) {
        x.features = true;
        x.factor = 0;
      }
      layouts_[n->output(0)] = x;
      return;
    }
    block_layout(x, op_reason(n, "not flatten(1, -1)"));
    block_outputs(n, op_reason(n));
  }

  void visit_reshape(Node* n) {
    Layout x = *layout(n->input(0));
    Value* sizes = n->input(1);
    std::vector<std::optional<std::int64_t>> dims;
    bool from_list = false;
    if (sizes->node()->kind() == prim::ListConstruct) {
      from_list = true;
      for (Value* d : sizes->node()->inputs()) dims.push_back(constant_int(d));
    } else if (const auto iv = torch::jit::toIValue(sizes); iv && iv->isIntList()) {
      for (auto d : iv->toIntVector()) dims.push_back(d);
    }
    // The first size must be the batch: -1, or x.size(0).
    bool batch_first = false;
    if (from_list) {
      Value* first = sizes->node()->inputs().empty() ? nullptr : sizes->node()->input(0);
      batch_first = first && ((constant_int(first) && *constant_int(first) == -1) ||
                              (first->node()->kind() == aten::size && first->node()->inputs().size() == 2 &&
                               constant_int(first->node()->input(1)) == 0));
    } else {
      batch_first = !dims.empty() && dims[0] && *dims[0] == -1;
    }
    if (dims.size() == 2 && dims[1] && batch_first) {
      const std::int64_t features = *dims[1];
      const std::int64_t channels = x.channels();
      Layout out = x;
      out.features = true;
      if (features == -1) {
        if (!x.features) out.factor = 0;
        layouts_[n->output(0)] = out;
        return;
      }
      const std::int64_t per_channel = x.features ? x.factor : (channels > 0 ? features / channels : 0);
      if (channels > 0 && per_channel > 0 && per_channel * channels == features) {
        out.factor = per_channel;
        if (from_list)
          patches_.push_back({sizes->node(), 1, -1, x.segments, per_channel});
        else
          patches_.push_back({n, 1, 1, x.segments, per_channel});
        layouts_[n->output(0)] = out;
        return;
      }
    }
    block_layout(x, op_reason(n, "a reshape joulecut can't follow"));
    block_outputs(n, op_reason(n));
  }

  void visit_cat(Node* n) {
    Value* list = n->input(0);
    const auto dim = constant_int(n->input(1));
    std::vector<Layout> parts;
    bool ok = list->node()->kind() == prim::ListConstruct && dim.has_value();
    for (Value* element : ok ? list->node()->inputs() : at::ArrayRef<Value*>{}) {
      const Layout* l = layout(element);
      ok = ok && l;
      if (l) parts.push_back(*l);
    }
    for (const auto& p : parts) ok = ok && p.features == parts[0].features && (!p.features || p.factor == 1);
    ok = ok && !parts.empty() && (*dim == 1 || (parts[0].features && *dim == -1));
    if (!ok) {
      block_inputs(n, op_reason(n, "not along the channel dimension"));
      return block_outputs(n, op_reason(n));
    }
    Layout out;
    out.features = parts[0].features;
    for (const auto& p : parts) out.segments.insert(out.segments.end(), p.segments.begin(), p.segments.end());
    layouts_[n->output(0)] = out;
  }

  void visit_mean(Node* n) {
    const Layout x = *layout(n->input(0));
    const auto iv = torch::jit::toIValue(n->input(1));
    bool spatial = !x.features && iv && iv->isIntList();
    if (spatial)
      for (auto d : iv->toIntVector()) spatial = spatial && (d == 2 || d == 3 || d == -1 || d == -2);
    if (!spatial) {
      block_layout(x, op_reason(n, "over the channel dimension"));
      return block_outputs(n, op_reason(n));
    }
    layouts_[n->output(0)] = x;  // keepdim or not, channels stay on dim 1
  }

  std::shared_ptr<Graph> graph_;
  Value* self_ = nullptr;
  std::unordered_map<std::string, at::Tensor> tensors_;
  std::unordered_map<Value*, Layout> layouts_;
  std::vector<Space> spaces_;
  std::vector<int> parent_;
  std::vector<CountPatch> patches_;
  std::set<std::string> used_weights_;
};

}  // namespace joulecut::channel_detail
