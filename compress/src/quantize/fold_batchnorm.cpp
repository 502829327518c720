// fold-batchnorm: BatchNorm after a Conv2d or Linear becomes part of that layer's weight and
// bias. Works on the inlined forward graph, so it needs no knowledge of the model's classes.
#include <ATen/ATen.h>
#include <torch/csrc/jit/ir/ir.h>

#include <map>

#include "graph/layer_selection.h"
#include "graph/module_graph.h"
#include "graph/root_attributes.h"
#include "joulecut/error.h"
#include "joulecut/quantize.h"

namespace joulecut {
using namespace graph;
namespace {

using torch::jit::Node;
using torch::jit::Value;

// True when every use of `v` other than by `user` only reads its shape (size(), dim()), which
// folding does not change: Python's BatchNorm checks the input's size before normalizing.
bool only_shape_queries_besides(Value* v, Node* user) {
  for (const auto& use : v->uses()) {
    if (use.user == user) continue;
    const auto kind = use.user->kind();
    if (kind != c10::aten::size && kind != c10::aten::dim && kind != c10::aten::len)
      return false;
  }
  return true;
}

}  // namespace

FoldBatchNormPass::FoldBatchNormPass(FoldBatchNormOptions) {}

const OptionTable<FoldBatchNormOptions>& FoldBatchNormPass::options_table() {
  static const OptionTable<FoldBatchNormOptions> table(FoldBatchNormPass::kName, {});
  return table;
}

FoldBatchNormOptions FoldBatchNormPass::parse(const PassOptionMap& map) { return options_table().parse(map); }

PassResult FoldBatchNormPass::run(const torch::jit::Module& input, PassContext&) const {
  torch::jit::Module module = clone_for_transform(input);
  auto graph = inlined_forward(module, name(), GraphUse::inference);
  Value* self = graph->inputs()[0];
  std::map<std::string, at::Tensor> tensors;
  for (const auto& p : module.named_parameters(true)) tensors[p.name] = p.value;
  for (const auto& b : module.named_buffers(true)) tensors[b.name] = b.value;
  // How many layer calls read each weight: a shared weight can't absorb one call's BatchNorm.
  std::map<std::string, int> weight_uses;
  count_reads(graph->block(), self, weight_uses);

  const auto norms = nodes_of_kind(graph->block(), c10::aten::batch_norm);
  if (norms.empty())
    throw pass_error(FoldBatchNormPass::kName, "the model has no BatchNorm (aten::batch_norm) to fold");
  PassReport report;
  report.pass = text();
  at::NoGradGuard no_grad;
  int folded = 0;
  for (Node* bn : norms) {
    LayerChange change{"", "folded", 0, 0, ""};
    const auto gamma = attribute_path(bn->input(1), self), beta = attribute_path(bn->input(2), self);
    const auto mean = attribute_path(bn->input(3), self), var = attribute_path(bn->input(4), self);
    const auto eps = torch::jit::toIValue(bn->input(7));
    change.layer = mean ? mean->substr(0, mean->rfind('.')) : "batch_norm";
    Node* producer = bn->input(0)->node();
    const auto kind = producer->kind();
    const bool conv = kind == c10::aten::conv2d || kind == c10::aten::_convolution;
    std::optional<std::string> weight;
    if (conv) weight = attribute_path(producer->input(1), self);
    // None, or an Optional[Tensor] attribute holding None (Python's Conv2d(bias=False)).
    const auto is_none = [&](Value* v) {
      if (v->type()->kind() == c10::TypeKind::NoneType) return true;
      const auto path = attribute_path(v, self);
      if (!path || tensors.count(*path)) return false;
      auto [owner, attribute] = owner_of(module, *path);
      return owner.hasattr(attribute) && owner.attr(attribute).isNone();
    };
    const auto known = [&](Value* v, const std::optional<std::string>& path) {
      return is_none(v) || (path && tensors.count(*path) && weight_uses[*path] == 1);
    };
    const auto bias_path = conv ? attribute_path(producer->input(2), self) : std::nullopt;
    if (!conv) {
      // After a Linear, BatchNorm1d normalises dim 1, which is the Linear's output only for 2-D
      // input; ranks are not known here, so it stays.
      change.note = std::string("kept: follows ") + kind.toQualString() + ", not a Conv2d";
    } else if (kind == c10::aten::_convolution && !(torch::jit::toIValue(producer->input(6)) &&
                                                    !torch::jit::toIValue(producer->input(6))->toBool())) {
      change.note = "kept: follows a transposed convolution";
    } else if (!only_shape_queries_besides(bn->input(0), bn)) {
      change.note = "kept: the layer's output is also used elsewhere";
    } else if (!weight || !tensors.count(*weight) || weight_uses[*weight] != 1) {
      change.note = "kept: the layer's weight is not its own module parameter";
    } else if (!mean || !var || !tensors.count(*mean) || !tensors.count(*var) || !eps || !eps->isDouble() ||
               !known(bn->input(1), gamma) || !known(bn->input(2), beta)) {
      change.note = "kept: statistics or scales not read from the module";
    } else if (!known(producer->input(2), bias_path)) {
      change.note = "kept: the layer's bias is not its own module parameter";
    } else if (tensors[*mean].numel() != tensors[*weight].size(0)) {
      change.note = "kept: its channels are not the layer's outputs";
    } else {
      const at::Tensor w = tensors[*weight];
      const std::int64_t channels = w.size(0);
      const at::Tensor inv_std = (tensors[*var] + eps->toDouble()).rsqrt();
      const at::Tensor g = gamma && tensors.count(*gamma) ? tensors[*gamma] : at::ones({channels});
      const at::Tensor b = beta && tensors.count(*beta) ? tensors[*beta] : at::zeros({channels});
      const at::Tensor old_bias = bias_path && tensors.count(*bias_path) ? tensors[*bias_path] : at::zeros({channels});
      const at::Tensor scale = g * inv_std;
      std::vector<std::int64_t> shape(std::size_t(w.dim()), 1);
      shape[0] = channels;
      w.mul_(scale.view(shape));
      const at::Tensor new_bias = ((old_bias - tensors[*mean]) * scale + b).detach();
      if (bias_path && tensors.count(*bias_path)) {
        tensors[*bias_path].copy_(new_bias);
      } else {
        // The layer had no bias; its class may be shared with layers that keep none, so the
        // folded bias lives on the root module.
        const std::string layer = weight->substr(0, weight->rfind('.'));
        module.register_parameter(root_attribute_name(kFoldedBias, layer), new_bias.requires_grad_(w.requires_grad()), false);
        torch::jit::WithInsertPoint guard(producer);
        producer->replaceInput(2, graph->insertGetAttr(self, root_attribute_name(kFoldedBias, layer)));
      }
      bn->output()->replaceAllUsesWith(bn->input(0));
      bn->destroy();
      change.layer = weight->substr(0, weight->rfind('.')) + " <- " + change.layer;
      change.after = 1;
      change.note = "folded";
      ++folded;
    }
    report.layers.push_back(change);
  }
  if (folded > 0) replace_forward(module, graph);
  report.summary = std::to_string(folded) + " of " + std::to_string(norms.size()) + " BatchNorm(s) folded into the layer before";
  report.notes.push_back("for inference: folded layers no longer use batch statistics in train mode");
  module.eval();
  return {module, report};
}

}  // namespace joulecut
