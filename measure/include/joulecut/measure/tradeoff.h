#pragma once
// Trade-off tables and plots from ledger points: one row per stage (a pipeline) or per
// configuration (a sweep), with accuracy, size, MACs, latency and energy per inference, each
// with its 95% CI, the energy with its provenance, and ratios against the baseline measured
// side by side in the same run. Console, CSV, Markdown, LaTeX (booktabs) and JSON; plots of
// accuracy against energy and against latency with the Pareto front, through gnuplot.
// Torch-free.
#include <cstdint>
#include <ostream>
#include <string>
#include <vector>

#include "joulecut/measure/ledger.h"

namespace joulecut::measure {

struct TradeoffOptions {
  std::int64_t batch = 0;   // the batch the latency and energy columns show; 0: the first measured
  bool all_stages = false;  // several points: every stage of each, not only its last
  std::string title;
};

struct TradeoffRow {
  std::string label;
  const LedgerPoint* point = nullptr;
  const StageFigures* stage = nullptr;
  const StageFigures* baseline = nullptr;  // the same point's stage 0 (same run)
  bool pareto = false;                     // no other row is both more accurate and cheaper in energy
  // Against `baseline` at the table's batch, computed once when the rows are built (every
  // format prints these): p50 latency, energy (speedup() and energy_ratio() of ledger.h) and
  // file size, baseline / this row, > 1 is better; 0 when unknown.
  double speedup = 0, energy_ratio = 0, size_ratio = 0;
};

// One point: the baseline and each stage. Several: the baseline (of the first point), then
// the last stage of each point (every stage with all_stages). Pareto marks and ratios are at
// table_batch(). Precondition: points non-empty.
std::vector<TradeoffRow> tradeoff_rows(const std::vector<LedgerPoint>& points, const TradeoffOptions& options);

// The batch the table shows (options.batch, or the first measured). UserError when a row
// has no figures at it.
std::int64_t table_batch(const std::vector<TradeoffRow>& rows, const TradeoffOptions& options);

// The rows and the batch they show, computed once; every format and plot renders the same
// table. Precondition: `points` non-empty and outliving the table (rows point into it).
struct TradeoffTable {
  const std::vector<LedgerPoint>* points = nullptr;
  TradeoffOptions options;
  std::vector<TradeoffRow> rows;
  std::int64_t batch = 0;
};
TradeoffTable tradeoff_table(const std::vector<LedgerPoint>& points, const TradeoffOptions& options);

// format: table, csv, markdown, latex or json (UserError otherwise).
void write_tradeoff(std::ostream& out, const TradeoffTable& table, const std::string& format);
void write_tradeoff(std::ostream& out, const std::vector<LedgerPoint>& points, const std::string& format,
                    const TradeoffOptions& options);

// Whether any row has a quality to plot (accuracy, or agreement for data without labels):
// synthetic input has none.
bool has_quality(const TradeoffTable& table);

// Writes PREFIX-energy.{svg,png} and PREFIX-latency.{svg,png} (atomically) with gnuplot and
// returns their paths. UserError when gnuplot is missing or fails, or no row has a quality.
std::vector<std::string> write_tradeoff_plots(const TradeoffTable& table, const std::string& prefix);
std::vector<std::string> write_tradeoff_plots(const std::vector<LedgerPoint>& points, const std::string& prefix,
                                              const TradeoffOptions& options);

}  // namespace joulecut::measure
