#pragma once
// Pipelines, sweeps and searches over recipes (recipe.h): each point applies its passes in
// order, writes every stage's model, measures the input and every stage side by side, and
// appends one line to a JSON-lines ledger (ledger.h). Sweeps resume where they stopped and
// split into shards for cluster schedulers; searches pick the cheapest configuration within
// an accuracy budget.
#include <cstdint>
#include <functional>
#include <optional>
#include <string>
#include <vector>

#include "joulecut/measure/ledger.h"
#include "joulecut/recipe.h"

namespace joulecut {
struct PassReport;
}

namespace joulecut::measure {

struct SweepOptions {
  std::string grid;          // "" : the recipe's grid (which may be empty: one point per variant)
  std::string output_dir;    // ledger.jsonl and points/NNNN/stage-K-PASS.pt
  bool resume = false;       // continue the ledger in output_dir; without it an existing ledger is an error
  Shard shard;               // the slice of points this process runs
  bool measure = true;       // false: passes only (the ledger then has no latency or energy)
  bool progress = true;
  std::string command;       // recorded in every stage model's provenance
  std::function<void(const PassReport&)> on_pass_report;  // called after each pass (e.g. to print it)
  // The final table shows every stage of every point, not only each point's last: all of them
  // are measured again side by side (see SweepResult::table).
  bool table_all_stages = false;
};

struct SweepResult {
  std::string ledger;
  std::int64_t points = 0;          // in the whole grid
  std::int64_t ran = 0;             // by this call
  std::int64_t already_done = 0;    // found in the ledger (--resume)
  std::int64_t other_shards = 0;
  std::vector<std::string> problems;  // ledger lines that could not be read
  std::vector<LedgerPoint> in_ledger;  // every point the ledger holds now: those found, then those run
  // The final table's points: with several points, copies of in_ledger whose baseline and table
  // stages carry the figures of one more run that measured all of them side by side, windows
  // interleaved, so every ratio follows from the baseline row printed beside it (each point's
  // own measurement stays in the ledger). With one point, or a shard, or no measurement:
  // in_ledger itself.
  std::vector<LedgerPoint> table;
};

// That one run: the recipe's baseline model and the table's stages of every point (the last, or
// every stage with all_stages), measured with the recipe's measurement settings. Accuracy and
// fidelity are the ledger's (they do not change between runs). Precondition: every point has
// measured figures, and stage files that still exist (UserError otherwise: "rerun the sweep").
std::vector<LedgerPoint> measure_table_side_by_side(const Recipe& recipe, const std::vector<LedgerPoint>& points,
                                                    bool all_stages, bool progress);

// Expands the recipe with the grid, checks every point's passes and options (before any
// work), then runs the points of this shard that the ledger does not hold yet. Throws
// UserError for bad input: a grid key that names no pass or option, a ledger from another
// sweep, an existing ledger without --resume.
SweepResult run_sweep(const Recipe& recipe, const SweepOptions& options);

// A single pipeline (`compress run`): stage models are written to output_dir itself.
SweepResult run_recipe(const Recipe& recipe, const SweepOptions& options);

struct SearchOptions {
  SweepOptions sweep;               // sweep.grid "" : the recipe's search space, else one derived from its passes
  double max_accuracy_drop = 1.0;   // percentage points below the baseline, point estimates
  // top1: the drop is in accuracy; agreement: in top-1 agreement with the baseline (label-free;
  // used whenever the data has no labels). The recipe's measure.metric must compute it.
  std::string metric = "top1";
  std::string minimize = "energy";  // energy | latency | size | macs
  std::int64_t batch = 0;           // the batch whose energy or latency counts; 0: the first measured
};

struct SearchResult {
  SweepResult sweep;
  std::string space;                // the grid that was explored (the points: sweep.in_ledger)
  std::optional<LedgerPoint> best;  // absent when no point is within the budget
};

// The search space derived from a recipe's passes when it gives none: sparsities for
// prune-magnitude, channel ratios for prune-channel, which layers stay fp32 (first, last,
// both, none) for int8. Throws UserError when no pass has anything to search.
std::string default_search_space(const Recipe& recipe);

SearchResult run_search(const Recipe& recipe, const SearchOptions& options);

}  // namespace joulecut::measure
