// quantize-dynamic: Linear layers to quantized::linear_dynamic with per-channel int8 weights.
#include <ATen/ATen.h>
#include <ATen/core/dispatch/Dispatcher.h>
#include <torch/csrc/jit/ir/ir.h>

#include <cstdio>
#include <map>

#include "graph/layer_selection.h"
#include "graph/module_graph.h"
#include "graph/root_attributes.h"
#include "graph/quantized_engine.h"
#include "joulecut/error.h"
#include "joulecut/observers.h"
#include "joulecut/quantize.h"
#include "joulecut/text.h"

namespace joulecut {
using namespace graph;
using namespace graph;
using torch::jit::Node;
using torch::jit::Value;

DynamicQuantizePass::DynamicQuantizePass(DynamicQuantizeOptions options) : options_(std::move(options)) {}

const OptionTable<DynamicQuantizeOptions>& DynamicQuantizePass::options_table() {
  using O = DynamicQuantizeOptions;
  static const OptionTable<O> table(DynamicQuantizePass::kName, {option("exclude", "keep layers matching these '|'-separated globs in fp32", &O::exclude)});
  return table;
}

DynamicQuantizeOptions DynamicQuantizePass::parse(const PassOptionMap& map) { return options_table().parse(map); }

std::string DynamicQuantizePass::options_text() const { return options_table().print(options_); }

PassResult DynamicQuantizePass::run(const torch::jit::Module& input, PassContext&) const {
  torch::jit::Module module = clone_for_transform(input);
  auto graph = inlined_forward(module, name(), GraphUse::inference);
  Value* self = graph->inputs()[0];
  std::map<std::string, at::Tensor> tensors;
  for (const auto& p : module.named_parameters(true)) tensors[p.name] = p.value;
  std::vector<std::pair<Node*, std::string>> candidates;
  for (Node* n : nodes_of_kind(graph->block(), c10::aten::linear)) {
    const auto weight = attribute_path(n->input(1), self);
    if (weight && tensors.count(*weight) && tensors[*weight].dim() == 2 && tensors[*weight].scalar_type() == at::kFloat)
      candidates.emplace_back(n, *weight);
  }
  if (candidates.empty())
    throw pass_error(DynamicQuantizePass::kName,
                     "the model has no float32 Linear layer (aten::linear) with its weight in the module");
  std::vector<std::string> names;
  for (const auto& c : candidates) names.push_back(c.second.substr(0, c.second.rfind('.')));
  check_patterns({"", options_.exclude, false}, names, name());
  const std::string engine = choose_engine(name());

  PassReport report;
  report.pass = text();
  at::NoGradGuard no_grad;
  int quantized = 0;
  std::map<std::string, int> uses;
  count_reads(graph->block(), self, uses);  // every read: a tied weight or bias must stay fp32
  for (std::size_t i = 0; i < candidates.size(); ++i) {
    Node* node = candidates[i].first;
    const std::string& weight_path = candidates[i].second;
    const std::string& layer = names[i];
    LayerChange change{layer, "bits", 32, 32, ""};
    const auto bias_path = attribute_path(node->input(2), self);
    const bool no_bias = node->input(2)->type()->kind() == c10::TypeKind::NoneType;
    if (matches_any(layer, options_.exclude)) {
      change.note = "fp32: excluded";
    } else if (uses[weight_path] > 1 || (bias_path && uses[*bias_path] > 1)) {
      change.note = "fp32: weight or bias shared by several readers";
    } else if (!no_bias && !(bias_path && tensors.count(*bias_path))) {
      change.note = "fp32: bias not read from the module";
    } else {
      const at::Tensor w = tensors[weight_path].contiguous();
      const at::Tensor qweight = quantize_weight_per_channel(w);
      c10::optional<at::Tensor> bias;
      if (!no_bias) bias = tensors[*bias_path].detach().clone();
      const c10::IValue packed = prepack_linear(qweight, bias);
      // Error of the int8 weights against fp32, so the report says what each layer gave up.
      const double error = (qweight.dequantize() - w).abs().max().item<double>();
      module.register_attribute(root_attribute_name(kPackedLinear, layer), packed.type(), packed);
      torch::jit::WithInsertPoint guard(node);
      Value* params = graph->insertGetAttr(self, root_attribute_name(kPackedLinear, layer));
      Value* out = graph->insert(c10::Symbol::fromQualString("quantized::linear_dynamic"), {node->input(0), params});
      node->output()->replaceAllUsesWith(out);
      node->destroy();
      // The packed parameters hold weight and bias now; the fp32 copies would only inflate the file.
      for (const auto& path : {std::optional<std::string>(weight_path), no_bias ? std::nullopt : bias_path}) {
        if (!path) continue;
        auto [owner, attribute] = owner_of(module, *path);
        owner.setattr(attribute, at::empty({0}));
      }
      change.after = 8;
      change.note = format("int8 per-channel weights (max error %.2g), activations int8 per batch", error);
      ++quantized;
    }
    report.layers.push_back(change);
  }
  if (quantized > 0) replace_forward(module, graph);
  report.summary = format("%d of %zu Linear layer(s) run on quantized::linear_dynamic (%s engine)", quantized,
                          candidates.size(), engine.c_str());
  report.notes.push_back("portable: loads in stock LibTorch and Python PyTorch; convolutions stay fp32");
  module.eval();
  return {module, report};
}

}  // namespace joulecut
