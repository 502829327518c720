#pragma once
// Internal to the compress command: what run, sweep, search and report share (recipes and
// their command-line overrides, the trade-off outputs).
#include <map>
#include <string>
#include <vector>

#include "joulecut/measure/sweep.h"
#include "joulecut/measure/tradeoff.h"
#include "joulecut/recipe.h"
#include "options.h"

namespace joulecut::cli {

// Settings given on the command line; with a recipe file they override the recipe's.
struct RecipeOverrides {
  std::string passes, batches;
  DataSource data;  // the data flags; those given replace the recipe's
  std::map<std::string, CLI::Option*> data_flags;
  int windows = 0;
  std::uint64_t seed = 0;
  bool seed_given = false;
};
void add_recipe_overrides(CLI::App* app, RecipeOverrides& overrides);

// The recipe file `model_or_recipe`, or (needs_passes) a model with --passes, with the
// overrides applied. Throws UserError for the wrong kind of input.
Recipe recipe_for(const std::string& model_or_recipe, const RecipeOverrides& overrides, bool needs_passes);

struct ExperimentCliOptions {
  std::string input, output_dir, grid, shard = "1/1", minimize = "energy", format = "table";
  RecipeOverrides overrides;
  double max_accuracy_drop = 1.0;
  std::string metric = "top1";  // search: the budget on top1 (accuracy) or agreement (with the baseline)
  std::int64_t batch = 0;
  bool resume = false, no_measure = false, no_progress = false, all_stages = false;
};
measure::SweepOptions sweep_options(const ExperimentCliOptions& options, const std::string& command);

// Writes NAME.{txt,csv,md,tex,json} and NAME-{energy,latency}.{svg,png} in `dir` from one
// table; prints the console table and the paths written.
void write_tradeoff_outputs(const std::vector<measure::LedgerPoint>& points, const std::string& dir, const std::string& name,
                            const measure::TradeoffOptions& options);

}  // namespace joulecut::cli
