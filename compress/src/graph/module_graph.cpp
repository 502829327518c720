#include "graph/module_graph.h"

#include <torch/csrc/jit/ir/ir.h>
#include <torch/csrc/jit/passes/constant_propagation.h>
#include <torch/csrc/jit/passes/dead_code_elimination.h>
#include <torch/csrc/jit/passes/inliner.h>

#include <set>

#include "graph/attention.h"
#include "joulecut/error.h"
#include "joulecut/text.h"

namespace joulecut::graph {

torch::jit::Module clone_for_transform(const torch::jit::Module& input) {
  at::NoGradGuard no_grad;
  torch::jit::Module copy = input.clone();
  // Copies made under no_grad don't require grad; the output must stay trainable like its input.
  const auto originals = input.parameters(/*recurse=*/true);
  const auto copies = copy.parameters(/*recurse=*/true);
  for (auto o = originals.begin(), c = copies.begin(); o != originals.end() && c != copies.end(); ++o, ++c)
    (*c).requires_grad_((*o).requires_grad());
  return copy;
}

std::int64_t count_parameters(const torch::jit::Module& module) {
  std::int64_t n = 0;
  for (const auto& p : module.parameters()) n += p.numel();
  return n;
}

std::optional<std::string> attribute_path(torch::jit::Value* v, torch::jit::Value* self) {
  std::vector<std::string> names;
  while (v->node()->kind() == c10::prim::GetAttr) {
    names.push_back(v->node()->s(c10::attr::name));
    v = v->node()->input(0);
  }
  if (v != self || names.empty()) return std::nullopt;
  return join(std::vector<std::string>(names.rbegin(), names.rend()), ".");
}

std::pair<torch::jit::Module, std::string> owner_of(torch::jit::Module root, const std::string& path) {
  std::size_t start = 0;
  for (std::size_t dot = path.find('.'); dot != std::string::npos; dot = path.find('.', start)) {
    root = root.attr(path.substr(start, dot - start)).toModule();
    start = dot + 1;
  }
  return {root, path.substr(start)};
}

std::vector<torch::jit::Node*> nodes_of_kind(torch::jit::Block* block, c10::Symbol kind) {
  std::vector<torch::jit::Node*> out;
  for (torch::jit::Node* n : block->nodes()) {
    if (n->kind() == kind) out.push_back(n);
    for (torch::jit::Block* inner : n->blocks()) {
      const auto nested = nodes_of_kind(inner, kind);
      out.insert(out.end(), nested.begin(), nested.end());
    }
  }
  return out;
}

void count_reads(torch::jit::Block* block, torch::jit::Value* self, std::map<std::string, int>& reads) {
  for (torch::jit::Node* n : block->nodes()) {
    for (torch::jit::Value* v : n->inputs())
      if (v->node()->kind() == c10::prim::GetAttr)
        if (auto path = attribute_path(v, self)) ++reads[*path];
    for (torch::jit::Block* inner : n->blocks()) count_reads(inner, self, reads);
  }
}

std::vector<torch::jit::Node*> all_nodes(torch::jit::Block* block) {
  std::vector<torch::jit::Node*> out;
  for (torch::jit::Node* n : block->nodes()) {
    out.push_back(n);
    for (torch::jit::Block* inner : n->blocks()) {
      const auto nested = all_nodes(inner);
      out.insert(out.end(), nested.begin(), nested.end());
    }
  }
  return out;
}

int specialize_constant_attributes(const std::shared_ptr<torch::jit::Graph>& graph, const torch::jit::Module& module,
                                   GraphUse use) {
  const bool training_constant = use == GraphUse::inference && !module.is_training();
  const auto nodes = all_nodes(graph->block());
  std::set<std::string> assigned;  // attribute names forward writes: never constants
  for (torch::jit::Node* n : nodes)
    if (n->kind() == c10::prim::SetAttr) assigned.insert(n->s(c10::attr::name));
  torch::jit::Value* self = graph->inputs()[0];
  int replaced = 0;
  for (torch::jit::Node* n : nodes) {
    if (n->kind() != c10::prim::GetAttr) continue;
    const std::string name = n->s(c10::attr::name);
    // `training` decides dropout and BatchNorm behaviour, which fine-tuning needs to keep.
    if ((name == "training" && !training_constant) || assigned.count(name)) continue;
    const auto kind = n->output()->type()->kind();
    if (kind != c10::TypeKind::BoolType && kind != c10::TypeKind::IntType && kind != c10::TypeKind::FloatType) continue;
    const auto path = attribute_path(n->output(), self);
    if (!path) continue;
    auto [owner, attribute] = owner_of(module, *path);
    if (!owner.hasattr(attribute)) continue;
    torch::jit::WithInsertPoint guard(n);
    n->output()->replaceAllUsesWith(graph->insertConstant(owner.attr(attribute)));
    ++replaced;
  }
  // Also folds branches on constants that inlining exposed, e.g. F.hardswish's `if inplace:`.
  torch::jit::ConstantPropagationImmutableTypes(const_cast<std::shared_ptr<torch::jit::Graph>&>(graph));
  // Dropout with training a constant false is the identity: gone, it keeps no op between layers.
  if (training_constant)
    for (torch::jit::Node* n : all_nodes(graph->block())) {
      const std::string kind = n->kind().toQualString();
      if (kind != "aten::dropout" && kind != "aten::dropout_" && kind != "aten::feature_dropout" &&
          kind != "aten::feature_dropout_")
        continue;
      const auto train = torch::jit::toIValue(n->input(2));
      if (train && train->isBool() && !train->toBool()) n->output()->replaceAllUsesWith(n->input(0));
    }
  torch::jit::EliminateDeadCode(graph);
  return replaced;
}

std::shared_ptr<torch::jit::Graph> inlined_forward(const torch::jit::Module& module, const std::string& pass,
                                                   GraphUse use) {
  if (!module.find_method("forward")) throw UserError(pass + ": the model has no forward method");
  auto graph = module.get_method("forward").graph()->copy();
  if (attention::has_attention(module)) attention::canonical_inline(graph, module);
  else torch::jit::Inline(*graph);
  specialize_constant_attributes(graph, module, use);
  return graph;
}

void add_method_returning(torch::jit::Module& module, const std::shared_ptr<torch::jit::Graph>& graph,
                          const std::vector<torch::jit::Value*>& values, const std::string& name) {
  torch::jit::Node* tuple = graph->appendNode(graph->createTuple(values));
  while (!graph->outputs().empty()) graph->eraseOutput(0);
  graph->registerOutput(tuple->output());
  torch::jit::EliminateDeadCode(graph);
  auto unit = module._ivalue()->compilation_unit();
  module.type()->addMethod(unit->create_function(c10::QualifiedName(*module.type()->name(), name), graph));
}

void remove_method(torch::jit::Module& module, const std::string& name) {
  auto type = module.type();
  const auto qualified = type->getMethod(name).qualname();
  type->unsafeRemoveMethod(name);
  module._ivalue()->compilation_unit()->unsafeRemoveMethod(qualified);
}

void replace_forward(torch::jit::Module& module, const std::shared_ptr<torch::jit::Graph>& graph) {
  graph->lint();
  auto type = module.type();
  auto unit = module._ivalue()->compilation_unit();
  const auto name = type->getMethod("forward").qualname();
  type->unsafeRemoveMethod("forward");
  unit->unsafeRemoveMethod(name);
  type->addMethod(unit->create_function(name, graph));
}

}  // namespace joulecut::graph
