// compress report: tables and plots from ledgers; merges the shards of a sweep.
#include <cstdio>
#include <filesystem>
#include <sstream>

#include "experiment.h"
#include "joulecut/atomic_file.h"
#include "joulecut/error.h"

namespace joulecut::cli {
namespace {

struct ReportOptions {
  ExperimentCliOptions table;
  std::vector<std::string> ledgers;
  std::string merged;
};

void run_report(const ReportOptions& r) {
  const ExperimentCliOptions& o = r.table;
  const auto merged = measure::merge_ledgers(r.ledgers);
  print_problems(merged.problems);
  if (merged.points.empty())
    throw UserError(r.ledgers.front() + ": no finished point in the ledger" + (r.ledgers.size() > 1 ? "s" : ""));
  if (!r.merged.empty()) {
    std::string text;
    for (const auto& p : merged.points) text += measure::to_ledger_line(p) + "\n";
    write_file_atomic(r.merged, text);
  }
  measure::TradeoffOptions table;
  table.batch = o.batch;
  table.all_stages = o.all_stages;
  table.title = "compress report " + merged.points.front().recipe + " (" + std::to_string(merged.points.size()) + " points)";
  if (!o.output_dir.empty()) {
    std::error_code error;
    std::filesystem::create_directories(o.output_dir, error);
    if (error) throw UserError(o.output_dir + ": cannot create the directory (" + error.message() + ")");
    write_tradeoff_outputs(merged.points, o.output_dir, "tradeoff", table);
  } else {
    std::ostringstream out;
    measure::write_tradeoff(out, merged.points, o.format, table);
    std::fputs(out.str().c_str(), stdout);
  }
  if (!merged.problems.empty())
    throw UserError(std::to_string(merged.problems.size()) + " ledger line(s) skipped (listed above); the table holds the other " +
                    std::to_string(merged.points.size()) + " points");
}

}  // namespace

Command make_report_command(CLI::App& app) {
  auto r = std::make_shared<ReportOptions>();
  auto* cmd = app.add_subcommand("report", "Tables and plots from ledgers (merges the shards of a sweep)");
  cmd->add_option("ledgers", r->ledgers, "ledger.jsonl files of one sweep (its shards)")->required();
  cmd->add_option("-o,--output", r->table.output_dir,
                  "Write tradeoff.{txt,csv,md,tex,json} and tradeoff-{energy,latency}.{svg,png} here");
  cmd->add_option("--format", r->table.format, "Without -o: table, csv, markdown, latex or json on stdout")->capture_default_str();
  cmd->add_option("--table-batch", r->table.batch, "The batch to show (default: the first measured)");
  cmd->add_flag("--all-stages", r->table.all_stages, "Every stage of every point, not only the last");
  cmd->add_option("--merged", r->merged, "Also write the merged ledger here (points in order)");
  return {cmd, [r](const Invocation&) { run_report(*r); }};
}

}  // namespace joulecut::cli
