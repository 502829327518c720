#pragma once
// Pruning sensitivity: each layer (or channel group) pruned alone at several levels, with the
// accuracy and the modeled energy per inference that result. Tells which layers can take
// more pruning before a global setting is chosen.
#include <torch/script.h>

#include <cstdint>
#include <ostream>
#include <string>
#include <vector>

#include "joulecut/data.h"
#include "joulecut/measure/stats.h"

namespace joulecut {

struct SensitivityOptions {
  std::string method = "magnitude";             // magnitude (unstructured) or channel
  std::vector<double> levels = {0.25, 0.5, 0.75, 0.9};  // sparsity, or fraction of channels removed
  bool progress = true;
};

struct SensitivityPoint {
  std::string layer;  // a layer, or a channel group's producers joined with '+'
  double level = 0;
  measure::ProportionCI accuracy;
  std::int64_t effective_macs = 0;  // per inference, zero weights not counted
  double modeled_joules = 0;        // op count x energy per op, zeros skipped, per inference
};

struct SensitivityReport {
  std::string method;
  std::vector<double> levels;
  std::vector<std::string> layers;
  measure::ProportionCI baseline_accuracy;
  std::int64_t baseline_macs = 0;
  double baseline_joules = 0;
  std::vector<SensitivityPoint> points;  // layers x levels, layer-major
  std::string energy_model;              // how the energy was modeled, with its source
  std::string data;                      // what the accuracy was measured on
};

// Precondition: `module` is not frozen; `test` matches its input. Throws UserError for an
// unknown method, a level outside [0, 1), or a model with nothing to prune.
SensitivityReport analyze_sensitivity(const torch::jit::Module& module, const TensorDataset& test,
                                      const SensitivityOptions& options);

void write_sensitivity_table(std::ostream& out, const SensitivityReport& report);
void write_sensitivity_csv(std::ostream& out, const SensitivityReport& report);
// Accuracy against level, one line per layer, as a standalone SVG document.
std::string sensitivity_svg(const SensitivityReport& report, const std::string& title);

}  // namespace joulecut
