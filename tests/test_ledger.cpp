#include <catch2/catch.hpp>

#include <filesystem>
#include <fstream>
#include <sstream>

#include "joulecut/error.h"
#include "joulecut/measure/ledger.h"
#include "joulecut/measure/tradeoff.h"
#include "temp_dir.h"

using Catch::Matchers::Contains;
namespace m = joulecut::measure;

namespace {

m::MeanCI ci(double mean, double half) {
  m::MeanCI v;
  v.mean = mean;
  v.half_width = half;
  v.n = 10;
  return v;
}

// A stage at batch 64 with the given accuracy (of 1000), p50 and modeled energy.
m::StageFigures stage(int index, const std::string& name, int correct, double p50_ms, double mj) {
  m::StageFigures s;
  s.index = index;
  s.name = name;
  s.passes_applied = name;
  s.model_path = name + ".pt";
  s.content_sha256 = std::string(64, char('a' + index));
  s.parameters = 1000 - index;
  s.file_bytes = 4096 / (index + 1);
  s.macs_per_inference = 5000;
  s.accuracy = m::wilson_ci95(correct, 1000);
  s.accuracy_data = "test (1000 images)";
  m::BatchFigures b;
  b.batch = 64;
  b.p50_seconds = p50_ms / 1e3;
  b.p50_low = b.p50_seconds * 0.99;
  b.p50_high = b.p50_seconds * 1.01;
  b.latency_seconds = ci(b.p50_seconds, b.p50_seconds * 0.01);
  b.modeled_time_power = {ci(mj / 1e3, mj / 1e5), "modeled", "time x power", "4 W per core"};
  b.modeled_ops = {ci(mj / 2e3, 0), "modeled", "ops", "Horowitz"};
  s.batches.push_back(b);
  return s;
}

m::LedgerPoint point(std::int64_t index, const std::string& sweep = "s1") {
  m::LedgerPoint p;
  p.sweep_id = sweep;
  p.recipe = "r";
  p.index = index;
  p.variant = "pipeline";
  p.config = {{"prune.sparsity", std::to_string(index)}};
  p.pipeline = "prune-magnitude";
  p.seed = 3;
  p.stages = {stage(0, "baseline", 900, 2.0, 0.4), stage(1, "prune-magnitude", 890 - int(index), 1.0, 0.2)};
  p.manifest.entries = {{"cpu", "test cpu"}, {"meter", "none"}};
  return p;
}


}  // namespace

TEST_CASE("a ledger line reads back as the point written", "[ledger]") {
  auto p = point(4);
  p.stages[1].batches[0].meter = m::EnergyFigure{ci(0.001, 0.0001), "measured", "rapl", "domains package-0"};
  const auto line = m::to_ledger_line(p);
  CHECK(line.find('\n') == std::string::npos);
  const auto q = m::from_ledger_line(line);
  CHECK(m::to_ledger_line(q) == line);
  CHECK(q.stages[1].batches[0].energy().provenance == "measured");
  CHECK(q.stages[0].batches[0].energy().provenance == "modeled");  // no meter: the model, marked as such
  CHECK_THROWS_WITH(m::from_ledger_line("{\"sweep\": 1}"), Contains("not a ledger line"));
  CHECK_THROWS_WITH(m::from_ledger_line("{"), Contains("not JSON"));
}

TEST_CASE("energy ratios compare like with like and say which", "[ledger]") {
  auto base = point(0).stages[0].batches[0];
  auto stage = point(0).stages[1].batches[0];
  CHECK(m::energy_ratio(base, stage).value == Approx(2.0));
  CHECK(m::energy_ratio(base, stage).provenance == "modeled");
  base.meter = m::EnergyFigure{ci(0.01, 0.001), "measured", "rapl", "domains package-0"};
  CHECK(m::energy_ratio(base, stage).provenance == "modeled");  // one meter only: the model on both sides
  stage.meter = m::EnergyFigure{ci(0.002, 0.0001), "measured", "rapl", "domains package-0"};
  CHECK(m::energy_ratio(base, stage).value == Approx(5.0));
  CHECK(m::energy_ratio(base, stage).provenance == "measured");
  CHECK(m::speedup(base, stage) == Approx(2.0));
}

TEST_CASE("a corrupt line is reported with its number and the rest is read", "[ledger]") {
  TempDir dir;
  const auto path = dir.file("ledger.jsonl");
  m::append_to_ledger(path, point(0));
  std::ofstream(path, std::ios::app) << "{garbage\n";
  m::append_to_ledger(path, point(1));
  std::ofstream(path, std::ios::app) << "{\"sweep\": \"s1\", \"poi";  // a write cut short
  const auto contents = m::read_ledger(path);
  REQUIRE(contents.points.size() == 2);
  CHECK(contents.points[1].index == 1);
  REQUIRE(contents.problems.size() == 2);
  CHECK_THAT(contents.problems[0], Contains("ledger.jsonl:2: skipped: not JSON"));
  CHECK_THAT(contents.problems[1], Contains("ledger.jsonl:4: incomplete last line"));
  CHECK(contents.torn_tail);
  m::drop_torn_tail(path, contents.good_bytes);
  m::append_to_ledger(path, point(2));
  const auto again = m::read_ledger(path);
  CHECK(again.points.size() == 3);
  CHECK_FALSE(again.torn_tail);
  CHECK(m::read_ledger(dir.file("missing.jsonl")).points.empty());
}

TEST_CASE("shards merge in point order; another sweep's ledger is refused", "[ledger]") {
  TempDir dir;
  for (std::int64_t k : {1, 3}) m::append_to_ledger(dir.file("b.jsonl"), point(k));
  for (std::int64_t k : {0, 2}) m::append_to_ledger(dir.file("a.jsonl"), point(k));
  const auto merged = m::merge_ledgers({dir.file("b.jsonl"), dir.file("a.jsonl")});
  REQUIRE(merged.points.size() == 4);
  for (std::int64_t k = 0; k < 4; ++k) CHECK(merged.points[std::size_t(k)].index == k);
  CHECK(merged.problems.empty());
  m::append_to_ledger(dir.file("c.jsonl"), point(0));
  const auto duplicate = m::merge_ledgers({dir.file("a.jsonl"), dir.file("c.jsonl")});
  CHECK(duplicate.points.size() == 2);
  REQUIRE(duplicate.problems.size() == 1);
  CHECK_THAT(duplicate.problems[0], Contains("point 0 also in"));
  m::append_to_ledger(dir.file("other.jsonl"), point(5, "s2"));
  CHECK_THROWS_WITH(m::merge_ledgers({dir.file("a.jsonl"), dir.file("other.jsonl")}), Contains("from another sweep"));
  CHECK_THROWS_WITH(m::merge_ledgers({dir.file("nope.jsonl")}), Contains("nope.jsonl: cannot open ledger"));
}

TEST_CASE("the stage table: ratios against the same run's baseline, provenance, Pareto", "[ledger]") {
  const std::vector<m::LedgerPoint> one = {point(0)};
  std::ostringstream table;
  m::write_tradeoff(table, one, "table", {});
  const std::string t = table.str();
  CHECK_THAT(t, Contains("1 prune-magnitude"));
  CHECK_THAT(t, Contains("2.00x"));  // p50 2 ms -> 1 ms, energy 0.4 -> 0.2 mJ
  CHECK_THAT(t, Contains("89.00 ["));
  CHECK_THAT(t, Contains("-1.00"));  // delta accuracy, points
  CHECK_THAT(t, Contains("modeled (time x power)"));
  CHECK(t.find("measured (") == std::string::npos);  // modeled figures never under a measured label
  CHECK_THAT(t, Contains("cpu: test cpu"));            // the manifest in the footer
  CHECK_THAT(t, Contains("aaaaaaaaaaaaaaaa  baseline"));

  std::ostringstream latex, csv, markdown, json;
  m::write_tradeoff(latex, one, "latex", {});
  CHECK_THAT(latex.str(), Contains("\\toprule") && Contains("\\bottomrule") && Contains("2.00$\\times$"));
  m::write_tradeoff(csv, one, "csv", {});
  CHECK_THAT(csv.str(), Contains("# cpu: test cpu") && Contains("\"1 prune-magnitude\""));
  m::write_tradeoff(markdown, one, "markdown", {});
  CHECK_THAT(markdown.str(), Contains("| baseline |"));
  m::write_tradeoff(json, one, "json", {});
  CHECK_THAT(json.str(), Contains("\"energy_ratio\": 2.0"));
  std::ostringstream ignored;
  CHECK_THROWS_WITH(m::write_tradeoff(ignored, one, "html", {}), Contains("choose table, csv, markdown, latex or json"));
  m::TradeoffOptions at_one;
  at_one.batch = 1;
  CHECK_THROWS_WITH(m::write_tradeoff(ignored, one, "table", at_one), Contains("not measured at batch 1"));

  // Several points: one row each (their last stage); the Pareto front marked.
  auto cheap_but_worse = point(1);
  cheap_but_worse.stages[1].batches[0].modeled_time_power.joules_per_inference.mean = 0.1e-3;
  auto dominated = point(2);
  dominated.stages[1].batches[0].modeled_time_power.joules_per_inference.mean = 0.3e-3;
  const std::vector<m::LedgerPoint> many = {point(0), cheap_but_worse, dominated};
  const auto rows = m::tradeoff_rows(many, {});
  REQUIRE(rows.size() == 4);
  CHECK(rows[0].label == "baseline");
  CHECK(rows[1].pareto);
  CHECK(rows[2].pareto);
  CHECK_FALSE(rows[3].pareto);
  m::TradeoffOptions all;
  all.all_stages = true;
  CHECK(m::tradeoff_rows(many, all).size() == 4);  // one pass each: the same rows
}

TEST_CASE("plots: PNG and SVG written through gnuplot (scripts/setup installs it)", "[ledger]") {
  TempDir dir;
  const std::vector<m::LedgerPoint> points = {point(0), point(1)};
  const auto written = m::write_tradeoff_plots(points, dir.file("t"), {});
  REQUIRE(written.size() == 4);
  CHECK(slurp(dir.file("t-energy.png")).substr(1, 3) == "PNG");
  CHECK_THAT(slurp(dir.file("t-energy.svg")), Contains("<svg") && Contains("Pareto front") && Contains("modeled (time x power)"));
  CHECK_THAT(slurp(dir.file("t-latency.svg")), Contains("p50"));
  int entries = 0;
  for (const auto& e : std::filesystem::directory_iterator(dir.path)) entries += e.is_regular_file();
  CHECK(entries == 4);  // no temporary left behind
}

TEST_CASE("without labels, fidelity stands in for accuracy: in the ledger and the table", "[ledger]") {
  auto p = point(0);
  for (auto& s : p.stages) {
    s.accuracy.reset();
    s.accuracy_data = "n/a (no labels)";
  }
  p.stages[1].agreement = m::wilson_ci95(950, 1000);
  p.stages[1].cosine = 0.998;
  p.stages[1].snr_db = 27.5;
  const auto line = m::to_ledger_line(p);
  const auto q = m::from_ledger_line(line);
  REQUIRE(q.stages[1].agreement);
  CHECK(q.stages[1].agreement->successes == 950);
  CHECK(*q.stages[1].cosine == Approx(0.998));
  CHECK(*q.stages[1].snr_db == Approx(27.5));
  CHECK_FALSE(q.stages[0].agreement);
  CHECK(m::to_ledger_line(q) == line);
  // A line written before fidelity existed (no "fidelity" key) still reads.
  std::string old = m::to_ledger_line(point(1));
  const auto at = old.find(",\"fidelity\":null");
  REQUIRE(at != std::string::npos);
  old.erase(at, std::string(",\"fidelity\":null").size());
  CHECK_FALSE(m::from_ledger_line(old).stages[1].agreement);

  std::ostringstream table;
  m::write_tradeoff(table, std::vector<m::LedgerPoint>{p}, "table", {});
  const std::string t = table.str();
  CHECK_THAT(t, Contains("agreement % [95% CI]"));
  CHECK_THAT(t, Contains("100.00 [100.00, 100.00]"));  // the baseline agrees with itself
  CHECK_THAT(t, Contains("95.00 ["));
  CHECK_THAT(t, Contains("-5.00"));
  CHECK_THAT(t, Contains("agreement: top-1 agreement with the baseline"));
  std::ostringstream json;
  m::write_tradeoff(json, std::vector<m::LedgerPoint>{p}, "json", {});
  CHECK_THAT(json.str(), Contains("top-1 agreement with the baseline"));
}

TEST_CASE("the table's ratio note says which baseline the ratios are against; wide rows are marked", "[ledger]") {
  // Points measured side by side (one run): every point's baseline is the baseline row.
  std::vector<m::LedgerPoint> together = {point(0), point(1)};
  std::ostringstream shared;
  m::write_tradeoff(shared, together, "table", {});
  CHECK_THAT(shared.str(), Contains("the baseline row / this row, measured side by side in the same run"));
  CHECK(shared.str().find("†") == std::string::npos);
  // Separate runs (a ledger as `compress report` reads it): each row has its own baseline run.
  std::vector<m::LedgerPoint> apart = {point(0), point(1)};
  apart[1].stages[0].batches[0].p50_seconds *= 1.5;
  apart[1].stages[1].batches[0].quality.relative_half_width = 0.2;  // over the 10% limit
  for (const std::string format : {"table", "markdown", "latex", "json"}) {
    std::ostringstream text;
    m::write_tradeoff(text, apart, format, {});
    CHECK_THAT(text.str(), Contains("against its own point's baseline") && Contains("†"));
  }
}
