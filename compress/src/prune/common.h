#pragma once
// Internal: what the pruning passes share (layer selection, fine-tuning options, fine-tuning).
#include <torch/script.h>

#include <functional>
#include <map>
#include <set>
#include <optional>
#include <string>
#include <vector>

#include "joulecut/pass_options.h"
#include "joulecut/prune.h"

namespace joulecut::prune_detail {

// Option rows shared by the pruning passes, in the order their text prints them.
template <class Options>
std::vector<OptionDecl<Options>> selection_options() {
  return {option_at<Options>("include", "only layers matching these '|'-separated globs (\"\": all)",
                             [](Options& o) -> std::string& { return o.layers.include; }),
          option_at<Options>("exclude", "skip layers matching these '|'-separated globs",
                             [](Options& o) -> std::string& { return o.layers.exclude; }),
          option_at<Options>("first-last", "also prune the first and last layers (the most sensitive)",
                             [](Options& o) -> bool& { return o.layers.include_first_last; })};
}
template <class Options>
std::vector<OptionDecl<Options>> finetune_options() {
  return {option<Options>("finetune-epochs", "fine-tune with the zeros kept (0: none; needs training data)",
                          &Options::finetune_epochs),
          option<Options>("finetune-lr", "peak fine-tuning learning rate (cosine schedule)", &Options::finetune_lr)};
}
// The rows of several groups, in order.
template <class Options>
std::vector<OptionDecl<Options>> rows(std::initializer_list<std::vector<OptionDecl<Options>>> groups) {
  std::vector<OptionDecl<Options>> out;
  for (const auto& g : groups) out.insert(out.end(), g.begin(), g.end());
  return out;
}

void check_finetune(const std::string& pass, int epochs);

// True when `name` matches one of the '|'-separated glob `patterns`.
bool matches_any(const std::string& name, const std::string& patterns);

struct PrunableLayer {
  std::string name;  // "features.0"
  at::Tensor weight;
};

// Every "*.weight" parameter with two or more dimensions, in module order. Throws UserError
// when there is none.
std::vector<PrunableLayer> prunable_layers(const torch::jit::Module& module, const std::string& pass);
// Throws UserError naming a pattern of `selection` that matches none of `names`.
void check_patterns(const LayerSelection& selection, const std::vector<std::string>& names, const std::string& pass);
// The layers `selection` picks (first and last excluded unless asked); throws when none.
std::vector<PrunableLayer> select_layers(const torch::jit::Module& module, const LayerSelection& selection,
                                         const std::string& pass);

// Clone, then transform: copies made without autograd history, so the copy's parameters are
// plain leaves and the input's are untouched.
torch::jit::Module clone_for_transform(const torch::jit::Module& input);

double zero_fraction(const at::Tensor& w);

// The module attribute path a graph value is read from ("layer1.conv1.weight"), following
// prim::GetAttr nodes back to `self`; nullopt when it is not read from the module.
std::optional<std::string> attribute_path(torch::jit::Value* v, torch::jit::Value* self);

// The module holding attribute path "a.b.weight" under `root`, and the attribute's name.
std::pair<torch::jit::Module, std::string> owner_of(torch::jit::Module root, const std::string& path);

// Median times of `a` and `b` in microseconds, run alternately (so drift hits both alike) for
// at least 9 pairs and up to `budget_seconds` or 101 pairs, after 3 warm-up pairs.
std::pair<double, double> interleaved_median_us(const std::function<void()>& a, const std::function<void()>& b,
                                                double budget_seconds = 0.3);

// Every node of `block` and the blocks nested in it, in graph order.
std::vector<torch::jit::Node*> all_nodes(torch::jit::Block* block);

// Every node of `kind` in `block` and the blocks nested in it, in graph order.
std::vector<torch::jit::Node*> nodes_of_kind(torch::jit::Block* block, c10::Symbol kind);

// Counts, per module attribute path, the graph inputs that read it (nested blocks included):
// a weight read twice is shared, and a pass must not change it for one reader.
void count_reads(torch::jit::Block* block, torch::jit::Value* self, std::map<std::string, int>& reads);

// Replaces each read of a bool, int or float module attribute that forward never assigns
// (`training` aside) by its value, and inlines the branches those constants decide: the layers of
// torchvision's `if self.use_res_connect:` blocks become plain top-level nodes that every pass
// can read. Returns how many reads were replaced. Precondition: graph is `module`'s, inlined.
// With `Use::inference` and `module` in eval mode, `training` is a constant too: a pass whose
// output only runs inference (int8, folded BatchNorm) drops BatchNorm's and dropout's training
// branches, which would otherwise read layer outputs and keep activations from fusing.
enum class GraphUse { training, inference };
int specialize_constant_attributes(const std::shared_ptr<torch::jit::Graph>& graph, const torch::jit::Module& module,
                                   GraphUse use = GraphUse::training);

// `module`'s forward graph with every submodule call inlined and its constant attributes'
// branches specialized (a copy).
std::shared_ptr<torch::jit::Graph> inlined_forward(const torch::jit::Module& module, const std::string& pass,
                                                   GraphUse use = GraphUse::training);

// Adds method `name` to `module`'s class: `graph` (one of `module`'s method graphs, changed in
// place) returning a tuple of `values` instead of its outputs, dead code removed. Passes use it
// to read activations (calibration, importance, distillation hints).
void add_method_returning(torch::jit::Module& module, const std::shared_ptr<torch::jit::Graph>& graph,
                          const std::vector<torch::jit::Value*>& values, const std::string& name);
// Removes a method add_method_returning added.
void remove_method(torch::jit::Module& module, const std::string& name);

// Replaces `module`'s forward with `graph` (whose first input is `module` itself).
void replace_forward(torch::jit::Module& module, const std::shared_ptr<torch::jit::Graph>& graph);

// Fine-tunes `module` on context.train when epochs > 0 (throws UserError without training
// data); `after_step` runs after every optimizer step. Adds notes to `report`.
void finetune(torch::jit::Module& module, int epochs, double lr, PassContext& context, PassReport& report,
              const std::string& pass, const std::string& what, const std::function<void()>& after_step = {});

}  // namespace joulecut::prune_detail
