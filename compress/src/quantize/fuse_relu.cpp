// fuse-relu: ReLU after a Conv2d/Linear becomes in-place. The numbers are the same (ReLU reads
// each value once and the layer's output has no other reader); the second activation tensor is
// gone, and the int8 backends find the pair to run as one op.
#include <torch/csrc/jit/ir/ir.h>

#include "graph/layer_selection.h"
#include "graph/module_graph.h"
#include "joulecut/error.h"
#include "joulecut/quantize.h"

namespace joulecut {
using namespace graph;

GraphPreparation needed_preparation(const torch::jit::Module& module) {
  auto graph = inlined_forward(module, "quantize", GraphUse::inference);
  GraphPreparation needed;
  needed.batchnorm = !nodes_of_kind(graph->block(), c10::aten::batch_norm).empty();
  for (const auto kind : {c10::aten::conv2d, c10::aten::_convolution, c10::aten::linear})
    for (torch::jit::Node* layer : nodes_of_kind(graph->block(), kind)) {
      torch::jit::Value* out = layer->output();
      if (out->uses().size() == 1 && out->uses()[0].user->kind() == c10::aten::batch_norm)
        out = out->uses()[0].user->output();
      if (out->uses().size() == 1 && out->uses()[0].user->kind() == c10::aten::relu) needed.relu = true;
    }
  return needed;
}

FuseReluPass::FuseReluPass(FuseReluOptions) {}

const OptionTable<FuseReluOptions>& FuseReluPass::options_table() {
  static const OptionTable<FuseReluOptions> table(FuseReluPass::kName, {});
  return table;
}

FuseReluOptions FuseReluPass::parse(const PassOptionMap& map) { return options_table().parse(map); }

PassResult FuseReluPass::run(const torch::jit::Module& input, PassContext&) const {
  torch::jit::Module module = clone_for_transform(input);
  auto graph = inlined_forward(module, name(), GraphUse::inference);
  torch::jit::Value* self = graph->inputs()[0];
  PassReport report;
  report.pass = text();
  std::vector<torch::jit::Node*> relus;
  for (const auto kind : {c10::aten::conv2d, c10::aten::_convolution, c10::aten::linear})
    for (torch::jit::Node* layer : nodes_of_kind(graph->block(), kind)) {
      const auto& uses = layer->output()->uses();
      if (uses.size() != 1 || uses[0].user->kind() != c10::aten::relu) continue;
      relus.push_back(uses[0].user);
      const auto weight = attribute_path(layer->input(1), self);
      const std::string name = weight ? weight->substr(0, weight->rfind('.')) : std::string(layer->kind().toQualString());
      report.layers.push_back({name, "fused", 0, 1, std::string(layer->kind().toQualString()) + " + aten::relu"});
    }
  if (relus.empty())
    throw pass_error(FuseReluPass::kName, "no Conv2d or Linear layer is followed by a ReLU that is its only reader");
  for (torch::jit::Node* relu : relus) {
    torch::jit::WithInsertPoint guard(relu);
    torch::jit::Value* inplace = graph->insert(c10::aten::relu_, {relu->input(0)});
    relu->output()->replaceAllUsesWith(inplace);
    relu->destroy();
  }
  replace_forward(module, graph);
  report.summary = std::to_string(relus.size()) + " layer + ReLU pair(s) fused (ReLU in place)";
  return {module, report};
}

}  // namespace joulecut
