#include "graph/layer_selection.h"

#include <fnmatch.h>

#include <sstream>

#include "joulecut/error.h"
#include "joulecut/text.h"

namespace joulecut::graph {

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
      if (!pattern.empty() && !any)
        throw UserError(pass + ": layer pattern '" + pattern + "' matches no layer (layers: " + join(names, ", ") + ")");
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

double zero_fraction(const at::Tensor& w) { return (w == 0).sum().item<double>() / double(w.numel()); }

}  // namespace joulecut::graph
