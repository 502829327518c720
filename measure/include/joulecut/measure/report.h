#pragma once
// Reporters: console table, CSV and JSON, from plain results. Every energy figure is printed
// with its provenance (measured / sampled / modeled) and its meter or model; modeled figures
// have their own columns and never appear under a measured heading. Torch-free.
#include <cstdint>
#include <optional>
#include <ostream>
#include <string>
#include <vector>

#include "joulecut/measure/manifest.h"
#include "joulecut/measure/stats.h"

namespace joulecut::measure {

struct RunResult;

// What is known about a model apart from its runs.
struct ModelSummary {
  std::string label;
  std::string path;
  std::int64_t file_bytes = 0;
  std::int64_t parameters = 0;
  std::int64_t macs_per_inference = 0;
  std::optional<ProportionCI> accuracy;
  std::string accuracy_data;  // e.g. "fashion-mnist test (10000 images)"
  // Label-free quality against the baseline (the first model) on the same inputs; not for the baseline.
  struct Fidelity {
    std::optional<ProportionCI> agreement;  // top-1, where the output is class scores
    MeanCI cosine;
    double snr_db = 0;
    double max_abs_error = 0;
    std::string text;  // the figures as one line
  };
  std::optional<Fidelity> fidelity;
  std::string fidelity_data;  // what the inputs were
};

// How far a model may fall below the baseline before the report warns that it harms the model:
// the limits (and the rule) of quantize's fidelity guard by default: accuracy on labelled data,
// cosine to the baseline otherwise.
struct HarmLimits {
  double max_accuracy_drop = 1.0;  // points of top-1 accuracy (labelled data), point estimates
  double min_cosine = 0.99;        // mean cosine to the baseline (data without labels)
};

struct Report {
  std::vector<ModelSummary> models;  // the first is the baseline for ratios
  std::vector<RunResult> runs;       // any order; ratios compare runs of equal batch
  Manifest manifest;
  std::string title;
  // What the reporters' warnings hold the models to: the budget the user gave the passes that
  // made them (a quantize guard's own limits), else the defaults.
  HarmLimits harm_limits;
};

// One line per model (not the baseline) that falls outside report.harm_limits, naming the figure
// and the limit: a pass that harms the model is said loudly, whichever pass it was. Empty when none.
std::vector<std::string> harm_warnings(const Report& report);

// Each run's ratios against the baseline's run at the same batch (speed-up, energy ratio:
// ledger.h's rules) are computed once per report; the three reporters only format them.
void write_table(std::ostream& out, const Report& report);
void write_csv(std::ostream& out, const Report& report);
void write_json(std::ostream& out, const Report& report);
// format: "table", "csv" or "json" (UserError otherwise).
void write_report(std::ostream& out, const Report& report, const std::string& format);

}  // namespace joulecut::measure
