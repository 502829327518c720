// quantize-static's accuracy budget (max-accuracy-drop): the int8 model measured on the last
// training images (never the test set), and, greedily, the layer whose fp32 return buys the
// most kept fp32 until the drop is within budget; the report says what each kept layer cost.
#include <ATen/ATen.h>

#include <algorithm>
#include <cstdio>
#include <utility>

#include "joulecut/error.h"
#include "joulecut/evaluate.h"
#include "joulecut/fidelity.h"
#include "joulecut/progress.h"
#include "joulecut/text.h"
#include "quantize/static_internal.h"

namespace joulecut::static_quant {
namespace {

double accuracy_points(torch::jit::Module module, const TensorDataset& data) {
  return 100.0 * evaluate(module, data).accuracy.value;
}

// The budget's measure of quality, in points: top-1 accuracy on the labels, or (agreement) the
// share of samples on which `module` picks the class the fp32 model picks (100 for fp32 itself).
double quality_points(torch::jit::Module& fp32, torch::jit::Module module, const TensorDataset& data, bool agreement) {
  if (!agreement) return accuracy_points(module, data);
  const Fidelity f = fidelity(fp32, module, data);
  if (!f.agreement)
    throw pass_error(StaticQuantizePass::kName, "metric=agreement needs class scores ([batch, classes], or " +
                                                    option_ref("DataSource::output") + " naming them)");
  return 100.0 * f.agreement->value;
}

// What the budget measures on: the validation images, the fp32 model, and its quality there.
struct Yardstick {
  TensorDataset validation;
  torch::jit::Module fp32;
  bool agreement;  // top-1 agreement with fp32 rather than accuracy
  double baseline;
};

Yardstick make_yardstick(const torch::jit::Module& input, const StaticQuantizeOptions& options,
                         const TensorDataset& train) {
  const std::int64_t count = std::min<std::int64_t>(options.validation, train.size());
  TensorDataset validation = slice(train, train.size() - count, count);
  validation.description = "last " + std::to_string(count) + " training images";
  torch::jit::Module fp32 = input.clone();
  // Data without labels: the budget is on top-1 agreement with the fp32 model instead.
  const bool agreement = options.metric == "agreement" || !validation.labelled();
  const double baseline = agreement ? 100.0 : accuracy_points(fp32, validation);
  return {std::move(validation), fp32, agreement, baseline};
}

// One greedy step: each of `int8_layers` tried in fp32 (besides those kept already); the one
// whose return buys the most quality, with that quality and its model.
struct Step {
  std::string layer;
  double quality = -1;
  Built built;
};

Step best_layer_to_keep(const torch::jit::Module& input, const StaticQuantizeOptions& options,
                        const CalibratedValues& calibration, const std::set<std::string>& keep,
                        const std::vector<std::string>& int8_layers, Yardstick& y, bool progress) {
  Step best;
  ProgressBar bar("accuracy budget: trying each int8 layer in fp32", std::int64_t(int8_layers.size()), progress);
  for (std::size_t i = 0; i < int8_layers.size(); ++i) {
    std::set<std::string> trial = keep;
    trial.insert(int8_layers[i]);
    Built candidate = build_int8(input, options, calibration, trial);
    const double a =
        candidate.int8_layers > 0 ? quality_points(y.fp32, candidate.module, y.validation, y.agreement) : y.baseline;
    if (a > best.quality) {
      best.quality = a;
      best.layer = int8_layers[i];
      best.built = candidate;
    }
    bar.update(std::int64_t(i + 1), int8_layers[i]);
  }
  bar.finish("keeps " + best.layer + " in fp32");
  return best;
}

}  // namespace

void apply_accuracy_budget(const torch::jit::Module& input, const StaticQuantizeOptions& options,
                           const CalibratedValues& calibration, const TensorDataset& train, bool progress,
                           Choice& choice, std::vector<std::string>& notes) {
  Yardstick y = make_yardstick(input, options, train);
  const double baseline = y.baseline;
  const double budget = options.relative_drop ? baseline * options.max_accuracy_drop / 100 : options.max_accuracy_drop;
  double accuracy = quality_points(y.fp32, choice.built.module, y.validation, y.agreement);
  notes.push_back(format("%s budget: fp32 %.2f%% on the %s; all int8 %.2f%% (drop %.2f pt, budget %.2f pt)",
                         y.agreement ? "top-1 agreement with fp32" : "accuracy", baseline,
                         y.validation.description.c_str(), accuracy, baseline - accuracy, budget));
  std::map<std::string, double> cost;
  while (baseline - accuracy > budget) {
    std::vector<std::string> int8_layers;
    for (const auto& l : choice.built.layers)
      if (l.after == 8) int8_layers.push_back(l.layer);
    if (int8_layers.empty()) break;
    Step best = best_layer_to_keep(input, options, calibration, choice.keep, int8_layers, y, progress);
    cost[best.layer] = best.quality - accuracy;
    choice.keep.insert(best.layer);
    accuracy = best.quality;
    choice.built = best.built;
  }
  if (choice.built.int8_layers == 0)
    throw pass_error(StaticQuantizePass::kName, "no layer can be int8 within the accuracy budget of " +
                                                    number_text(budget) + " pt; raise " +
                                                    option_ref("max-accuracy-drop"));
  for (const auto& [layer, points] : cost)
    choice.budget_notes[layer] = format("fp32: accuracy budget (int8 here cost %.2f pt)", points);
  notes.push_back(format("accuracy budget: %zu layer(s) kept fp32; int8 model %.2f%% (drop %.2f pt) %s budget",
                         choice.keep.size(), accuracy, baseline - accuracy,
                         baseline - accuracy <= budget ? "within" : "OVER"));
}

void note_budget_layers(Choice& choice) {
  for (auto& l : choice.built.layers)
    if (choice.budget_notes.count(l.layer))
      l.note = choice.budget_notes[l.layer] + l.note.substr(std::min(l.note.size(), l.note.find(';')));
}

}  // namespace joulecut::static_quant
