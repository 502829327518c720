#include "joulecut/measure/tradeoff.h"

#include <fcntl.h>
#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <sstream>

#include "joulecut/atomic_file.h"
#include "joulecut/error.h"
#include "joulecut/text.h"
#include "ratios.h"
#include "table_text.h"

extern char** environ;

namespace joulecut::measure {
namespace {

using table_text::csv_quote;
using table_text::pad;

std::string provenance_text(const EnergyFigure& e) { return e.provenance + " (" + e.source + ")"; }

// The quality a row shows: top-1 accuracy; or, where there is none (data without labels, or
// --metric agreement), top-1 agreement with the point's baseline, which agrees with itself fully.
std::optional<ProportionCI> quality_of(const StageFigures& stage, const LedgerPoint& point) {
  if (stage.accuracy) return stage.accuracy;
  if (stage.agreement) return stage.agreement;
  if (stage.index == 0)
    for (const auto& s : point.stages)
      if (s.agreement) {
        ProportionCI full;
        full.value = full.low = full.high = 1;
        full.successes = full.trials = s.agreement->trials;
        return full;
      }
  return std::nullopt;
}

// True when the rows' quality is agreement rather than accuracy.
bool shows_agreement(const std::vector<TradeoffRow>& rows) {
  for (const auto& r : rows)
    if (!r.stage->accuracy && quality_of(*r.stage, *r.point)) return true;
  return false;
}

// What a row shows, in the units the formats print, read once for every format; the ratios
// come from the row, which computed them.
struct Cells {
  std::string label, config, sha;
  double acc = -1, acc_low = 0, acc_high = 0, delta = 0;
  bool has_acc = false;
  std::string acc_note = "not evaluated";  // why there is none, e.g. "n/a (no data)"
  std::int64_t params = 0, bytes = 0, macs = 0;
  double p50 = 0, p50_low = 0, p50_high = 0;  // ms
  double mj = 0, mj_ci = 0;                   // mJ per inference
  std::string provenance;
  double speedup = 0, energy_ratio = 0, size_ratio = 0;
  bool pareto = false;
  bool wide = false;  // the interval stayed wide after re-measuring
};

Cells cells(const TradeoffRow& row, std::int64_t batch) {
  Cells c;
  c.label = row.label;
  c.config = row.point->label();
  c.sha = row.stage->content_sha256;
  if (const auto q = quality_of(*row.stage, *row.point)) {
    c.has_acc = true;
    c.acc = 100 * q->value;
    c.acc_low = 100 * q->low;
    c.acc_high = 100 * q->high;
    if (const auto base = quality_of(*row.baseline, *row.point)) c.delta = c.acc - 100 * base->value;
  } else if (row.stage->accuracy_data.rfind("n/a", 0) == 0) {
    c.acc_note = row.stage->accuracy_data;
  }
  c.params = row.stage->parameters;
  c.bytes = row.stage->file_bytes;
  c.macs = row.stage->macs_per_inference;
  const BatchFigures* b = row.stage->at_batch(batch);
  JOULECUT_ASSERT(b, "table_batch checked every row");
  c.p50 = b->p50_seconds * 1e3;
  c.p50_low = b->p50_low * 1e3;
  c.p50_high = b->p50_high * 1e3;
  c.mj = b->energy().joules_per_inference.mean * 1e3;
  c.mj_ci = b->energy().joules_per_inference.half_width * 1e3;
  c.provenance = provenance_text(b->energy());
  c.wide = b->quality.wide();
  c.speedup = row.speedup;
  c.energy_ratio = row.energy_ratio;
  c.size_ratio = row.size_ratio;
  c.pareto = row.pareto;
  return c;
}

std::string latex_escape(const std::string& s) {
  std::string out;
  for (char c : s) {
    switch (c) {
      case '_': case '%': case '&': case '#': case '$': case '{': case '}': out += std::string("\\") + c; break;
      case '<': out += "\\textless{}"; break;
      case '>': out += "\\textgreater{}"; break;
      case '~': out += "\\textasciitilde{}"; break;
      case '^': out += "\\textasciicircum{}"; break;
      case '\\': out += "\\textbackslash{}"; break;
      default: out += c;
    }
  }
  return out;
}

std::string markdown_escape(const std::string& s) {
  std::string out;
  for (char c : s) out += (c == '|' || c == '<' || c == '>' || c == '*' || c == '_') ? std::string("\\") + c : std::string(1, c);
  return out;
}

// The distinct energy sources of the rows: "modeled (time x power)", with its detail if asked.
std::vector<std::string> energy_sources(const std::vector<TradeoffRow>& rows, std::int64_t batch, bool with_detail) {
  std::vector<std::string> sources;
  for (const auto& r : rows) {
    const EnergyFigure& e = r.stage->at_batch(batch)->energy();
    const std::string s = provenance_text(e) + (with_detail ? ": " + e.detail : "");
    if (std::find(sources.begin(), sources.end(), s) == sources.end()) sources.push_back(s);
  }
  return sources;
}

// What the ratio columns compare. When every row's baseline is the baseline row (one run, side
// by side), the ratios follow from the printed figures; a ledger of separate runs (compress
// report) compares each row with its own run's baseline, and the note says so.
std::string ratio_note(const std::vector<TradeoffRow>& rows, std::int64_t batch) {
  const BatchFigures* shown = rows.front().stage->at_batch(batch);
  bool common = true;
  for (const auto& r : rows) {
    const BatchFigures* b = r.baseline->at_batch(batch);
    common = common && b->p50_seconds == shown->p50_seconds &&
             b->energy().joules_per_inference.mean == shown->energy().joules_per_inference.mean;
  }
  std::string note = common ? "speed-up (p50) and energy ratio: the baseline row / this row, measured side by side in the same "
                              "run (windows interleaved); > 1 is better."
                            : "speed-up (p50) and energy ratio: each row against its own point's baseline, measured beside it "
                              "in that point's run (in the ledger), not against the baseline row shown (the first point's); "
                              "> 1 is better. `compress sweep` measures a table's rows side by side.";
  note += " Accuracy and p50 intervals: 95% (Wilson; order statistics).";
  for (const auto& r : rows) {
    const MeasurementQuality& q = r.stage->at_batch(batch)->quality;
    if (!q.wide()) continue;
    note += " †: the energy or latency interval stayed wider than +-" + format("%.0f", 100 * q.limit) +
            "% of its mean after the windows were run again (a noisy machine: see other_load in the ledger); treat "
            "that row's figures with care.";
    break;
  }
  return note;
}

// For (cost, accuracy) pairs: true where no other pair is at least as cheap and as accurate,
// and strictly better in one.
std::vector<bool> pareto_front(const std::vector<std::pair<double, double>>& cost_accuracy) {
  std::vector<bool> front(cost_accuracy.size(), true);
  for (std::size_t i = 0; i < cost_accuracy.size(); ++i)
    for (const auto& [cost, accuracy] : cost_accuracy) {
      const auto& [c, a] = cost_accuracy[i];
      if (cost <= c && accuracy >= a && (cost < c || accuracy > a)) front[i] = false;
    }
  return front;
}

void mark_pareto(std::vector<TradeoffRow>& rows, std::int64_t batch) {
  std::vector<std::pair<double, double>> evaluated;
  std::vector<TradeoffRow*> which;
  for (auto& r : rows)
    if (const auto q = quality_of(*r.stage, *r.point)) {
      evaluated.emplace_back(r.stage->at_batch(batch)->energy().joules_per_inference.mean, q->value);
      which.push_back(&r);
    }
  const auto front = pareto_front(evaluated);
  for (std::size_t i = 0; i < which.size(); ++i) which[i]->pareto = front[i];
}

// The ratios every format prints, computed once, when the rows are built: each row against its
// own point's baseline, at `batch`.
void set_ratios(std::vector<TradeoffRow>& rows, std::int64_t batch) {
  for (auto& r : rows) {
    const BatchFigures* b = r.stage->at_batch(batch);
    const BatchFigures* base = r.baseline->at_batch(batch);
    JOULECUT_ASSERT(b && base, "table_batch checked every row");
    r.speedup = speedup(*base, *b);
    r.energy_ratio = energy_ratio(*base, *b).value;
    r.size_ratio = ratios::against(double(r.baseline->file_bytes), double(r.stage->file_bytes));
  }
}

// What every format renders, computed once from a table; the reporters below only format it.
struct TableView {
  std::int64_t batch = 0;
  std::vector<Cells> rows;
  const Manifest* manifest = nullptr;
  std::vector<std::string> sources;  // the energy sources, with their detail
  std::string note, title;
  bool agreement = false;  // the quality shown is agreement with the baseline, not accuracy
};

TableView table_view(const TradeoffTable& tradeoff) {
  TableView v;
  v.batch = tradeoff.batch;
  for (const auto& r : tradeoff.rows) v.rows.push_back(cells(r, tradeoff.batch));
  const LedgerPoint& first = tradeoff.points->front();
  v.manifest = &first.manifest;
  v.sources = energy_sources(tradeoff.rows, tradeoff.batch, /*with_detail=*/true);
  v.note = ratio_note(tradeoff.rows, tradeoff.batch);
  v.title = tradeoff.options.title.empty() ? "joulecut: " + first.recipe : tradeoff.options.title;
  v.agreement = shows_agreement(tradeoff.rows);
  return v;
}

// The console and Markdown tables: their headings and cells, as text.
std::vector<std::string> text_heads(const TableView& v) {
  return {"stage", v.agreement ? "agreement % [95% CI]" : "top-1 % [95% CI]",
          "Δ pt", "params", "size", "MACs/inf",
          "p50 ms [95% CI]", "mJ/inf ± 95% CI", "energy provenance", "speed-up",
          "energy ratio", "Pareto"};
}

std::vector<std::vector<std::string>> text_cells(const TableView& v) {
  std::vector<std::vector<std::string>> table;
  for (std::size_t i = 0; i < v.rows.size(); ++i) {
    const Cells& c = v.rows[i];
    const std::string acc = c.has_acc ? format("%.2f [%.2f, %.2f]", c.acc, c.acc_low, c.acc_high) : c.acc_note;
    const std::string delta = !c.has_acc || i == 0 ? "-" : format("%+.2f", c.delta);
    table.push_back({c.label, acc, delta, human_count(double(c.params)), human_bytes(double(c.bytes)),
                     human_count(double(c.macs)), format("%.3g [%.3g, %.3g]", c.p50, c.p50_low, c.p50_high),
                     format("%.4g ± %.2g", c.mj, c.mj_ci) + (c.wide ? " †" : ""), c.provenance, format("%.2fx", c.speedup),
                     format("%.2fx", c.energy_ratio), c.pareto ? "*" : ""});
  }
  return table;
}

void console_report(std::ostream& out, const TableView& v) {
  const auto heads = text_heads(v);
  const auto table = text_cells(v);
  std::vector<std::size_t> widths(heads.size());
  for (std::size_t i = 0; i < heads.size(); ++i) {
    widths[i] = table_text::shown_width(heads[i]);
    for (const auto& row : table) widths[i] = std::max(widths[i], table_text::shown_width(row[i]));
    widths[i] += 3;
  }
  out << v.title << " (batch " << v.batch << ")\n\n";
  // Right-aligned numbers; a left-aligned column gets its gap on the left.
  auto cell = [&](std::size_t i, const std::string& text) {
    const bool left = i == 0 || i == 8 || i == 11;
    if (left && i > 0) out << "   ";
    pad(out, text, left ? widths[i] - (i > 0 ? 3 : 0) : widths[i], !left);
  };
  for (std::size_t i = 0; i < heads.size(); ++i) cell(i, heads[i]);
  out << "\n";
  for (const auto& row : table) {
    for (std::size_t i = 0; i < row.size(); ++i) cell(i, row[i]);
    out << "\n";
  }
  out << "\n" << v.note << "\nPareto *: no other row is both more accurate and cheaper in energy.\n";
  if (v.agreement)
    out << "agreement: top-1 agreement with the baseline on the same inputs (label-free fidelity; the data has no "
           "labels, or --metric agreement); the baseline agrees with itself fully.\n";
  out << "content sha256 (TorchScript archive without joulecut's metadata):\n";
  for (const auto& c : v.rows) out << "  " << c.sha.substr(0, 16) << "  " << c.label << "\n";
  out << "energy figures:\n";
  for (const auto& source : v.sources) out << "  " << source << "\n";
  out << "\nmanifest:\n";
  for (const auto& [k, value] : v.manifest->entries) out << "  " << k << ": " << value << "\n";
}

void markdown_report(std::ostream& out, const TableView& v) {
  const auto heads = text_heads(v);
  out << "**" << markdown_escape(v.title) << "** (batch " << v.batch << ")\n\n|";
  for (const auto& h : heads) out << " " << h << " |";
  out << "\n|";
  for (std::size_t i = 0; i < heads.size(); ++i) out << (i == 0 || i == 8 ? " --- |" : " ---: |");
  out << "\n";
  for (const auto& row : text_cells(v)) {
    out << "|";
    for (const auto& cell : row) out << " " << markdown_escape(cell) << " |";
    out << "\n";
  }
  out << "\n" << v.note << " Energy: ";
  out << join(v.sources, "; ");
  out << ".\n\n<details><summary>manifest</summary>\n\n";
  for (const auto& [k, value] : v.manifest->entries) out << "- " << k << ": " << markdown_escape(value) << "\n";
  out << "\n</details>\n";
}

void csv_report(std::ostream& out, const TableView& v) {
  for (const auto& [k, value] : v.manifest->entries) out << "# " << k << ": " << value << "\n";
  if (v.agreement) out << "# accuracy_pct: top-1 agreement with the baseline (data without labels)\n";
  out << "stage,config,batch,accuracy_pct,accuracy_ci95_low,accuracy_ci95_high,delta_accuracy_pt,parameters,file_bytes,"
         "macs_per_inf,p50_ms,p50_ci95_low_ms,p50_ci95_high_ms,energy_mj_per_inf,energy_ci95_mj,energy_provenance,"
         "speedup,energy_ratio,size_ratio,pareto,content_sha256\n";
  for (const auto& c : v.rows) {
    out << csv_quote(c.label) << ',' << csv_quote(c.config) << ',' << v.batch << ',';
    if (c.has_acc) out << c.acc << ',' << c.acc_low << ',' << c.acc_high << ',' << c.delta << ',';
    else out << ",,,,";
    out << c.params << ',' << c.bytes << ',' << c.macs << ',' << c.p50 << ',' << c.p50_low << ',' << c.p50_high << ','
        << c.mj << ',' << c.mj_ci << ',' << csv_quote(c.provenance) << ',' << c.speedup << ',' << c.energy_ratio << ','
        << c.size_ratio << ',' << (c.pareto ? 1 : 0) << ',' << c.sha << "\n";
  }
}

// booktabs, ready for \input inside a table environment.
void latex_report(std::ostream& out, const TableView& v) {
  out << "% " << v.title << " (batch " << v.batch << "); generated by joulecut, do not edit.\n";
  for (const auto& [k, value] : v.manifest->entries) out << "% " << k << ": " << value << "\n";
  out << "\\begin{tabular}{lrrrrrrrrr}\n\\toprule\n"
      << "Stage & Top-1 (\\%) & $\\Delta$ (pt) & Params & Size & MACs & p50 (ms) & Energy (mJ/inf) & Speed-up & Energy ratio \\\\\n"
      << "\\midrule\n";
  for (std::size_t i = 0; i < v.rows.size(); ++i) {
    const Cells& c = v.rows[i];
    out << latex_escape(c.label) << " & "
        << (c.has_acc ? format("%.2f {\\scriptsize [%.2f, %.2f]}", c.acc, c.acc_low, c.acc_high) : std::string("--")) << " & "
        << (i == 0 || !c.has_acc ? std::string("--") : format("%+.2f", c.delta)) << " & " << latex_escape(human_count(double(c.params)))
        << " & " << latex_escape(human_bytes(double(c.bytes))) << " & " << latex_escape(human_count(double(c.macs))) << " & "
        << format("%.3g {\\scriptsize [%.3g, %.3g]}", c.p50, c.p50_low, c.p50_high) << " & "
        << format("%.4g $\\pm$ %.2g", c.mj, c.mj_ci) << (c.wide ? "$^\\dagger$" : "") << " & " << format("%.2f$\\times$", c.speedup) << " & "
        << format("%.2f$\\times$", c.energy_ratio) << " \\\\\n";
  }
  out << "\\bottomrule\n\\end{tabular}\n% energy: ";
  out << join(v.sources, "; ");
  out << "\n% " << v.note << "\n";
}

void json_report(std::ostream& out, const TableView& v) {
  using json = nlohmann::ordered_json;
  json jrows = json::array();
  for (std::size_t i = 0; i < v.rows.size(); ++i) {
    const Cells& c = v.rows[i];
    json row = {{"stage", c.label}, {"config", c.config}, {"batch", v.batch},
                {"quality", v.agreement ? "top-1 agreement with the baseline" : "top-1 accuracy"}};
    row["accuracy_pct"] = c.has_acc ? json{{"value", c.acc}, {"ci95", {c.acc_low, c.acc_high}}} : json(nullptr);
    row["delta_accuracy_pt"] = c.has_acc && i > 0 ? json(c.delta) : json(nullptr);
    row["parameters"] = c.params;
    row["file_bytes"] = c.bytes;
    row["macs_per_inference"] = c.macs;
    row["p50_ms"] = {{"value", c.p50}, {"ci95", {c.p50_low, c.p50_high}}};
    row["energy_mj_per_inference"] = {{"mean", c.mj}, {"ci95_half_width", c.mj_ci}, {"provenance", c.provenance}};
    row["wide_interval"] = c.wide;
    row["speedup"] = c.speedup;
    row["energy_ratio"] = c.energy_ratio;
    row["size_ratio"] = c.size_ratio;
    row["pareto"] = c.pareto;
    row["content_sha256"] = c.sha;
    jrows.push_back(row);
  }
  json jmanifest = json::object();
  for (const auto& [k, value] : v.manifest->entries) jmanifest[k] = value;
  out << json{{"title", v.title}, {"batch", v.batch}, {"rows", jrows}, {"note", v.note}, {"manifest", jmanifest}}.dump(2)
      << "\n";
}

}  // namespace

std::vector<TradeoffRow> tradeoff_rows(const std::vector<LedgerPoint>& points, const TradeoffOptions& options) {
  JOULECUT_ASSERT(!points.empty(), "tradeoff_rows needs at least one point");
  std::vector<TradeoffRow> rows;
  const LedgerPoint& first = points.front();
  rows.push_back({"baseline", &first, &first.stages.front(), &first.stages.front(), false});
  const bool every_stage = points.size() == 1 || options.all_stages;
  for (const auto& p : points) {
    for (std::size_t s = 1; s < p.stages.size(); ++s) {
      if (!every_stage && s + 1 != p.stages.size()) continue;
      std::string label;
      if (points.size() == 1) label = std::to_string(s) + " " + p.stages[s].name;
      else if (every_stage) label = "#" + std::to_string(p.index) + " " + p.label() + " / " + std::to_string(s) + " " + p.stages[s].name;
      else label = "#" + std::to_string(p.index) + " " + p.label();
      rows.push_back({label, &p, &p.stages[s], &p.stages.front(), false});
    }
  }
  const std::int64_t batch = table_batch(rows, options);
  mark_pareto(rows, batch);
  set_ratios(rows, batch);
  return rows;
}

std::int64_t table_batch(const std::vector<TradeoffRow>& rows, const TradeoffOptions& options) {
  std::int64_t batch = options.batch;
  if (batch == 0) {
    if (rows.front().stage->batches.empty())
      throw UserError("the ledger has no latency or energy figures (run without " +
                      option_ref("SweepOptions::measure") + ")");
    batch = rows.front().stage->batches.front().batch;
  }
  for (const auto& r : rows)
    if (!r.stage->at_batch(batch) || !r.baseline->at_batch(batch))
      throw UserError("'" + r.label + "' was not measured at batch " + std::to_string(batch) +
                      " (choose a batch the recipe measured)");
  return batch;
}

TradeoffTable tradeoff_table(const std::vector<LedgerPoint>& points, const TradeoffOptions& options) {
  TradeoffTable table{&points, options, tradeoff_rows(points, options), 0};
  table.batch = table_batch(table.rows, options);
  return table;
}

void write_tradeoff(std::ostream& out, const std::vector<LedgerPoint>& points, const std::string& format,
                    const TradeoffOptions& options) {
  write_tradeoff(out, tradeoff_table(points, options), format);
}

// One reporter per format, each rendering the same view of the table.
void write_tradeoff(std::ostream& out, const TradeoffTable& tradeoff, const std::string& format) {
  using Reporter = void (*)(std::ostream&, const TableView&);
  static const std::pair<const char*, Reporter> reporters[] = {{"table", console_report},
                                                               {"csv", csv_report},
                                                               {"markdown", markdown_report},
                                                               {"latex", latex_report},
                                                               {"json", json_report}};
  for (const auto& [name, reporter] : reporters)
    if (format == name) return reporter(out, table_view(tradeoff));
  throw UserError(option_ref("format") + " '" + format + "': choose table, csv, markdown, latex or json");
}

namespace {

std::string gnuplot_quote(const std::string& s) {
  std::string out = "\"";
  for (char c : s) {
    if (c == '"' || c == '\\') out += '\\';
    out += c;
  }
  return out + "\"";
}

void run_gnuplot(const std::string& script_path, const std::string& log_path) {
  posix_spawn_file_actions_t actions;
  posix_spawn_file_actions_init(&actions);
  posix_spawn_file_actions_addopen(&actions, 1, log_path.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
  posix_spawn_file_actions_adddup2(&actions, 1, 2);
  std::vector<char*> argv = {const_cast<char*>("gnuplot"), const_cast<char*>(script_path.c_str()), nullptr};
  pid_t pid = 0;
  const int spawned = posix_spawnp(&pid, "gnuplot", &actions, nullptr, argv.data(), environ);
  posix_spawn_file_actions_destroy(&actions);
  if (spawned != 0)
    throw UserError("plots need gnuplot, which is not installed (Debian package gnuplot-nox; scripts/setup installs it)");
  int status = 0;
  while (waitpid(pid, &status, 0) < 0 && errno == EINTR) {
  }
  if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) {
    std::ifstream log(log_path);
    std::string first;
    std::getline(log, first);
    throw UserError("gnuplot failed on " + script_path + ": " + first);
  }
}

}  // namespace

bool has_quality(const TradeoffTable& table) {
  for (const auto& r : table.rows)
    if (quality_of(*r.stage, *r.point)) return true;
  return false;
}

std::vector<std::string> write_tradeoff_plots(const std::vector<LedgerPoint>& points, const std::string& prefix,
                                              const TradeoffOptions& options) {
  return write_tradeoff_plots(tradeoff_table(points, options), prefix);
}

std::vector<std::string> write_tradeoff_plots(const TradeoffTable& tradeoff, const std::string& prefix) {
  const auto& points = *tradeoff.points;
  const auto& options = tradeoff.options;
  const auto& rows = tradeoff.rows;
  const std::int64_t batch = tradeoff.batch;
  // Data: one line per evaluated row.
  std::vector<Cells> shown;
  std::vector<std::string> lines;
  for (std::size_t i = 0; i < rows.size(); ++i) {
    const Cells c = cells(rows[i], batch);
    if (!c.has_acc) continue;
    const std::string label = rows.size() <= 8 ? c.label : (i == 0 ? "baseline" : "#" + std::to_string(rows[i].point->index));
    std::string short_label = label.size() > 40 ? label.substr(0, 37) + "..." : label;
    for (char& ch : short_label)
      if (ch == '"') ch = '\'';
    lines.push_back(format("%.9g %.9g %.9g ", c.mj, c.mj_ci, c.acc) + format("%.9g %.9g %.9g ", c.acc_low, c.acc_high, c.p50) +
                    format("%.9g %.9g ", c.p50_low, c.p50_high) + (i == 0 ? "1 " : "0 ") + "\"" + short_label + "\"\n");
    shown.push_back(c);
  }
  if (shown.empty()) throw UserError("no accuracy figures to plot (the ledger's points were not evaluated)");
  std::string data;
  for (const auto& l : lines) data += l;
  // The Pareto front of accuracy against x (energy or latency), sorted by x.
  auto front_of = [&](bool energy) {
    std::vector<std::pair<double, double>> cost_accuracy;
    for (const auto& c : shown) cost_accuracy.emplace_back(energy ? c.mj : c.p50, c.acc);
    const auto on_front = pareto_front(cost_accuracy);
    std::vector<std::pair<double, std::string>> front;
    for (std::size_t i = 0; i < shown.size(); ++i)
      if (on_front[i]) front.emplace_back(cost_accuracy[i].first, lines[i]);
    std::sort(front.begin(), front.end());
    std::string out;
    for (const auto& f : front) out += f.second;
    return out;
  };

  const std::filesystem::path dir = std::filesystem::path(prefix).parent_path();
  if (!dir.empty() && !std::filesystem::is_directory(dir))
    throw UserError(prefix + ": cannot write plots: directory " + dir.string() + " does not exist");
  const std::string work = prefix + ".plot-" + std::to_string(::getpid());
  std::filesystem::create_directories(work);
  struct Cleanup {
    std::string path;
    ~Cleanup() {
      std::error_code ignored;
      std::filesystem::remove_all(path, ignored);
    }
  } cleanup{work};
  const std::string data_path = work + "/points.dat", front_path = work + "/front.dat";
  std::ofstream(data_path) << data;

  const std::string sources = join(energy_sources(rows, batch, /*with_detail=*/false), "; ");
  const std::string energy_label = "energy per inference (mJ), " + sources;
  const std::string title = (options.title.empty() ? points.front().recipe : options.title) + ", batch " + std::to_string(batch);
  std::vector<std::string> written;
  for (const std::string kind : {"energy", "latency"}) {
    const bool energy = kind == "energy";
    // x, x error low/high, y, y low/high columns of points.dat.
    const std::string x = energy ? "1" : "6", xlow = energy ? "($1-$2)" : "7", xhigh = energy ? "($1+$2)" : "8";
    std::ofstream(front_path) << front_of(energy);
    for (const std::string ext : {"svg", "png"}) {
      const std::string target = prefix + "-" + kind + "." + ext;
      const std::string temp = work + "/out." + ext;
      std::ostringstream gp;
      gp << (ext == "svg" ? "set terminal svg size 900,600 dynamic font 'sans,13' background rgb 'white'\n"
                          : "set terminal pngcairo size 1200,800 font 'sans,13' background rgb 'white'\n")
         << "set termoption noenhanced\n"
         << "set output " << gnuplot_quote(temp) << "\n"
         << "set title " << gnuplot_quote(title) << "\n"
         << "set xlabel " << gnuplot_quote(energy ? energy_label : "latency per batch, p50 (ms), 95% CI of the median") << "\n"
         << "set ylabel "
         << gnuplot_quote(shows_agreement(rows) ? "top-1 agreement with the baseline (%), 95% Wilson CI"
                                                : "top-1 accuracy (%), 95% Wilson CI")
         << "\n"
         << "set grid\nset key outside bottom center horizontal\nset offsets graph 0.08, graph 0.3, graph 0.08, graph 0.08\n"
         << "set yrange [0<*:*<100]\nset xrange [0<*:*]\n"
         << "plot " << gnuplot_quote(data_path) << " using " << x << ":3:" << xlow << ":" << xhigh
         << ":4:5 with xyerrorbars pt 7 ps 1.2 lc rgb '#1f77b4' title "
         << gnuplot_quote(energy ? "configurations (energy " + sources + ")"
                                 : "configurations (latency measured)")
         << ", \\\n  " << gnuplot_quote(data_path) << " using " << x << ":($9==1?$3:1/0) with points pt 5 ps 1.8 lc rgb '#d62728' title 'baseline'"
         << ", \\\n  " << gnuplot_quote(front_path) << " using " << x << ":3 with lines lw 2 dt 2 lc rgb '#2ca02c' title "
         << gnuplot_quote(energy ? "Pareto front (accuracy vs energy)" : "Pareto front (accuracy vs latency)")
         << ", \\\n  " << gnuplot_quote(data_path) << " using " << x << ":3:10 with labels offset char 1,char 0.8 left font ',10' notitle\n"
         << "unset output\n";
      const std::string script = work + "/plot.gp";
      std::ofstream(script) << gp.str();
      run_gnuplot(script, work + "/gnuplot.log");
      std::ifstream produced(temp, std::ios::binary);
      std::stringstream bytes;
      bytes << produced.rdbuf();
      if (bytes.str().empty()) throw UserError("gnuplot wrote nothing for " + target);
      write_file_atomic(target, bytes.str());
      written.push_back(target);
    }
  }
  return written;
}

}  // namespace joulecut::measure
