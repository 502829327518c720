// compress sensitivity: each layer pruned alone at several levels; accuracy and modeled
// energy per layer, as a table, CSV and plot.
#include <cstdio>
#include <filesystem>
#include <iostream>
#include <sstream>

#include "joulecut/atomic_file.h"
#include "joulecut/error.h"
#include "joulecut/evaluate.h"
#include "joulecut/model.h"
#include "joulecut/sensitivity.h"
#include "options.h"

namespace joulecut::cli {
namespace {

struct SensitivityCliOptions {
  std::string model, plot, csv, levels = "0.25,0.5,0.75,0.9";
  SensitivityOptions sensitivity;
  DataSource data;
  std::int64_t limit = 0;
  bool no_progress = false;
};

std::vector<double> parse_levels(const std::string& text) {
  std::vector<double> levels;
  std::stringstream in(text);
  for (std::string item; std::getline(in, item, ',');) {
    try {
      std::size_t used = 0;
      levels.push_back(std::stod(item, &used));
      if (used != item.size()) throw std::invalid_argument(item);
    } catch (const std::exception&) {
      throw UserError("--levels: '" + item + "' is not a number (give e.g. 0.25,0.5,0.75,0.9)");
    }
  }
  return levels;
}

void run_sensitivity(SensitivityCliOptions o, const Invocation& invocation) {
  apply_threads(invocation.threads);
  for (const auto* out : {&o.plot, &o.csv})
    if (!out->empty()) refuse_to_overwrite_input(o.model, *out);
  o.sensitivity.levels = parse_levels(o.levels);
  o.sensitivity.progress = !o.no_progress;
  auto loaded = load_model(o.model);
  std::optional<DatasetSpec> spec;
  if (loaded.metadata) spec = loaded.metadata->dataset;
  auto data = take_first(load_dataset(o.data, Split::test, spec), o.limit);
  check_model_accepts(loaded.module, data, o.model);
  const auto report = analyze_sensitivity(loaded.module, data, o.sensitivity);
  write_sensitivity_table(std::cout, report);
  const std::string name = std::filesystem::path(o.model).filename().string();
  if (!o.plot.empty()) {
    write_file_atomic(o.plot, sensitivity_svg(report, "Pruning sensitivity of " + name + " (" + report.method +
                                                          ", one layer at a time)"));
    std::printf("wrote %s\n", o.plot.c_str());
  }
  if (!o.csv.empty()) {
    std::ostringstream csv;
    write_sensitivity_csv(csv, report);
    write_file_atomic(o.csv, csv.str());
    std::printf("wrote %s\n", o.csv.c_str());
  }
}

}  // namespace

Command make_sensitivity_command(CLI::App& app) {
  auto o = std::make_shared<SensitivityCliOptions>();
  auto* cmd = app.add_subcommand(
      "sensitivity", "Prune each layer alone at several levels: accuracy and modeled energy per layer, table and plot");
  cmd->add_option("model", o->model, "TorchScript file (never modified)")->required();
  cmd->add_option("--method", o->sensitivity.method, "magnitude (each layer's sparsity) or channel (each group's channels removed)")
      ->capture_default_str();
  cmd->add_option("--levels", o->levels, "Comma-separated levels in [0, 1)")->capture_default_str();
  cmd->add_option("--limit", o->limit, "Evaluate on the first N test images only (0: all)")->capture_default_str();
  cmd->add_option("--plot", o->plot, "Write the accuracy-against-level plot here (SVG)");
  cmd->add_option("--csv", o->csv, "Write the table here as CSV");
  add_progress_flag(cmd, o->no_progress);
  add_data_options(cmd, o->data);
  return {cmd, [o](const Invocation& invocation) { run_sensitivity(*o, invocation); }};
}

}  // namespace joulecut::cli
