// quantize-static's fidelity guard (on by default): the int8 model judged against fp32 on the
// last training samples, which calibration never sees. When it misses the limit, each int8
// layer is tried once in fp32 to rank the layers by harm; then the fewest of the most harmful
// go back to fp32 (doubling, then bisecting) until the guard holds. When no set of fp32 layers
// that leaves one int8 meets it, the candidate closest to the limit is kept and the report warns,
// naming the most harmful layers.
#include <ATen/ATen.h>

#include <algorithm>
#include <map>
#include <optional>
#include <set>
#include <string>
#include <utility>
#include <vector>

#include "joulecut/error.h"
#include "joulecut/fidelity.h"
#include "joulecut/progress.h"
#include "joulecut/text.h"
#include "quantize/static_internal.h"

namespace joulecut::static_quant {
namespace {

// What the guard measures on and against: the held-out samples, fp32's outputs on them, and the
// limit a candidate's score must reach.
struct Judge {
  const TensorDataset& data;
  ReferenceOutputs reference;
  bool agreement = false;  // top-1 agreement in points; else mean cosine
  double limit = 0;

  double score(torch::jit::Module module) const {
    const Fidelity f = fidelity(reference, module, data);
    return agreement ? 100.0 * f.agreement->value : f.cosine.mean;
  }
  bool holds(double score) const { return score >= limit; }
  std::string value_text(double score) const {
    return agreement ? format("top-1 agreement with fp32 %.2f%%", score) : format("cosine to fp32 %.6g", score);
  }
  std::string limit_text() const {
    return agreement ? format("agreement >= %.2f%%", limit) : format("cosine >= %.4g", limit);
  }
};

Judge make_judge(const torch::jit::Module& input, const StaticQuantizeOptions& options, const TensorDataset& held_out) {
  torch::jit::Module fp32 = input.clone();
  Judge judge{held_out, reference_outputs(fp32, held_out)};
  const bool classes = has_class_scores(judge.reference, held_out);
  if (options.guard_metric == "agreement" && !classes)
    throw pass_error(StaticQuantizePass::kName,
                     "guard-metric=agreement needs class scores ([batch, classes], or the data's output "
                     "option naming them); use guard-metric=cosine");
  judge.agreement = options.guard_metric == "agreement" || (options.guard_metric == "auto" && classes && held_out.labelled());
  judge.limit = judge.agreement ? 100.0 - options.max_agreement_drop : options.min_cosine;
  return judge;
}

// Each int8 layer alone returned to fp32 (the rest as chosen): the layers, most harmful first.
std::vector<std::pair<std::string, double>> rank_by_harm(const torch::jit::Module& input,
                                                         const StaticQuantizeOptions& options,
                                                         const CalibratedValues& calibration,
                                                         const Choice& choice, const Judge& judge, bool progress) {
  std::vector<std::string> int8_layers;
  for (const auto& l : choice.built.layers)
    if (l.after == 8) int8_layers.push_back(l.layer);
  std::vector<std::pair<std::string, double>> ranked;
  ProgressBar bar("fidelity guard: each int8 layer tried in fp32", std::int64_t(int8_layers.size()), progress);
  for (const auto& layer : int8_layers) {
    std::set<std::string> trial = choice.keep;
    trial.insert(layer);
    const Built candidate = build_int8(input, options, calibration, trial);
    ranked.emplace_back(layer, candidate.int8_layers > 0 ? judge.score(candidate.module) : judge.limit);
    bar.update(std::int64_t(ranked.size()), layer);
  }
  bar.finish("ranked");
  std::stable_sort(ranked.begin(), ranked.end(), [](const auto& a, const auto& b) { return a.second > b.second; });
  return ranked;
}

// The model with the `count` most harmful layers fp32 (besides those kept already), and its score.
struct Candidate {
  Built built;
  std::set<std::string> keep;
  double score = 0;
};

Candidate with_most_harmful_fp32(const torch::jit::Module& input, const StaticQuantizeOptions& options,
                                 const CalibratedValues& calibration, const Choice& choice,
                                 const std::vector<std::pair<std::string, double>>& ranked, std::size_t count,
                                 const Judge& judge) {
  Candidate c;
  c.keep = choice.keep;
  for (std::size_t i = 0; i < count; ++i) c.keep.insert(ranked[i].first);
  c.built = build_int8(input, options, calibration, c.keep);
  c.score = c.built.int8_layers > 0 ? judge.score(c.built.module) : judge.limit;
  return c;
}

// The guard's answer: the fewest most-harmful layers whose return to fp32 makes it hold, leaving
// at least one int8 layer (counts doubled until it holds, then bisected); when none does, the
// candidate closest to the limit (ties: the fewest fp32 layers), and met false.
struct Outcome {
  Candidate chosen;
  bool met = false;
};

Outcome fewest_fp32_layers(const torch::jit::Module& input, const StaticQuantizeOptions& options,
                           const CalibratedValues& calibration, const Choice& choice,
                           const std::vector<std::pair<std::string, double>>& ranked, const Judge& judge,
                           Candidate all_int8) {
  Outcome outcome{std::move(all_int8)};
  auto consider = [&](Candidate c) {
    if (judge.holds(c.score)) {
      if (!outcome.met || c.keep.size() < outcome.chosen.keep.size()) outcome = {std::move(c), true};
    } else if (!outcome.met && c.score > outcome.chosen.score) {
      outcome.chosen = std::move(c);
    }
  };
  if (ranked.size() < 2) return outcome;
  const std::size_t most = ranked.size() - 1;  // at least one layer stays int8
  std::size_t failing = 0, count = 1;
  for (;;) {
    consider(with_most_harmful_fp32(input, options, calibration, choice, ranked, count, judge));
    if (outcome.met || count == most) break;
    failing = count;
    count = std::min(most, 2 * count);
  }
  std::size_t holding = count;
  while (outcome.met && holding - failing > 1) {
    const std::size_t middle = failing + (holding - failing) / 2;
    Candidate c = with_most_harmful_fp32(input, options, calibration, choice, ranked, middle, judge);
    (judge.holds(c.score) ? holding : failing) = middle;
    consider(std::move(c));
  }
  return outcome;
}

std::string most_harmful_text(const std::vector<std::pair<std::string, double>>& ranked, const Judge& judge) {
  std::vector<std::string> names;
  for (std::size_t i = 0; i < std::min<std::size_t>(5, ranked.size()); ++i)
    names.push_back(ranked[i].first + (judge.agreement ? format(" (%.2f%% in fp32)", ranked[i].second)
                                                       : format(" (%.6g in fp32)", ranked[i].second)));
  return join(names, ", ");
}

}  // namespace

HeldOut hold_out(const StaticQuantizeOptions& options, const TensorDataset& train) {
  HeldOut split;
  if (options.guard == "off") {
    split.calibration = train;
    return split;
  }
  const std::int64_t size = train.size();
  if (size < 2)
    throw UserError(format("quantize-static: the fidelity guard judges int8 on training samples that calibration never "
                           "sees, and the training data has %lld; give more samples, or guard=off", (long long)size));
  // Enough for both: the last `validation` samples; otherwise a quarter of them.
  const std::int64_t held = size >= options.samples + options.validation
                                ? std::int64_t(options.validation)
                                : std::min<std::int64_t>(options.validation, std::max<std::int64_t>(1, size / 4));
  split.calibration = slice(train, 0, size - held);
  split.calibration.description = "first " + std::to_string(size - held) + " training samples";
  split.held_out = slice(train, size - held, held);
  split.held_out.description = "last " + std::to_string(held) + " training samples (held out from calibration)";
  return split;
}

void apply_fidelity_guard(const torch::jit::Module& input, const StaticQuantizeOptions& options,
                          const CalibratedValues& calibration, const TensorDataset& held_out, bool progress,
                          Choice& choice, PassReport& report) {
  if (options.guard == "off") {
    report.notes.push_back("fidelity guard: OFF (guard=off): nothing here checked how far the int8 model is from fp32");
    return;
  }
  const Judge judge = make_judge(input, options, held_out);
  Candidate all_int8{choice.built, choice.keep, judge.score(choice.built.module)};
  const std::string where = " on the " + held_out.description + ", limit " + judge.limit_text();
  if (judge.holds(all_int8.score)) {
    report.notes.push_back("fidelity guard: " + judge.value_text(all_int8.score) + where + ": met");
    return;
  }
  const double all_int8_score = all_int8.score;
  const auto ranked = rank_by_harm(input, options, calibration, choice, judge, progress);
  const Outcome outcome = fewest_fp32_layers(input, options, calibration, choice, ranked, judge, std::move(all_int8));
  for (const auto& [layer, score] : ranked)
    if (outcome.chosen.keep.count(layer) && !choice.keep.count(layer))
      choice.budget_notes[layer] = "fp32: fidelity guard (" + judge.value_text(score) + " with only this layer fp32)";
  const std::string reached =
      format("%s with every layer int8; %zu layer(s) returned to fp32, the most harmful first: %s%s",
             judge.value_text(all_int8_score).c_str(), outcome.chosen.keep.size() - choice.keep.size(),
             judge.value_text(outcome.chosen.score).c_str(), where.c_str());
  if (outcome.met) {
    report.notes.push_back("fidelity guard: " + reached + ": met");
  } else {
    report.warnings.push_back("FIDELITY GUARD NOT MET: " + reached + ". No set of fp32 layers that leaves one int8 "
                              "meets it; the int8 layers harm the model. Most harmful in int8: " +
                              most_harmful_text(ranked, judge) +
                              ". Try observer=mse or entropy, or another pass; the limit is min-cosine or "
                              "max-agreement-drop");
  }
  choice.keep = outcome.chosen.keep;
  choice.built = outcome.chosen.built;
}

}  // namespace joulecut::static_quant
