#pragma once
// The results ledger of pipelines, sweeps and searches: JSON lines, one finished point (a
// configuration, every stage measured) per line, each line self-contained with the sweep's
// identity, the configuration, every stage's figures and the manifest. Appending a line is
// one write() followed by fsync, so a killed sweep leaves at most one torn line at the end,
// which the next --resume drops. Torch-free.
#include <cstdint>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "joulecut/measure/manifest.h"
#include "joulecut/measure/stats.h"

namespace joulecut::measure {

// One energy figure with where it came from: "measured", "sampled" or "modeled", and the
// meter or model that produced it.
struct EnergyFigure {
  MeanCI joules_per_inference;
  std::string provenance;
  std::string source;  // short: "rapl", "nvml", "time x power", "ops"
  std::string detail;  // how: domains, watts and their origin, constants
};

struct BatchFigures {
  std::int64_t batch = 1;
  double p50_seconds = 0, p50_low = 0, p50_high = 0, p99_seconds = 0;  // per batch; 95% CI of the median
  MeanCI latency_seconds;                                               // per batch, mean over windows
  std::optional<EnergyFigure> meter;                                    // a hardware meter, when one ran
  EnergyFigure modeled_time_power, modeled_ops;
  MeasurementQuality quality;  // the run's (RunResult::quality)
  // The figure tables and searches use: the meter's when there is one, else time x power.
  const EnergyFigure& energy() const { return meter ? *meter : modeled_time_power; }
};

// Ratios against the baseline measured in the same run (> 1 is better). Energy compares like
// with like: the meter's figures when both have one, else the time x power model; the
// provenance says which.
struct EnergyRatio {
  double value = 0;  // 0 when the stage's figure is 0
  std::string provenance;
};
EnergyRatio energy_ratio(const BatchFigures& baseline, const BatchFigures& stage);
double speedup(const BatchFigures& baseline, const BatchFigures& stage);  // p50 / p50; 0 when unknown

struct StageFigures {
  int index = 0;               // 0: the input (baseline)
  std::string name;            // "baseline" or the pass as text
  std::string passes_applied;  // every pass up to this stage
  std::string model_path;      // where the stage's model was written
  std::string content_sha256;  // the TorchScript archive without joulecut's metadata
  std::int64_t parameters = 0, file_bytes = 0, macs_per_inference = 0;
  std::optional<ProportionCI> accuracy;
  std::string accuracy_data;
  // Label-free fidelity against stage 0 on the same inputs (data without labels, or --metric).
  std::optional<ProportionCI> agreement;  // top-1 agreement with stage 0
  std::optional<double> cosine, snr_db;   // snr_db infinite for identical outputs
  std::vector<BatchFigures> batches;
  const BatchFigures* at_batch(std::int64_t batch) const;  // null when not measured at it
};

struct LedgerPoint {
  std::string sweep_id, recipe;
  std::int64_t index = 0;
  std::string variant;
  std::vector<std::pair<std::string, std::string>> config;
  std::string pipeline;
  std::uint64_t seed = 1;
  std::vector<StageFigures> stages;  // [0] is the baseline, measured side by side with the others
  Manifest manifest;
  std::string label() const;         // variant and config, as in RecipePoint::label
};

std::string to_ledger_line(const LedgerPoint& point);  // one line of JSON, no newline
// Throws std::runtime_error describing what is wrong with the line.
LedgerPoint from_ledger_line(const std::string& line);

struct LedgerContents {
  std::vector<LedgerPoint> points;    // in file order
  std::vector<std::string> problems;  // "FILE:LINE: what is wrong" for each line not read
  std::int64_t good_bytes = 0;        // length of the file up to the end of its last complete line
  bool torn_tail = false;             // the file ends inside a line (a write was cut short)
};

// Reads every line that parses; a bad line is reported with its number and the rest is
// still read. A missing file reads as empty.
LedgerContents read_ledger(const std::string& path);

// Appends one line (and its newline) in a single write, then fsyncs. Throws UserError when
// the file cannot be written.
void append_to_ledger(const std::string& path, const LedgerPoint& point);

// Cuts a torn last line off (it holds no finished result). Precondition: `good_bytes` from
// read_ledger on the same, unchanged file.
void drop_torn_tail(const std::string& path, std::int64_t good_bytes);

// Reads several ledgers (shards) into one list ordered by point index. Throws UserError when
// they come from different sweeps (another recipe, model or grid); duplicates of a point
// keep the first and add a problem line.
LedgerContents merge_ledgers(const std::vector<std::string>& paths);

}  // namespace joulecut::measure
