// quantize-static's first step: the model checked for the pass, and the activation ranges
// calibrated on the first training images (numbered as static_graph.h numbers values).
#include <torch/csrc/jit/ir/ir.h>

#include <algorithm>
#include <string>
#include <vector>

#include "graph/layer_selection.h"
#include "graph/module_graph.h"
#include "joulecut/error.h"
#include "quantize/static_internal.h"

namespace joulecut::static_quant {
using namespace graph;

CalibratedValues calibrate_activations(const torch::jit::Module& input, const StaticQuantizeOptions& options,
                                                   const TensorDataset& train, bool progress, const std::string& pass) {
  torch::jit::Module probe = clone_for_transform(input);
  auto graph = inlined_forward(probe, pass, GraphUse::inference);
  const auto layers = find_layers(*graph, probe, pass, options.backend == "onednn");
  std::vector<std::string> names;
  for (const auto& l : layers) names.push_back(l.name);
  check_patterns({"", options.exclude, false}, names, pass);
  for (Node* n : graph->nodes())
    if (n->kind() == c10::aten::batch_norm)
      for (const auto& l : layers)
        if (n->input(0) == l.node->output())
          throw pass_error(StaticQuantizePass::kName, l.name + " is followed by a BatchNorm; run fold-batchnorm first");
  // Bias correction reads the means of the layers' inputs; without it none are taken.
  const MeansToTake means = options.bias_correction == "on" ? layer_inputs_to_average(*graph, layers) : MeansToTake{};
  return calibrate_values(input, values_to_observe(*graph, layers), means, train, options, progress);
}

std::string calibration_note(const StaticQuantizeOptions& options, const HeldOut& split) {
  const auto used = std::min<std::int64_t>(options.samples, split.calibration.size());
  std::string note = "calibration: " + options.observer + " observer on the first " + std::to_string(used) +
                     " training samples";
  if (split.held_out.size() > 0)
    note += "; the fidelity guard on the last " + std::to_string(split.held_out.size()) + " (held out)";
  return note;
}

}  // namespace joulecut::static_quant
