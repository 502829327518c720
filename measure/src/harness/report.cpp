#include "joulecut/measure/report.h"

#include <algorithm>
#include <nlohmann/json.hpp>

#include <cmath>
#include <cstdio>

#include "joulecut/error.h"
#include "joulecut/measure/runner.h"
#include "joulecut/text.h"
#include "core/quality_json.h"
#include "core/ratios.h"
#include "core/table_text.h"

namespace joulecut::measure {
namespace {

using table_text::csv_quote;
using table_text::pad;

// Energy per inference in millijoules with its 95% CI half-width.
std::string mj(const MeanCI& v) {
  if (v.n <= 1) return format("%.4g", v.mean * 1e3);
  return format("%.4g ± %.2g", v.mean * 1e3, v.half_width * 1e3);
}

const RunResult* baseline_for(const Report& report, const RunResult& run) {
  if (report.models.empty()) return nullptr;
  for (const auto& r : report.runs)
    if (r.label == report.models.front().label && r.batch == run.batch) return &r;
  return nullptr;
}

std::optional<double> meter_mean(const RunResult& run) {
  return run.measured ? std::optional<double>(run.measured->joules_per_inference.mean) : std::nullopt;
}

// One run as every reporter shows it, with its ratios against the baseline's run at the same
// batch computed once, here; the reporters only format them.
struct RunRow {
  const RunResult* run = nullptr;
  const ModelSummary* model = nullptr;  // the model of the run's label; null when none
  bool has_baseline = false;            // the baseline ran at this batch
  double speedup = 0;                   // p50, baseline / this; 0 when unknown
  ratios::Energy energy;                // the like-with-like rule; value 0 when unknown
};

std::vector<RunRow> run_rows(const Report& report) {
  std::vector<RunRow> rows;
  for (const auto& r : report.runs) {
    RunRow row;
    row.run = &r;
    for (const auto& m : report.models)
      if (m.label == r.label) row.model = &m;
    if (const RunResult* base = baseline_for(report, r)) {
      row.has_baseline = true;
      row.speedup = ratios::speedup(base->p50_seconds, r.p50_seconds);
      row.energy = ratios::energy(meter_mean(*base), base->modeled_time_power.joules_per_inference.mean, meter_mean(r),
                                  r.modeled_time_power.joules_per_inference.mean);
    }
    rows.push_back(row);
  }
  return rows;
}

// A ratio as the console table prints it: "-" when unknown.
std::string ratio_text(double ratio) { return ratio > 0 ? format("%.2fx", ratio) : "-"; }

}  // namespace

// Per batch: window sets discarded as too noisy, intervals still wide, and what else used the
// CPUs while the kept windows ran.
std::string measurement_quality(const Report& report) {
  std::ostringstream out;
  std::int64_t last_batch = -1;
  for (const auto& r : report.runs) {
    const MeasurementQuality& q = r.quality;
    if (r.batch != last_batch) {
      last_batch = r.batch;
      if (q.rounds > 1)
        out << "batch " << r.batch << ": measured " << q.rounds << " times; the earlier window sets had an interval wider "
            << "than +-" << format("%.0f", 100 * q.limit) << "% of a mean and were discarded\n";
      if (q.other_load >= 0)
        out << "batch " << r.batch << ": beside the windows, other processes used " << format("%.0f", 100 * q.other_load)
            << "% of the machine's CPU time and the hypervisor took " << format("%.0f", 100 * q.steal)
            << "% (steal; measured from /proc/stat)"
            << (q.other_load + q.steal > 0.1 ? ": the figures were measured on a busy machine" : "") << "\n";
    }
    if (q.wide())
      out << "† " << r.label << " at batch " << r.batch << ": its 95% interval is still +-"
          << format("%.1f", 100 * q.relative_half_width) << "% of its mean after " << q.rounds
          << " window set(s): measure again on a quieter machine, or with more --windows\n";
  }
  return out.str();
}

namespace {

// The console table's parts, in the order it prints them.
void write_models(std::ostream& out, const Report& report, std::size_t name_width) {
  pad(out, "model", name_width);
  out << "params      MACs/inf    file        accuracy (95% CI, Wilson)\n";
  for (const auto& m : report.models) {
    pad(out, m.label, name_width);
    pad(out, std::to_string(m.parameters), 12);
    pad(out, std::to_string(m.macs_per_inference), 12);
    pad(out, format("%.1f KiB", double(m.file_bytes) / 1024), 12);
    out << (m.accuracy ? format("%.2f%%", 100 * m.accuracy->value) + format(" (%.2f-", 100 * m.accuracy->low) +
                             format("%.2f%%)", 100 * m.accuracy->high)
                       : m.accuracy_data.empty() ? "not evaluated" : m.accuracy_data)
        << "\n";
  }
  out << "\n";
  bool any_fidelity = false;
  for (const auto& m : report.models) any_fidelity = any_fidelity || m.fidelity.has_value();
  if (any_fidelity) {
    out << "fidelity against " << report.models.front().label << " (same inputs, label-free; 95% CIs):\n";
    for (const auto& m : report.models)
      if (m.fidelity) {
        pad(out, m.label, name_width);
        out << m.fidelity->text << "  [" << m.fidelity_data << "]\n";
      }
    out << "\n";
  }
}

void write_harm(std::ostream& out, const Report& report) {
  const auto warnings = harm_warnings(report);
  for (const auto& w : warnings) out << "WARNING: " << w << "\n";
  if (!warnings.empty()) out << "\n";
}

void write_runs(std::ostream& out, const Report& report, std::size_t name_width) {
  const bool any_measured = !report.runs.empty() && report.runs.front().measured.has_value();
  std::string measured_heading = "mJ/inf MEASURED";
  if (any_measured) {
    const auto& m = *report.runs.front().measured;
    measured_heading = std::string("mJ/inf ") + (m.provenance == Provenance::measured ? "MEASURED" : "SAMPLED") +
                       " (" + m.meter + ")";
  }
  const std::vector<std::pair<std::string, std::size_t>> columns = {
      {"model", name_width},  {"batch", 6},           {"p50 ms", 10},          {"mean ms ± CI", 18},
      {"inf/s", 10},          {measured_heading, 26}, {"mJ/inf MODELED (time x power)", 31},
      {"mJ/inf MODELED (ops)", 21}, {"speed-up", 9},  {"energy ratio", 12}};
  for (const auto& [name, width] : columns) pad(out, name, width);
  out << "\n";
  for (const auto& row : run_rows(report)) {
    const RunResult& r = *row.run;
    pad(out, r.label, name_width);
    pad(out, std::to_string(r.batch), 6);
    pad(out, format("%.4g", r.p50_seconds * 1e3), 10);
    pad(out, format("%.4g ± %.2g", r.latency_seconds.mean * 1e3, r.latency_seconds.half_width * 1e3), 18);
    pad(out, format("%.0f", r.throughput.mean), 10);
    pad(out, r.measured ? mj(r.measured->joules_per_inference) : "n/a (no meter)", 26);
    pad(out, mj(r.modeled_time_power.joules_per_inference), 31);
    pad(out, mj(r.modeled_ops.joules_per_inference), 21);
    pad(out, ratio_text(row.speedup), 9);
    // The energy ratio uses the best figure there is, and says which.
    pad(out, row.has_baseline ? ratio_text(row.energy.value) + (row.energy.metered ? " meas." : " mod.") : "-", 12);
    if (r.quality.wide()) out << "  wide †";
    out << "\n";
  }
}

void write_notes(std::ostream& out, const Report& report) {
  out << "\nspeed-up and energy ratio: baseline (" << (report.models.empty() ? "-" : report.models.front().label)
      << ") / this model at the same batch, measured side by side in this run; > 1 is better.\n";
  out << measurement_quality(report);
  for (const auto& r : report.runs)
    if (r.measured && r.measured->net_joules_per_inference)
      out << "net of idle, " << r.label << " batch " << r.batch << ": " << mj(*r.measured->net_joules_per_inference)
          << " mJ/inf (measured)\n";
  if (!report.runs.empty()) {
    out << "modeled (time x power): " << report.runs.front().modeled_time_power.detail << "\n";
    // One line per distinct detail: models of different precision use different energies per MAC.
    std::vector<std::string> details;
    for (const auto& r : report.runs)
      if (std::find(details.begin(), details.end(), r.modeled_ops.detail) == details.end()) {
        details.push_back(r.modeled_ops.detail);
        // The share of memory traffic depends on the batch: name it, or two lines for one model disagree.
        out << "modeled (ops), " << r.label << " at batch " << r.batch << ": " << r.modeled_ops.detail << "\n";
      }
  }
  out << "\nmanifest:\n";
  for (const auto& [k, v] : report.manifest.entries) out << "  " << k << ": " << v << "\n";
}

}  // namespace

void write_table(std::ostream& out, const Report& report) {
  if (!report.title.empty()) out << report.title << "\n\n";
  // The name column fits the longest label (pipeline stages have long ones), at least 22 wide.
  std::size_t name_width = 22;
  for (const auto& m : report.models) name_width = std::max(name_width, m.label.size() + 2);
  for (const auto& r : report.runs) name_width = std::max(name_width, r.label.size() + 2);
  write_models(out, report, name_width);
  write_harm(out, report);
  write_runs(out, report, name_width);
  write_notes(out, report);
}

void write_csv(std::ostream& out, const Report& report) {
  for (const auto& [k, v] : report.manifest.entries) out << "# " << k << ": " << v << "\n";
  out << "model,batch,windows,iterations_per_window,p50_ms,p99_ms,mean_ms,mean_ms_ci95,throughput_per_s,"
         "energy_measured_mj_per_inf,energy_measured_ci95,energy_measured_provenance,energy_measured_meter,"
         "energy_net_mj_per_inf,energy_net_ci95,"
         "energy_modeled_time_power_mj_per_inf,energy_modeled_time_power_ci95,energy_modeled_ops_mj_per_inf,"
         "speedup_vs_baseline,accuracy,accuracy_ci95_low,accuracy_ci95_high,parameters,macs_per_inf,file_bytes\n";
  for (const auto& row : run_rows(report)) {
    const RunResult& r = *row.run;
    const ModelSummary* model = row.model;
    out << csv_quote(r.label) << ',' << r.batch << ',' << r.windows << ',' << r.iterations_per_window << ','
        << r.p50_seconds * 1e3 << ',' << r.p99_seconds * 1e3 << ',' << r.latency_seconds.mean * 1e3 << ','
        << r.latency_seconds.half_width * 1e3 << ',' << r.throughput.mean << ',';
    if (r.measured)
      out << r.measured->joules_per_inference.mean * 1e3 << ',' << r.measured->joules_per_inference.half_width * 1e3
          << ',' << provenance_name(r.measured->provenance) << ',' << r.measured->meter << ',';
    else
      out << ",,,none,";
    if (r.measured && r.measured->net_joules_per_inference)
      out << r.measured->net_joules_per_inference->mean * 1e3 << ','
          << r.measured->net_joules_per_inference->half_width * 1e3 << ',';
    else
      out << ",,";
    out << r.modeled_time_power.joules_per_inference.mean * 1e3 << ','
        << r.modeled_time_power.joules_per_inference.half_width * 1e3 << ','
        << r.modeled_ops.joules_per_inference.mean * 1e3 << ',' << row.speedup << ',';
    if (model && model->accuracy)
      out << model->accuracy->value << ',' << model->accuracy->low << ',' << model->accuracy->high << ',';
    else
      out << ",,,";
    out << (model ? model->parameters : 0) << ',' << (model ? model->macs_per_inference : 0) << ','
        << (model ? model->file_bytes : 0) << "\n";
  }
}

void write_json(std::ostream& out, const Report& report) {
  using json = nlohmann::json;
  auto ci = [](const MeanCI& v) {
    return json{{"mean", v.mean}, {"ci95_half_width", v.half_width}, {"stddev", v.stddev}, {"n", v.n}};
  };
  json models = json::array();
  for (const auto& m : report.models) {
    json j = {{"label", m.label}, {"path", m.path}, {"file_bytes", m.file_bytes}, {"parameters", m.parameters},
              {"macs_per_inference", m.macs_per_inference}};
    if (m.accuracy)
      j["accuracy"] = {{"value", m.accuracy->value}, {"ci95", {m.accuracy->low, m.accuracy->high}},
                       {"method", "Wilson score interval"}, {"correct", m.accuracy->successes},
                       {"samples", m.accuracy->trials}, {"data", m.accuracy_data}};
    else if (!m.accuracy_data.empty())
      j["accuracy"] = {{"value", nullptr}, {"data", m.accuracy_data}};
    if (m.fidelity) {
      json f = {{"against", report.models.front().label}, {"data", m.fidelity_data},
                {"cosine", {{"mean", m.fidelity->cosine.mean}, {"ci95_half_width", m.fidelity->cosine.half_width}}},
                {"max_abs_error", m.fidelity->max_abs_error}};
      f["snr_db"] = std::isinf(m.fidelity->snr_db) ? json(nullptr) : json(m.fidelity->snr_db);
      if (m.fidelity->agreement)
        f["agreement"] = {{"value", m.fidelity->agreement->value},
                          {"ci95", {m.fidelity->agreement->low, m.fidelity->agreement->high}}};
      j["fidelity"] = f;
    }
    models.push_back(j);
  }
  json runs = json::array();
  for (const auto& row : run_rows(report)) {
    const RunResult& r = *row.run;
    json energy = json::array();
    if (r.measured) {
      json e = {{"provenance", provenance_name(r.measured->provenance)}, {"meter", r.measured->meter},
                {"domains", r.measured->domains}, {"joules_per_inference", ci(r.measured->joules_per_inference)},
                {"counter_wraps_corrected", r.measured->wraps}, {"basis", "gross"}};
      energy.push_back(e);
      if (r.measured->net_joules_per_inference) {
        e["basis"] = "net of idle";
        e["joules_per_inference"] = ci(*r.measured->net_joules_per_inference);
        energy.push_back(e);
      }
    }
    for (const auto* m : {&r.modeled_time_power, &r.modeled_ops})
      energy.push_back({{"provenance", "modeled"}, {"model", m->model}, {"detail", m->detail},
                        {"joules_per_inference", ci(m->joules_per_inference)}});
    runs.push_back({{"model", r.label}, {"device", r.device}, {"batch", r.batch}, {"windows", r.windows},
                    {"iterations_per_window", r.iterations_per_window}, {"window_seconds", r.window_seconds},
                    {"latency_seconds_per_batch", ci(r.latency_seconds)}, {"p50_seconds", r.p50_seconds},
                    {"p99_seconds", r.p99_seconds}, {"throughput_per_second", ci(r.throughput)},
                    {"speedup_vs_baseline", row.speedup},
                    // Computed once, by the report's rule, with the energy figures it compares.
                    {"energy_ratio_vs_baseline",
                     {{"value", row.energy.value},
                      {"provenance", row.energy.metered ? provenance_name(r.measured->provenance) : "modeled"},
                      {"basis", row.energy.metered ? "meters on both sides" : "time x power model on both sides"}}},
                    {"energy", energy},
                    {"quality", quality_json(r.quality)}});
  }
  json manifest = json::object();
  for (const auto& [k, v] : report.manifest.entries) manifest[k] = v;
  out << json{{"title", report.title}, {"models", models},        {"runs", runs},
              {"manifest", manifest},    {"warnings", harm_warnings(report)}}
                 .dump(2)
      << "\n";
}

std::vector<std::string> harm_warnings(const Report& report) {
  const HarmLimits& limits = report.harm_limits;
  std::vector<std::string> warnings;
  if (report.models.size() < 2) return warnings;
  const ModelSummary& base = report.models.front();
  for (std::size_t i = 1; i < report.models.size(); ++i) {
    const ModelSummary& m = report.models[i];
    const std::string who = m.label + " is far from " + base.label + ": ";
    if (m.accuracy && base.accuracy) {
      const double drop = 100 * (base.accuracy->value - m.accuracy->value);
      if (drop > limits.max_accuracy_drop)
        warnings.push_back(who + format("top-1 accuracy %.2f%% against %.2f%%, %.2f points lower (limit %.4g) on ",
                                        100 * m.accuracy->value, 100 * base.accuracy->value, drop,
                                        limits.max_accuracy_drop) +
                           m.accuracy_data);
    }
    // Without labels, cosine: top-1 agreement of an output that is not class scores (an
    // embedding's largest dimension) means nothing, and unlabelled data cannot tell them apart.
    if (m.accuracy && base.accuracy) continue;
    if (m.fidelity && m.fidelity->cosine.mean < limits.min_cosine)
      warnings.push_back(who + format("cosine %.4f (limit %.4g) on ", m.fidelity->cosine.mean, limits.min_cosine) +
                         m.fidelity_data);
  }
  return warnings;
}

void write_report(std::ostream& out, const Report& report, const std::string& format) {
  if (format == "table") write_table(out, report);
  else if (format == "csv") write_csv(out, report);
  else if (format == "json") write_json(out, report);
  else
    throw UserError(option_ref("format") + " '" + format + "': choose table, csv or json");
}

}  // namespace joulecut::measure
