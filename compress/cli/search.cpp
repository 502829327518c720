// compress search: the configuration with the lowest energy (or latency, size, MACs) within an
// accuracy budget, explored exhaustively over a grid and kept in a ledger.
#include <cstdio>

#include "experiment.h"
#include "joulecut/text.h"

namespace joulecut::cli {
namespace {

void run_search(const ExperimentCliOptions& o, const Invocation& invocation) {
  apply_threads(invocation.threads);
  Recipe recipe = recipe_for(o.input, o.overrides, /*needs_passes=*/false);
  // An agreement budget needs the measurement to compute agreement (data with labels skips it).
  if (o.metric == "agreement" && recipe.measure.metric == "auto") recipe.measure.metric = "agreement";
  measure::SearchOptions search;
  search.metric = o.metric;
  search.sweep = sweep_options(o, invocation.command_line);
  search.max_accuracy_drop = o.max_accuracy_drop;
  search.minimize = o.minimize;
  search.batch = o.batch;
  const auto result = measure::run_search(recipe, search);
  print_problems(result.sweep.problems);
  std::printf("search space: %s (%lld points)\n\n", result.space.c_str(), (long long)result.sweep.points);
  measure::TradeoffOptions table;
  table.batch = o.batch;
  const std::string quality = o.metric == "agreement" ? "top-1 agreement with the baseline"
                                                      : "the baseline's accuracy (agreement, for data without labels)";
  table.title = "compress search " + recipe.name + ": minimize " + o.minimize + " within " +
                short_number(o.max_accuracy_drop) + " pt of " + quality;
  if (result.sweep.other_shards == 0) write_tradeoff_outputs(result.sweep.table, o.output_dir, "search", table);
  std::printf("\n");
  if (!result.best) {
    std::printf("no configuration within %s pt of %s; the explored points are in %s\n",
                short_number(o.max_accuracy_drop).c_str(), quality.c_str(), result.sweep.ledger.c_str());
    return;
  }
  const auto& best = *result.best;
  const auto& base = best.stages.front();
  const auto& last = best.stages.back();
  const auto* b = last.at_batch(o.batch > 0 ? o.batch : last.batches.front().batch);
  const auto* bb = base.at_batch(b->batch);
  std::printf("best: #%lld %s\n  passes: %s\n  model: %s\n", (long long)best.index, best.label().c_str(),
              best.pipeline.c_str(), last.model_path.c_str());
  std::printf("  accuracy %.2f%% (baseline %.2f%%, drop %.2f pt; point estimates, 95%% CIs in the table)\n",
              100 * last.accuracy->value, 100 * base.accuracy->value, 100 * (base.accuracy->value - last.accuracy->value));
  const auto ratio = measure::energy_ratio(*bb, *b);
  std::printf("  energy %.4g mJ/inf at batch %lld, %s; %.2fx less than the baseline measured alongside (%s)\n",
              b->energy().joules_per_inference.mean * 1e3, (long long)b->batch,
              (b->energy().provenance + " (" + b->energy().source + ")").c_str(), ratio.value, ratio.provenance.c_str());
  std::printf("  latency p50 %.4g ms (baseline %.4g ms)\n", b->p50_seconds * 1e3, bb->p50_seconds * 1e3);
}

}  // namespace

Command make_search_command(CLI::App& app) {
  auto o = std::make_shared<ExperimentCliOptions>();
  auto* cmd = app.add_subcommand(
      "search", "Find the configuration with the lowest energy (or latency, size, MACs) within an accuracy budget");
  cmd->footer("Example: compress search examples/recipes/resnet8-search.json --max-accuracy-drop 1.0 --minimize energy -o search/\n\n"
              "The space is --grid, else the recipe's 'search' key, else one derived from its passes: sparsity for "
              "prune-magnitude, ratio for prune-channel, which layers stay fp32 (none, first, last, both) for int8. "
              "Every explored point is in DIR/ledger.jsonl (--resume continues a search).");
  cmd->add_option("recipe", o->input, "Recipe file (.yaml, .yml, .json)")->required();
  cmd->add_option("--max-accuracy-drop", o->max_accuracy_drop, "Accuracy budget, percentage points below the baseline")
      ->capture_default_str();
  cmd->add_option("--minimize", o->minimize, "energy, latency, size or macs")->capture_default_str();
  cmd->add_option("--metric", o->metric,
                  "The budget's measure: top1 (accuracy) or agreement (top-1 agreement with the baseline, label-free; "
                  "used whenever the data has no labels)")
      ->capture_default_str();
  cmd->add_option("--grid", o->grid, "The space to explore, KEY=v1,v2 ... (default: see below)");
  cmd->add_option("-o,--output", o->output_dir, "Directory for the ledger, models, table and plots")->required();
  cmd->add_flag("--resume", o->resume, "Continue the search in the directory");
  cmd->add_option("--shard", o->shard, "i/N: explore one slice")->capture_default_str();
  cmd->add_option("--table-batch", o->batch, "The batch whose energy or latency counts (default: the first measured)");
  add_recipe_overrides(cmd, o->overrides);
  add_progress_flag(cmd, o->no_progress);
  return {cmd, [o](const Invocation& invocation) { run_search(*o, invocation); }};
}

}  // namespace joulecut::cli
