// compress prune: one pruning pass (magnitude, N:M, channel or heads), optional fine-tuning and sparse
// lowering, then the model measured before and after. The pass flags come from the passes'
// option tables.
#include "joulecut/error.h"
#include "joulecut/prune.h"
#include "options.h"

namespace joulecut::cli {
namespace {

const std::map<std::string, std::string> kMethods = {
    {"magnitude", MagnitudePrunePass::kName}, {"nm", NMPrunePass::kName}, {"channel", ChannelPrunePass::kName}, {"heads", HeadPrunePass::kName}};

struct PruneCliOptions {
  std::string model, output, method = "magnitude";
  PassOptionMap pass_options, lowering_options;
  std::uint64_t seed = 1;
  DataSource data;
  AfterMeasurement measurement{"64"};
  bool no_progress = false;
  bool sparse_runtime = false;
};

void run_prune(const PruneCliOptions& o, const Invocation& invocation) {
  apply_threads(invocation.threads);
  check_output(o.model, o.output);
  const auto method = kMethods.find(o.method);
  if (method == kMethods.end()) throw UserError("--method '" + o.method + "': choose magnitude, nm, channel or heads");
  std::vector<std::unique_ptr<Pass>> passes;
  passes.push_back(make_pass(method->second, options_for(method->second, o.pass_options, "--method " + o.method)));
  if (o.sparse_runtime) {
    PassOptionMap lowering = o.lowering_options;
    lowering["batch"] = std::to_string(parse_batches(o.measurement.batches).front());
    passes.push_back(make_pass(LowerSparsePass::kName, lowering));
  } else if (!o.lowering_options.empty()) {
    throw UserError("--" + o.lowering_options.begin()->first + " applies with --sparse-runtime only");
  }
  apply_and_measure(passes, {o.model, o.output, o.seed, !o.no_progress, o.measurement, o.data}, invocation.command_line);
}

}  // namespace

Command make_prune_command(CLI::App& app) {
  auto o = std::make_shared<PruneCliOptions>();
  auto* cmd = app.add_subcommand("prune", "Prune a model, optionally fine-tune, then measure before and after");
  cmd->footer("Passes (also usable in pipelines):\n" + describe_passes());
  cmd->add_option("model", o->model, "TorchScript file (never modified)")->required();
  cmd->add_option("-o,--output", o->output, "Pruned TorchScript file (written atomically)")->required();
  cmd->add_option("--method", o->method,
                  "magnitude (unstructured L1), nm (N:M along the input dimension), channel (structured: layers "
                  "shrink) or heads (transformers: attention heads and MLP neurons)")
      ->capture_default_str();
  PassFlags flags;
  for (const auto& [label, pass] : kMethods) {
    flags.passes.push_back(pass);
    flags.labels[pass] = label;
  }
  add_pass_flags(cmd, flags, o->pass_options);
  cmd->add_option("--seed", o->seed, "Seed for fine-tuning")->capture_default_str();
  add_data_options(cmd, o->data);
  add_after_measurement(cmd, o->measurement);
  cmd->add_flag("--sparse-runtime", o->sparse_runtime,
                "Then run sparse Linear layers on joulecut::sparse_linear where timed faster at the first --batch");
  add_pass_flags(cmd, {{LowerSparsePass::kName}, {}, {}, {"min-sparsity", "batch", "include", "exclude"}, "With --sparse-runtime: "},
                 o->lowering_options);
  add_progress_flag(cmd, o->no_progress);
  return {cmd, [o](const Invocation& invocation) { run_prune(*o, invocation); }};
}

}  // namespace joulecut::cli
