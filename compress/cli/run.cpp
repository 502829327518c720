// compress run: passes applied in sequence (a recipe, or a model with --passes); every stage
// written and measured side by side with the input; the stage table in every format, and plots.
#include <cstdio>

#include "experiment.h"

namespace joulecut::cli {
namespace {

void run_pipeline(const ExperimentCliOptions& o, const Invocation& invocation) {
  apply_threads(invocation.threads);
  const Recipe recipe = recipe_for(o.input, o.overrides, /*needs_passes=*/true);
  auto options = sweep_options(o, invocation.command_line);
  options.on_pass_report = print_pass_report;
  const auto result = measure::run_recipe(recipe, options);
  print_problems(result.problems);
  if (result.ran == 0) std::printf("%s: already holds this pipeline's result (--resume)\n", result.ledger.c_str());
  if (o.no_measure) {
    std::printf("wrote %s (no measurement: --no-measure)\n", result.ledger.c_str());
    return;
  }
  const auto& point = result.in_ledger.back();
  measure::TradeoffOptions table;
  table.batch = o.batch;
  table.title = "compress run " + recipe.name + ": " + point.pipeline;
  write_tradeoff_outputs({point}, o.output_dir, "stages", table);
}

}  // namespace

Command make_run_command(CLI::App& app) {
  auto o = std::make_shared<ExperimentCliOptions>();
  auto* cmd = app.add_subcommand(
      "run", "Apply passes in sequence (a recipe, or a model with --passes); measure before the first pass and after each");
  cmd->footer("Examples:\n  compress run examples/recipes/headline.yaml -o out/\n"
              "  compress run models/trained/lenet5.pt --passes \"fold-bn,prune-channel<ratio=0.5>,distill<epochs=3>,"
              "quantize-int8<observer=entropy>\" -o out/\n\nWrites out/stage-K-PASS.pt, out/ledger.jsonl, the stage table as "
              "out/stages.{txt,csv,md,tex,json} and plots out/stages-{energy,latency}.{svg,png}.\n\n"
              "Passes and their options (name=default):\n" +
              passes_help());
  cmd->add_option("input", o->input, "A recipe (.yaml, .yml, .json) or a TorchScript model (never modified)")->required();
  cmd->add_option("--passes", o->overrides.passes, "With a model: passes in order, name<k=v,...>,name,...");
  cmd->add_option("-o,--output", o->output_dir, "Directory for the stages, ledger, tables and plots (created)")->required();
  add_recipe_overrides(cmd, o->overrides);
  cmd->add_flag("--resume", o->resume, "Keep an earlier run's ledger in the directory (done: nothing is redone)");
  cmd->add_flag("--no-measure", o->no_measure, "Apply and write the stages only");
  add_progress_flag(cmd, o->no_progress);
  return {cmd, [o](const Invocation& invocation) { run_pipeline(*o, invocation); }};
}

}  // namespace joulecut::cli
