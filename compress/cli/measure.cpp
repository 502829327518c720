// compress measure: latency, throughput, accuracy, size and energy per inference of a model,
// with provenance and 95% CIs. Its flags are shared with compress compare.
#include <cstdio>
#include <iostream>
#include <sstream>

#include "joulecut/atomic_file.h"
#include "joulecut/error.h"
#include "joulecut/measure/report.h"
#include "joulecut/platform.h"
#include "joulecut/threads.h"
#include "options.h"

namespace joulecut::cli {

void run_measure(MeasureCliOptions options, const Invocation& invocation) {
  apply_threads(invocation.threads);
  if (blas_in_use().is_reference())
    throw UserError("refusing to measure on the reference BLAS: it would fake the fp32 baseline; install "
                    "libopenblas0-pthread (scripts/setup)");
  options.job.batches = parse_batches(options.batches);
  options.job.optimize = !options.no_optimize;
  options.job.progress = !options.no_progress;
  if (options.cpu_watts > 0) options.job.run.cpu_watts = options.cpu_watts;
  if (options.format != "table" && options.format != "csv" && options.format != "json")
    throw UserError("--format '" + options.format + "': choose table, csv or json");
  for (const auto& m : options.job.models)
    for (const auto* out : {&options.output, &options.json_output})
      if (!out->empty()) refuse_to_overwrite_input(m, *out);
  const auto report = measure::measure_files(options.job);
  std::ostringstream text;
  measure::write_report(text, report, options.format);
  if (options.output.empty()) {
    std::cout << text.str();
  } else {
    write_file_atomic(options.output, text.str());
    std::fprintf(stderr, "wrote %s\n", options.output.c_str());
  }
  if (!options.json_output.empty()) {
    std::ostringstream json_text;
    measure::write_report(json_text, report, "json");
    write_file_atomic(options.json_output, json_text.str());
    std::fprintf(stderr, "wrote %s\n", options.json_output.c_str());
  }
  std::cout.flush();
  print_harm_warnings(report);
}

void add_measure_options(CLI::App* app, MeasureCliOptions& o) {
  auto& run = o.job.run;
  add_data_options(app, o.job.data);
  app->add_option("--device", run.device, "cpu, cuda or cuda:N")->capture_default_str();
  app->add_option("--batch", o.batches, "Batch sizes, comma-separated")->capture_default_str();
  app->add_option("--metric", o.job.metric,
                  "Quality: top1 (accuracy, needs labels), agreement|cosine|snr (fidelity of each model against the "
                  "first on the same inputs, label-free), or auto (accuracy; fidelity too for data without labels)")
      ->capture_default_str();
  app->add_option("--meter", run.meter,
                  "Energy meter: auto (NVML for cuda, RAPL for cpu; says which ran and why), rapl, nvml, or "
                  "model (modeled only)")
      ->capture_default_str();
  app->add_option("--windows", run.windows, "Measurement windows (mean and 95% CI over them)")
      ->capture_default_str()
      ->check(CLI::Range(2, 100000));
  app->add_option("--min-window", run.min_window_seconds,
                  "Minimum window length in seconds (raised to 20 meter update periods)")
      ->capture_default_str();
  app->add_option("--warmup", run.warmup_seconds, "Warm-up seconds per model before measuring")->capture_default_str();
  app->add_option("--idle", run.idle_seconds, "Measure idle power for this many seconds first and also report net energy")
      ->capture_default_str();
  app->add_option("--cpu-watts", o.cpu_watts, "CPU power at full load for the time x power model (e.g. its TDP)");
  app->add_option("--energy-constants", run.energy_constants,
                  "JSON file of energy per op / per byte (default: Horowitz ISSCC 2014, measure/data/energy_per_op.json)");
  app->add_option("--rapl-root", run.rapl.root, "powercap sysfs root")->capture_default_str();
  app->add_option("--rapl-domains", run.rapl.domains, "package+dram, package or psys")->capture_default_str();
  app->add_option("--nvml-library", run.nvml.library, "NVML library to dlopen")->capture_default_str();
  app->add_flag("--no-optimize", o.no_optimize,
                "Measure the plain module (default: frozen + optimize_for_inference, as deployed)");
  app->add_option("--accuracy-limit", o.job.accuracy_limit, "Test images for accuracy (0: all, -1: skip)")
      ->capture_default_str();
  app->add_option("--format", o.format, "table, csv or json")->capture_default_str();
  app->add_option("-o,--output", o.output, "Write the report to this file (atomically) instead of stdout");
  app->add_option("--json", o.json_output, "Also write this run's report as JSON to this file (atomically)");
  app->add_flag("--no-progress", o.no_progress, "No progress bar");
}

Command make_measure_command(CLI::App& app) {
  auto options = std::make_shared<MeasureCliOptions>();
  auto* cmd = app.add_subcommand(
      "measure", "Latency, throughput, accuracy, size and energy per inference (with provenance and 95% CIs)");
  cmd->add_option("model", options->job.models, "TorchScript file")->required()->expected(1);
  add_measure_options(cmd, *options);
  return {cmd, [options](const Invocation& invocation) { run_measure(*options, invocation); }};
}

}  // namespace joulecut::cli
