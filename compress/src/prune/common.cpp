#include "prune/common.h"

#include "analysis/attention.h"

#include <fnmatch.h>
#include <torch/csrc/jit/ir/ir.h>
#include <torch/csrc/jit/passes/constant_propagation.h>
#include <torch/csrc/jit/passes/dead_code_elimination.h>
#include <torch/csrc/jit/passes/inliner.h>

#include <algorithm>
#include <chrono>

#include <cstdio>
#include <sstream>

#include "joulecut/error.h"
#include "joulecut/train_loop.h"

namespace joulecut::prune_detail {

void check_finetune(const std::string& pass, int epochs) {
  if (epochs < 0) throw UserError(pass + ": finetune-epochs must be >= 0");
}

bool matches_any(const std::string& name, const std::string& patterns) {
  std::stringstream in(patterns);
  std::string pattern;
  while (std::getline(in, pattern, '|'))
    if (!pattern.empty() && fnmatch(pattern.c_str(), name.c_str(), 0) == 0) return true;
  return false;
}

std::vector<PrunableLayer> prunable_layers(const torch::jit::Module& module, const std::string& pass) {
  std::vector<PrunableLayer> all;
  const auto ends_with = [](const std::string& name, const std::string& suffix) {
    return name.size() > suffix.size() && name.compare(name.size() - suffix.size(), suffix.size(), suffix) == 0;
  };
  for (const auto& p : module.named_parameters(/*recurse=*/true)) {
    if (p.value.dim() < 2) continue;
    if (ends_with(p.name, ".weight")) {
      all.push_back({p.name.substr(0, p.name.size() - 7), p.value});
    } else if (ends_with(p.name, ".in_proj_weight")) {
      // nn.MultiheadAttention's packed Q, K, V projection: a Linear layer in all but name.
      all.push_back({p.name.substr(0, p.name.size() - 15) + ".in_proj", p.value});
    }
  }
  if (all.empty())
    throw UserError(pass + ": the model has no prunable layer (no Linear or Conv weights; a frozen model "
                           "keeps its weights as constants: prune before freezing)");
  return all;
}

void check_patterns(const LayerSelection& selection, const std::vector<std::string>& names, const std::string& pass) {
  for (const auto* patterns : {&selection.include, &selection.exclude}) {
    std::stringstream in(*patterns);
    std::string pattern;
    while (std::getline(in, pattern, '|')) {
      bool any = false;
      for (const auto& n : names) any = any || fnmatch(pattern.c_str(), n.c_str(), 0) == 0;
      if (!pattern.empty() && !any) {
        std::string list;
        for (const auto& n : names) list += (list.empty() ? "" : ", ") + n;
        throw UserError(pass + ": layer pattern '" + pattern + "' matches no layer (layers: " + list + ")");
      }
    }
  }
}

std::vector<PrunableLayer> select_layers(const torch::jit::Module& module, const LayerSelection& selection,
                                         const std::string& pass) {
  const std::vector<PrunableLayer> all = prunable_layers(module, pass);
  std::vector<std::string> names;
  for (const auto& l : all) names.push_back(l.name);
  check_patterns(selection, names, pass);
  std::vector<PrunableLayer> chosen;
  for (std::size_t i = 0; i < all.size(); ++i) {
    const bool edge = i == 0 || i + 1 == all.size();
    const bool included = selection.include.empty() ? (!edge || selection.include_first_last)
                                                    : matches_any(all[i].name, selection.include);
    if (included && !matches_any(all[i].name, selection.exclude)) chosen.push_back(all[i]);
  }
  if (chosen.empty())
    throw UserError(pass + ": no layer left to prune after include/exclude (the first and last layers are "
                           "excluded unless first-last=true)");
  return chosen;
}

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

double zero_fraction(const at::Tensor& w) { return (w == 0).sum().item<double>() / double(w.numel()); }

std::optional<std::string> attribute_path(torch::jit::Value* v, torch::jit::Value* self) {
  std::vector<std::string> names;
  while (v->node()->kind() == c10::prim::GetAttr) {
    names.push_back(v->node()->s(c10::attr::name));
    v = v->node()->input(0);
  }
  if (v != self || names.empty()) return std::nullopt;
  std::string path;
  for (auto it = names.rbegin(); it != names.rend(); ++it) path += (path.empty() ? "" : ".") + *it;
  return path;
}

std::pair<torch::jit::Module, std::string> owner_of(torch::jit::Module root, const std::string& path) {
  std::size_t start = 0;
  for (std::size_t dot = path.find('.'); dot != std::string::npos; dot = path.find('.', start)) {
    root = root.attr(path.substr(start, dot - start)).toModule();
    start = dot + 1;
  }
  return {root, path.substr(start)};
}

// Counts, per module attribute path, the graph inputs that read it (nested blocks included).
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

std::pair<double, double> interleaved_median_us(const std::function<void()>& a, const std::function<void()>& b,
                                                double budget_seconds) {
  for (int i = 0; i < 3; ++i) {
    a();
    b();
  }
  std::vector<double> ta, tb;
  using clock = std::chrono::steady_clock;
  const auto deadline = clock::now() + std::chrono::duration<double>(budget_seconds);
  while (ta.size() < 9 || (ta.size() < 101 && clock::now() < deadline)) {
    auto t0 = clock::now();
    a();
    auto t1 = clock::now();
    b();
    auto t2 = clock::now();
    ta.push_back(std::chrono::duration<double, std::micro>(t1 - t0).count());
    tb.push_back(std::chrono::duration<double, std::micro>(t2 - t1).count());
  }
  auto median = [](std::vector<double>& v) {
    std::nth_element(v.begin(), v.begin() + v.size() / 2, v.end());
    return v[v.size() / 2];
  };
  return {median(ta), median(tb)};
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

void finetune(torch::jit::Module& module, int epochs, double lr, PassContext& context, PassReport& report,
              const std::string& pass, const std::string& what, const std::function<void()>& after_step) {
  if (epochs <= 0) return;
  if (!context.train) throw UserError(pass + ": finetune-epochs needs training data (--data)");
  at::AutoGradMode grad_enabled(true);  // callers prune under no_grad
  LoopOptions loop;
  loop.epochs = epochs;
  loop.learning_rate = lr;
  loop.seed = context.seed;
  loop.progress = context.progress;
  const auto result = train_loop(module, *context.train, context.test, loop, after_step);
  char note[200];
  std::snprintf(note, sizeof note, "fine-tuned %d epoch(s), lr %g, seed %llu%s%s", epochs, lr,
                (unsigned long long)context.seed, what.empty() ? "" : ", ", what.c_str());
  report.notes.push_back(note);
  if (context.test && context.test->labelled()) {
    std::snprintf(note, sizeof note, "test accuracy after fine-tuning %.2f%%", 100 * result.test_accuracy);
    report.notes.push_back(note);
  }
}

}  // namespace joulecut::prune_detail
