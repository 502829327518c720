// compress sweep: a recipe run over a grid of pass options, into a crash-safe ledger that can
// be resumed and sharded; the trade-off table and plots.
#include <cstdio>

#include "experiment.h"

namespace joulecut::cli {
namespace {

void run_sweep(const ExperimentCliOptions& o, const Invocation& invocation) {
  apply_threads(invocation.threads);
  const Recipe recipe = recipe_for(o.input, o.overrides, /*needs_passes=*/false);
  measure::SweepOptions options = sweep_options(o, invocation.command_line);
  options.table_all_stages = o.all_stages;
  const auto result = measure::run_sweep(recipe, options);
  print_problems(result.problems);
  std::printf("sweep: %lld points; ran %lld, %lld already in the ledger, %lld in other shards; ledger %s\n",
              (long long)result.points, (long long)result.ran, (long long)result.already_done,
              (long long)result.other_shards, result.ledger.c_str());
  if (o.no_measure) return;
  if (result.other_shards > 0) {
    std::printf("this shard's points are in the ledger; merge every shard's ledger with: compress report LEDGER... -o DIR\n");
    return;
  }
  measure::TradeoffOptions table;
  table.batch = o.batch;
  table.all_stages = o.all_stages;
  table.title = "compress sweep " + recipe.name;
  write_tradeoff_outputs(result.table, o.output_dir, "sweep", table);
}

}  // namespace

Command make_sweep_command(CLI::App& app) {
  auto o = std::make_shared<ExperimentCliOptions>();
  auto* cmd = app.add_subcommand("sweep", "Run a recipe over a grid of pass options: a crash-safe ledger, resumable, shardable");
  cmd->footer("Example: compress sweep examples/recipes/lenet5-sweep.yaml --grid \"prune.sparsity=0.5,0.7,0.9 "
              "quant.observer=minmax,entropy\" -o sweep/\n\nGrid keys are PASS.OPTION (PASS: a pass name, a unique prefix "
              "such as prune or quant, or its position 1, 2, ...) or seed; every option of 'compress run --help' is a key. "
              "Every point appends one line to DIR/ledger.jsonl when it is done; --resume runs only the missing points. "
              "--shard i/N runs points k with k mod N = i-1 (see scripts/slurm-sweep.sh); merge the shards with compress report.");
  cmd->add_option("recipe", o->input, "Recipe file (.yaml, .yml, .json)")->required();
  cmd->add_option("--grid", o->grid, "KEY=v1,v2 KEY2=... (default: the recipe's grid)");
  cmd->add_option("-o,--output", o->output_dir, "Directory for the ledger, stage models, tables and plots")->required();
  cmd->add_flag("--resume", o->resume, "Continue the ledger in the directory: finished points are not redone");
  cmd->add_option("--shard", o->shard, "i/N: run the i-th of N slices (for job arrays)")->capture_default_str();
  cmd->add_flag("--all-stages", o->all_stages, "Table: every stage of every point, not only the last");
  cmd->add_option("--table-batch", o->batch, "Table and plots: the batch to show (default: the first measured)");
  add_recipe_overrides(cmd, o->overrides);
  cmd->add_flag("--no-measure", o->no_measure, "Apply and write the stages only");
  add_progress_flag(cmd, o->no_progress);
  return {cmd, [o](const Invocation& invocation) { run_sweep(*o, invocation); }};
}

}  // namespace joulecut::cli
