// compress compare: several models measured side by side, windows interleaved, ratios against
// the first. The flags are compress measure's.
#include "options.h"

namespace joulecut::cli {

Command make_compare_command(CLI::App& app) {
  auto options = std::make_shared<MeasureCliOptions>();
  auto* cmd = app.add_subcommand("compare", "Measure several models side by side, windows interleaved, ratios against the first");
  cmd->add_option("models", options->job.models, "TorchScript files; the first is the baseline")->required()->expected(2, 1000);
  add_measure_options(cmd, *options);
  return {cmd, [options](const Invocation& invocation) { run_measure(*options, invocation); }};
}

}  // namespace joulecut::cli
