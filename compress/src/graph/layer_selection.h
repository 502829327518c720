#pragma once
// The graph floor: which layers a pass works on (include/exclude globs, first and last layers),
// and the option rows every pass with a layer selection declares.
#include <torch/script.h>

#include <initializer_list>
#include <string>
#include <vector>

#include "joulecut/pass_options.h"
#include "joulecut/prune.h"

namespace joulecut::graph {

// Option rows of a LayerSelection member `layers`, in the order their text prints them.
template <class Options>
std::vector<OptionDecl<Options>> selection_options() {
  return {option_at<Options>("include", "only layers matching these '|'-separated globs (\"\": all)",
                             [](Options& o) -> std::string& { return o.layers.include; }),
          option_at<Options>("exclude", "skip layers matching these '|'-separated globs",
                             [](Options& o) -> std::string& { return o.layers.exclude; }),
          option_at<Options>("first-last", "also prune the first and last layers (the most sensitive)",
                             [](Options& o) -> bool& { return o.layers.include_first_last; })};
}
// The rows of several groups, in order.
template <class Options>
std::vector<OptionDecl<Options>> rows(std::initializer_list<std::vector<OptionDecl<Options>>> groups) {
  std::vector<OptionDecl<Options>> out;
  for (const auto& g : groups) out.insert(out.end(), g.begin(), g.end());
  return out;
}

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

double zero_fraction(const at::Tensor& w);

}  // namespace joulecut::graph
