#include "joulecut/measure/ledger.h"

#include <fcntl.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <map>
#include <nlohmann/json.hpp>

#include <cmath>
#include <sstream>
#include <stdexcept>

#include "quality_json.h"
#include "ratios.h"
#include "joulecut/error.h"
#include "joulecut/text.h"

namespace joulecut::measure {
namespace {

using json = nlohmann::ordered_json;

json ci_json(const MeanCI& v) {
  return {{"mean", v.mean}, {"ci95_half_width", v.half_width}, {"stddev", v.stddev}, {"n", v.n}};
}
MeanCI ci_from(const json& j) {
  MeanCI v;
  v.mean = j.at("mean").get<double>();
  v.half_width = j.at("ci95_half_width").get<double>();
  v.stddev = j.at("stddev").get<double>();
  v.n = j.at("n").get<std::int64_t>();
  return v;
}
json energy_json(const EnergyFigure& e) {
  return {{"provenance", e.provenance}, {"source", e.source}, {"detail", e.detail},
          {"joules_per_inference", ci_json(e.joules_per_inference)}};
}
EnergyFigure energy_from(const json& j) {
  EnergyFigure e;
  e.provenance = j.at("provenance").get<std::string>();
  e.source = j.at("source").get<std::string>();
  e.detail = j.at("detail").get<std::string>();
  e.joules_per_inference = ci_from(j.at("joules_per_inference"));
  if (e.provenance != "measured" && e.provenance != "sampled" && e.provenance != "modeled")
    throw std::runtime_error("energy provenance '" + e.provenance + "' is not measured, sampled or modeled");
  return e;
}

}  // namespace

EnergyRatio energy_ratio(const BatchFigures& baseline, const BatchFigures& stage) {
  auto meter_mean = [](const BatchFigures& b) {
    return b.meter ? std::optional<double>(b.meter->joules_per_inference.mean) : std::nullopt;
  };
  const ratios::Energy ratio =
      ratios::energy(meter_mean(baseline), baseline.modeled_time_power.joules_per_inference.mean, meter_mean(stage),
                     stage.modeled_time_power.joules_per_inference.mean);
  return {ratio.value, ratio.metered ? stage.meter->provenance : stage.modeled_time_power.provenance};
}

double speedup(const BatchFigures& baseline, const BatchFigures& stage) {
  return ratios::speedup(baseline.p50_seconds, stage.p50_seconds);
}

const BatchFigures* StageFigures::at_batch(std::int64_t batch) const {
  for (const auto& b : batches)
    if (b.batch == batch) return &b;
  return nullptr;
}

std::string LedgerPoint::label() const {
  // A recipe's single pipeline is called "pipeline": a sweep's points are told apart by their values.
  const std::string first = variant == "pipeline" && !config.empty() ? "" : variant;
  std::vector<std::string> parts;
  if (!first.empty()) parts.push_back(first);
  for (const auto& [k, v] : config) parts.push_back(k + "=" + v);
  return join(parts, " ");
}

namespace {
// A proportion with its interval, as the ledger stores it; `count` names the successes
// ("correct" for accuracy, "agreeing" for agreement).
json proportion_json(const ProportionCI& p, const char* count) {
  return {{"value", p.value}, {"ci95", {p.low, p.high}}, {count, p.successes}, {"samples", p.trials}};
}
ProportionCI proportion_from_json(const json& a, const char* count) {
  ProportionCI ci;
  ci.value = a.at("value").get<double>();
  ci.low = a.at("ci95").at(0).get<double>();
  ci.high = a.at("ci95").at(1).get<double>();
  ci.successes = a.at(count).get<std::int64_t>();
  ci.trials = a.at("samples").get<std::int64_t>();
  return ci;
}
}  // namespace

std::string to_ledger_line(const LedgerPoint& p) {
  json config = json::object();
  for (const auto& [k, v] : p.config) config[k] = v;
  json stages = json::array();
  for (const auto& s : p.stages) {
    json batches = json::array();
    for (const auto& b : s.batches) {
      json j = {{"batch", b.batch},
                {"p50_seconds", b.p50_seconds},
                {"p50_ci95", {b.p50_low, b.p50_high}},
                {"p99_seconds", b.p99_seconds},
                {"latency_seconds", ci_json(b.latency_seconds)},
                {"energy_meter", b.meter ? energy_json(*b.meter) : json(nullptr)},
                {"energy_modeled_time_power", energy_json(b.modeled_time_power)},
                {"energy_modeled_ops", energy_json(b.modeled_ops)},
                {"quality", quality_json(b.quality)}};
      batches.push_back(j);
    }
    json accuracy = nullptr;
    if (s.accuracy) {
      accuracy = proportion_json(*s.accuracy, "correct");
      accuracy["data"] = s.accuracy_data;
    }
    json fidelity = nullptr;
    if (s.agreement || s.cosine) {
      fidelity = json::object();
      if (s.agreement)
        fidelity["agreement"] = proportion_json(*s.agreement, "agreeing");
      if (s.cosine) fidelity["cosine"] = *s.cosine;
      if (s.snr_db) fidelity["snr_db"] = std::isinf(*s.snr_db) ? json(nullptr) : json(*s.snr_db);
    }
    stages.push_back({{"stage", s.index},
                      {"name", s.name},
                      {"passes_applied", s.passes_applied},
                      {"model", s.model_path},
                      {"content_sha256", s.content_sha256},
                      {"parameters", s.parameters},
                      {"file_bytes", s.file_bytes},
                      {"macs_per_inference", s.macs_per_inference},
                      {"accuracy", accuracy},
                      {"fidelity", fidelity},
                      {"batches", batches}});
  }
  json manifest = json::object();
  for (const auto& [k, v] : p.manifest.entries) manifest[k] = v;
  return json{{"sweep", p.sweep_id}, {"recipe", p.recipe},   {"point", p.index},   {"variant", p.variant},
              {"config", config},    {"pipeline", p.pipeline}, {"seed", p.seed},   {"stages", stages},
              {"manifest", manifest}}
      .dump();
}

LedgerPoint from_ledger_line(const std::string& line) {
  json j;
  try {
    j = json::parse(line);
  } catch (const json::parse_error& e) {
    throw std::runtime_error("not JSON (" + std::string(e.what()) + ")");
  }
  try {
    LedgerPoint p;
    p.sweep_id = j.at("sweep").get<std::string>();
    p.recipe = j.at("recipe").get<std::string>();
    p.index = j.at("point").get<std::int64_t>();
    p.variant = j.at("variant").get<std::string>();
    for (const auto& [k, v] : j.at("config").items()) p.config.emplace_back(k, v.get<std::string>());
    p.pipeline = j.at("pipeline").get<std::string>();
    p.seed = j.at("seed").get<std::uint64_t>();
    for (const auto& s : j.at("stages")) {
      StageFigures f;
      f.index = s.at("stage").get<int>();
      f.name = s.at("name").get<std::string>();
      f.passes_applied = s.at("passes_applied").get<std::string>();
      f.model_path = s.at("model").get<std::string>();
      f.content_sha256 = s.at("content_sha256").get<std::string>();
      f.parameters = s.at("parameters").get<std::int64_t>();
      f.file_bytes = s.at("file_bytes").get<std::int64_t>();
      f.macs_per_inference = s.at("macs_per_inference").get<std::int64_t>();
      if (!s.at("accuracy").is_null()) {
        f.accuracy = proportion_from_json(s.at("accuracy"), "correct");
        f.accuracy_data = s.at("accuracy").at("data").get<std::string>();
      }
      // Ledgers written before fidelity existed have no "fidelity" key.
      if (s.contains("fidelity") && !s.at("fidelity").is_null()) {
        const json& fj = s.at("fidelity");
        if (fj.contains("agreement")) f.agreement = proportion_from_json(fj.at("agreement"), "agreeing");
        if (fj.contains("cosine")) f.cosine = fj.at("cosine").get<double>();
        if (fj.contains("snr_db")) f.snr_db = fj.at("snr_db").is_null() ? INFINITY : fj.at("snr_db").get<double>();
      }
      for (const auto& b : s.at("batches")) {
        BatchFigures figures;
        figures.batch = b.at("batch").get<std::int64_t>();
        figures.p50_seconds = b.at("p50_seconds").get<double>();
        figures.p50_low = b.at("p50_ci95").at(0).get<double>();
        figures.p50_high = b.at("p50_ci95").at(1).get<double>();
        figures.p99_seconds = b.at("p99_seconds").get<double>();
        figures.latency_seconds = ci_from(b.at("latency_seconds"));
        if (!b.at("energy_meter").is_null()) figures.meter = energy_from(b.at("energy_meter"));
        figures.modeled_time_power = energy_from(b.at("energy_modeled_time_power"));
        figures.modeled_ops = energy_from(b.at("energy_modeled_ops"));
        if (b.contains("quality")) figures.quality = quality_from_json(b.at("quality"));
        if (figures.modeled_time_power.provenance != "modeled" || figures.modeled_ops.provenance != "modeled")
          throw std::runtime_error("a modeled energy figure is not marked modeled");
        f.batches.push_back(figures);
      }
      p.stages.push_back(f);
    }
    if (p.stages.empty()) throw std::runtime_error("no stages");
    for (const auto& [k, v] : j.at("manifest").items()) p.manifest.entries.emplace_back(k, v.get<std::string>());
    return p;
  } catch (const json::exception& e) {
    throw std::runtime_error("not a ledger line (" + std::string(e.what()) + ")");
  }
}

LedgerContents read_ledger(const std::string& path) {
  LedgerContents out;
  if (!std::filesystem::exists(path)) return out;
  std::ifstream in(path, std::ios::binary);
  if (!in) {
    throw UserError(path + ": cannot read the ledger (" + std::string(std::strerror(errno)) + ")");
  }
  std::stringstream buffer;
  buffer << in.rdbuf();
  const std::string text = buffer.str();
  std::size_t start = 0;
  std::int64_t number = 0;
  while (start < text.size()) {
    ++number;
    const std::size_t end = text.find('\n', start);
    if (end == std::string::npos) {
      out.torn_tail = true;
      out.problems.push_back(path + ":" + std::to_string(number) +
                             ": incomplete last line (a run was stopped while writing it); it holds no finished result");
      break;
    }
    const std::string line = text.substr(start, end - start);
    start = end + 1;
    out.good_bytes = std::int64_t(start);
    if (line.find_first_not_of(" \t\r") == std::string::npos) continue;
    try {
      out.points.push_back(from_ledger_line(line));
    } catch (const std::exception& e) {
      out.problems.push_back(path + ":" + std::to_string(number) + ": skipped: " + e.what());
    }
  }
  return out;
}

void append_to_ledger(const std::string& path, const LedgerPoint& point) {
  const std::string line = to_ledger_line(point) + "\n";
  const int fd = ::open(path.c_str(), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
  if (fd < 0) throw UserError(path + ": cannot write the ledger (" + std::string(std::strerror(errno)) + ")");
  std::size_t written = 0;
  while (written < line.size()) {
    const ssize_t n = ::write(fd, line.data() + written, line.size() - written);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) {
      const std::string why = std::strerror(errno);
      ::close(fd);
      throw UserError(path + ": cannot write the ledger (" + why + ")");
    }
    written += std::size_t(n);
  }
  const bool synced = ::fsync(fd) == 0;
  ::close(fd);
  if (!synced) throw UserError(path + ": cannot flush the ledger to disk (" + std::string(std::strerror(errno)) + ")");
}

void drop_torn_tail(const std::string& path, std::int64_t good_bytes) {
  if (::truncate(path.c_str(), off_t(good_bytes)) != 0)
    throw UserError(path + ": cannot cut off the incomplete last line (" + std::string(std::strerror(errno)) + ")");
}

LedgerContents merge_ledgers(const std::vector<std::string>& paths) {
  LedgerContents merged;
  std::map<std::int64_t, std::string> seen;  // point -> ledger it came from
  std::string sweep, first_path;
  for (const auto& path : paths) {
    if (!std::filesystem::exists(path)) throw UserError(path + ": cannot open ledger (no such file)");
    LedgerContents one = read_ledger(path);
    merged.problems.insert(merged.problems.end(), one.problems.begin(), one.problems.end());
    for (auto& p : one.points) {
      if (sweep.empty()) {
        sweep = p.sweep_id;
        first_path = path;
      }
      if (p.sweep_id != sweep)
        throw UserError(path + ": point " + std::to_string(p.index) + " is from another sweep (" + p.sweep_id + ", recipe " +
                        p.recipe + ") than " + first_path + " (" + sweep +
                        "): another recipe, model or grid; report them separately");
      if (seen.count(p.index)) {
        merged.problems.push_back(path + ": point " + std::to_string(p.index) + " also in " + seen[p.index] +
                                  "; the first is kept");
        continue;
      }
      seen[p.index] = path;
      merged.points.push_back(std::move(p));
    }
  }
  std::stable_sort(merged.points.begin(), merged.points.end(),
                   [](const LedgerPoint& a, const LedgerPoint& b) { return a.index < b.index; });
  return merged;
}

}  // namespace joulecut::measure
