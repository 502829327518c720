#pragma once
// Internal to the compress command: what several subcommands share, defined once. Each
// subcommand lives in its own file (cli/<command>.cpp) and registers itself through a
// make_<command>_command() function that main.cpp calls.
#include <CLI/CLI.hpp>
#include <nlohmann/json.hpp>

#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "joulecut/data.h"
#include "joulecut/measure/measure_files.h"
#include "joulecut/measure/report.h"
#include "joulecut/pass.h"

namespace joulecut::cli {

using json = nlohmann::json;

// What every subcommand gets besides its own options.
struct Invocation {
  std::string command_line;  // "compress prune ...", recorded in the outputs' provenance
  int threads = 0;           // --threads (0: all logical cores)
};

// A registered subcommand: its parser and what to run when it is chosen.
struct Command {
  CLI::App* app;
  std::function<void(const Invocation&)> run;
};

// ---- option groups --------------------------------------------------------------------------
// --data, --images, --labels, and the input flags below.
void add_data_options(CLI::App* app, DataSource& data);
// --input-shape, --input-dtype, --input-range, and --model-output unless !with_output (joulecut/model_input.h).
void add_input_options(CLI::App* app, DataSource& data, bool with_output = true);

// The before/after measurement that prune, quantize and distill print.
struct AfterMeasurement {
  std::string batches;  // "64" or "1,64"
  int windows = 5;
  bool no_measure = false;
  std::string device = "cpu";  // cpu, cuda or cuda:N
};
// --batch (or `batch_flag`), --windows, --no-measure, --device.
void add_after_measurement(CLI::App* app, AfterMeasurement& m, const std::string& batch_flag = "--batch");

void add_progress_flag(CLI::App* app, bool& no_progress);

// Flags for the options of the passes `passes`, generated from their option tables: each
// option once (--NAME), its help prefixed by the passes that have it when not all do, its
// default from the first pass that has it (or `defaults`). A given flag lands in `given`
// as text, read later by the pass's own parser, so flags and pipeline text are checked alike.
// `skip`: options the command exposes its own way. `labels`: pass name -> word for the help.
struct PassFlags {
  std::vector<std::string> passes;
  std::map<std::string, std::string> labels;    // "prune-nm" -> "nm"
  std::map<std::string, std::string> defaults;  // option -> the command's own default
  std::vector<std::string> skip;
  std::string prefix;  // before every option's help, e.g. "With --sparse-runtime: "
};
void add_pass_flags(CLI::App* app, const PassFlags& flags, PassOptionMap& given);
// `given`, checked against `pass`: throws UserError naming the first flag the pass does not have
// ("--ratio does not apply to --method magnitude"; `what` names the choice).
PassOptionMap options_for(const std::string& pass, const PassOptionMap& given, const std::string& what);

// Every pass with each option's default and help, for the footers of run/prune/quantize.
std::string passes_help();

// ---- errors -----------------------------------------------------------------------------------
// The flag (or command) that sets a library option named in an error (joulecut::option_ref):
// "DataSource::train_data" -> "--train-data", "max-accuracy-drop" -> "--max-accuracy-drop".
std::string flag_for_option(const std::string& library_name);

// ---- shared steps -----------------------------------------------------------------------------
// Sets LibTorch's threads (BLAS pinned to one) and warns when the reference BLAS is loaded.
void apply_threads(int threads);
// The runtime facts every JSON output records.
json runtime_json();
// "1,64" -> {1, 64}; throws UserError naming --batch.
std::vector<std::int64_t> parse_batches(const std::string& text);
// Before any work: the output's directory must exist ...
void check_writable(const std::string& output);
// ... and the output must not be the input.
void check_output(const std::string& model, const std::string& output);
// A pass's per-layer report: sparsity (%), channel counts, or latency (us), as the pass says.
void print_pass_report(const PassReport& report);
void print_problems(const std::vector<std::string>& problems);
// The harm warnings' limits for models made by `passes`: a guarded quantize-static's own
// (min-cosine; max-accuracy-drop, else max-agreement-drop), so that the report warns where the
// user's budget does; the defaults otherwise (a guard turned off does not quiet them).
measure::HarmLimits harm_limits_for(const std::vector<std::unique_ptr<Pass>>& passes);
// Measures `models` side by side (windows interleaved, ratios against the first) and prints the
// table, then, on stderr, each model the report finds far from the first (harm_warnings).
void measure_side_by_side(const std::vector<std::string>& models, const DataSource& data,
                          const AfterMeasurement& measurement, bool progress,
                          const measure::HarmLimits& harm_limits = {});
void print_harm_warnings(const measure::Report& report);

// Loads a model, runs passes in order, writes the result atomically with its provenance,
// prints each pass's report, then measures before and after through the harness.
struct ApplyJob {
  std::string model, output;
  std::uint64_t seed = 1;
  bool progress = true;
  AfterMeasurement measurement;
  DataSource data;
};
void apply_and_measure(const std::vector<std::unique_ptr<Pass>>& passes, const ApplyJob& job, const std::string& command);

// ---- measure and compare ---------------------------------------------------------------------
struct MeasureCliOptions {
  measure::MeasureJob job;
  std::string format = "table";
  std::string output;
  std::string json_output;  // the same run's report as JSON too
  std::string batches = "1,64";
  double cpu_watts = 0;
  bool no_optimize = false;
  bool no_progress = false;
};
void add_measure_options(CLI::App* app, MeasureCliOptions& options);
void run_measure(MeasureCliOptions options, const Invocation& invocation);

// ---- the subcommands (one file each) ---------------------------------------------------------
Command make_info_command(CLI::App& app);
Command make_eval_command(CLI::App& app);
Command make_train_command(CLI::App& app);
Command make_measure_command(CLI::App& app);
Command make_compare_command(CLI::App& app);
Command make_prune_command(CLI::App& app);
Command make_quantize_command(CLI::App& app);
Command make_distill_command(CLI::App& app);
Command make_run_command(CLI::App& app);
Command make_sweep_command(CLI::App& app);
Command make_search_command(CLI::App& app);
Command make_report_command(CLI::App& app);
Command make_calibrate_command(CLI::App& app);
Command make_sensitivity_command(CLI::App& app);
Command make_data_command(CLI::App& app);

}  // namespace joulecut::cli
