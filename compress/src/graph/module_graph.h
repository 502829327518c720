#pragma once
// The graph floor: module and graph helpers every pass family stands on (prune, quantize,
// distill, analysis). Nothing here knows about a pass; passes never reach into each other.
#include <torch/script.h>

#include <cstdint>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <utility>
#include <vector>

namespace joulecut::graph {

// Clone, then transform: copies made without autograd history, so the copy's parameters are
// plain leaves and the input's are untouched.
torch::jit::Module clone_for_transform(const torch::jit::Module& input);

// The number of parameter elements in the module and its submodules.
std::int64_t count_parameters(const torch::jit::Module& module);

// The module attribute path a graph value is read from ("layer1.conv1.weight"), following
// prim::GetAttr nodes back to `self`; nullopt when it is not read from the module.
std::optional<std::string> attribute_path(torch::jit::Value* v, torch::jit::Value* self);

// The module holding attribute path "a.b.weight" under `root`, and the attribute's name.
std::pair<torch::jit::Module, std::string> owner_of(torch::jit::Module root, const std::string& path);

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

// `module`'s forward graph with every submodule call inlined (attention rewritten into plain ops,
// graph/attention.h) and its constant attributes' branches specialized (a copy).
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

}  // namespace joulecut::graph
