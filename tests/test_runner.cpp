#include <catch2/catch.hpp>

#include <ATen/ATen.h>

#include <sstream>

#include "joulecut/error.h"
#include "joulecut/measure/report.h"
#include "joulecut/measure/runner.h"
#include "joulecut/torch_compat.h"
#include "joulecut/models.h"
#include "powercap_fixture.h"
#include "temp_dir.h"

using namespace joulecut::measure;
using Catch::Matchers::Contains;
using Catch::Matchers::WithinAbs;

namespace {
RunOptions quick(const std::string& meter) {
  RunOptions o;
  o.meter = meter;
  o.windows = 3;
  o.min_window_seconds = 0.01;
  o.warmup_seconds = 0.01;
  o.batch = 4;
  return o;
}
}  // namespace

TEST_CASE("runner: windows, latency statistics and modeled energy without a meter", "[runner]") {
  auto module = joulecut::build_reference_model("mlp", 1);
  std::string how;
  auto deployed = prepare_for_inference(module, true, c10::Device(c10::kCPU), &how);
  CHECK_THAT(how, Contains("frozen"));
  OpCounts ops;
  ops.macs = 4 * 266200;
  ops.batch = 4;
  const auto r = measure(deployed, at::randn({4, 1, 28, 28}), quick("model"), ops);
  CHECK(r.windows == 3);
  CHECK(r.iterations_per_window >= 1);
  CHECK(r.latency_seconds.n == 3);
  CHECK(r.latency_seconds.mean > 0);
  CHECK(r.p50_seconds > 0);
  CHECK(r.p99_seconds >= r.p50_seconds);
  CHECK(r.throughput.mean > 0);
  CHECK_FALSE(r.measured.has_value());
  CHECK(r.modeled_time_power.joules_per_inference.mean > 0);
  CHECK(r.modeled_ops.joules_per_inference.mean > 0);
  // The module as deployed gives the same answers as the module it came from.
  at::NoGradGuard no_grad;
  module.eval();
  const auto x = at::randn({2, 1, 28, 28});
  CHECK(at::allclose(module.forward({x}).toTensor(), deployed.forward({x}).toTensor(), 1e-4, 1e-5));
}

TEST_CASE("runner: a RAPL tree gives measured figures", "[runner][rapl]") {
  TempDir t;
  write_zone(t.file("intel-rapl:0"), "package-0", 0);
  auto options = quick("rapl");
  options.rapl.root = t.path.string();
  auto choice = choose_meter(options);
  REQUIRE(choice.meter);
  CHECK_THAT(choice.explanation, Contains("rapl (asked for): package-0"));
  auto module = joulecut::build_reference_model("mlp", 1);
  std::vector<Candidate> candidates{{"a", module, {}}, {"b", module, {}}};
  const auto results = run_interleaved(candidates, at::randn({4, 1, 28, 28}), options, choice, false);
  REQUIRE(results.size() == 2);
  REQUIRE(results[0].measured.has_value());
  CHECK(results[0].measured->provenance == Provenance::measured);
  CHECK(results[0].measured->meter == "rapl");
}

TEST_CASE("meter choice: auto explains a fallback, a named meter must exist", "[runner]") {
  TempDir t;
  auto options = quick("auto");
  options.rapl.root = t.file("absent");
  const auto choice = choose_meter(options);
  CHECK_FALSE(choice.meter);
  CHECK_THAT(choice.explanation, Contains("modeled only") && Contains("rapl unavailable"));
  options.meter = "rapl";
  CHECK_THROWS_WITH(choose_meter(options), Contains("RunOptions::meter rapl is not available here"));
  options.meter = "nvml";
  options.nvml.library = "/nonexistent/libnvidia-ml.so.1";
  CHECK_THROWS_WITH(choose_meter(options), Contains("RunOptions::meter nvml is not available here"));
  options.meter = "joulemeter";
  CHECK_THROWS_AS(choose_meter(options), joulecut::UserError);
}

TEST_CASE("devices: a missing CUDA is a clear error", "[runner][device]") {
  CHECK(parse_device("cpu").is_cpu());
  CHECK_THROWS_WITH(parse_device("tpu"), Contains("expected cpu, cuda or cuda:N"));
  if (joulecut::compat::cuda_device_count() == 0)
    CHECK_THROWS_WITH(parse_device("cuda"), Contains("RunOptions::device cuda"));
}

TEST_CASE("energy session: nested windows subtract readings", "[runner][rapl]") {
  TempDir t;
  const auto pkg = t.file("intel-rapl:0");
  write_zone(pkg, "package-0", 0);
  RunOptions options;
  options.meter = "rapl";
  options.rapl.root = t.path.string();
  EnergySession session(options);
  session.begin("outer");
  set_energy(pkg, 1000000);
  session.begin("inner");
  set_energy(pkg, 3000000);
  const auto inner = session.end("inner");
  const auto outer = session.end("outer");
  REQUIRE(inner.measured);
  CHECK_THAT(inner.measured->joules, WithinAbs(2.0, 1e-9));
  CHECK_THAT(outer.measured->joules, WithinAbs(3.0, 1e-9));
  CHECK(outer.modeled.model == "time x power");
  CHECK_THROWS_WITH(session.end("never"), Contains("never begun"));
}

TEST_CASE("reports never put a modeled figure under a measured heading", "[report]") {
  Report report;
  report.models.push_back({"base", "base.pt", 1000, 10, 100, std::nullopt, ""});
  RunResult r;
  r.label = "base";
  r.batch = 1;
  r.latency_seconds = mean_ci95({0.001, 0.0011, 0.0009});
  r.p50_seconds = 0.001;
  r.throughput = mean_ci95({1000, 990, 1010});
  r.modeled_time_power.joules_per_inference = mean_ci95({0.002, 0.0021});
  r.modeled_time_power.model = "time x power";
  r.modeled_ops.joules_per_inference.mean = 0.0005;
  r.modeled_ops.joules_per_inference.n = 1;
  r.modeled_ops.detail = "float32 MAC 4.60 pJ; 83% of it memory";
  report.runs.push_back(r);
  report.manifest.set("meter", "modeled only");

  std::ostringstream table, csv, json;
  write_table(table, report);
  write_csv(csv, report);
  write_json(json, report);
  CHECK_THAT(table.str(), Contains("n/a (no meter)") && Contains("MODELED (time x power)") &&
                              Contains("meter: modeled only") &&
                              Contains("modeled (ops), base at batch 1: float32 MAC 4.60 pJ; 83% of it memory"));
  CHECK_THAT(csv.str(), Contains(",,,none,"));
  CHECK(json.str().find("\"provenance\": \"measured\"") == std::string::npos);
  CHECK_THAT(json.str(), Contains("\"provenance\": \"modeled\""));

  MeasuredEnergyStats m;
  m.joules_per_inference = mean_ci95({0.003, 0.0031});
  m.meter = "rapl";
  report.runs[0].measured = m;
  std::ostringstream table2, json2;
  write_table(table2, report);
  write_json(json2, report);
  CHECK_THAT(table2.str(), Contains("MEASURED (rapl)"));
  CHECK_THAT(json2.str(), Contains("\"provenance\": \"measured\"") && Contains("\"meter\": \"rapl\""));
  CHECK_THROWS_AS(write_report(table2, report, "xml"), joulecut::UserError);
}

TEST_CASE("reports warn loudly about a model far from the baseline, and only then", "[report]") {
  Report report;
  report.models.push_back({"base", "base.pt", 1000, 10, 100, std::nullopt, ""});
  ModelSummary near{"near", "near.pt", 500, 10, 100, std::nullopt, ""};
  near.fidelity = ModelSummary::Fidelity{};
  near.fidelity->cosine.mean = 0.995;
  ModelSummary far = near;
  far.label = "far";
  far.fidelity->cosine.mean = 0.10;
  report.models.push_back(near);
  report.models.push_back(far);
  auto warnings = harm_warnings(report);
  REQUIRE(warnings.size() == 1);
  CHECK_THAT(warnings[0], Contains("far is far from base: cosine 0.1000 (limit 0.99)"));

  // Without labels cosine decides, as the guard's auto rule: the top-1 agreement of an output that
  // may be an embedding does not; with labels, the accuracy drop in points.
  report.models[1].fidelity->agreement = ProportionCI{0.80, 0.75, 0.85, 160, 200};
  CHECK(harm_warnings(report).size() == 1);
  report.models[2].fidelity.reset();
  report.models[0].accuracy = ProportionCI{0.90, 0.88, 0.92, 900, 1000};
  report.models[2].accuracy = ProportionCI{0.895, 0.87, 0.91, 895, 1000};
  CHECK(harm_warnings(report).empty());
  report.models[2].accuracy->value = 0.85;
  report.models[2].accuracy_data = "test (1000 images)";
  warnings = harm_warnings(report);
  REQUIRE(warnings.size() == 1);
  CHECK_THAT(warnings[0], Contains("85.00% against 90.00%, 5.00 points lower (limit 1) on test (1000 images)"));
  std::ostringstream table, json;
  write_table(table, report);
  write_json(json, report);
  CHECK_THAT(table.str(), Contains("WARNING: far is far from base"));
  CHECK_THAT(json.str(), Contains("\"warnings\": [") && Contains("far is far from base"));

  // The user's budget, not the defaults: a looser one quiets the 5-point drop, a stricter cosine
  // limit warns about a model the default would pass; the reporters warn the same way.
  report.harm_limits.max_accuracy_drop = 6;
  CHECK(harm_warnings(report).empty());
  report.harm_limits.min_cosine = 0.999;
  report.models[2].accuracy.reset();
  report.models[0].accuracy.reset();
  report.models[2].fidelity = report.models[1].fidelity;  // cosine 0.995
  warnings = harm_warnings(report);
  REQUIRE(warnings.size() == 2);
  CHECK_THAT(warnings[1], Contains("far is far from base: cosine 0.9950 (limit 0.999)"));
  std::ostringstream strict;
  write_table(strict, report);
  CHECK_THAT(strict.str(), Contains("WARNING: near is far from base: cosine 0.9950 (limit 0.999)"));
}

TEST_CASE("runner: a window set with a wide interval is run again, and flagged if it stays wide", "[runner]") {
  auto module = joulecut::build_reference_model("mlp", 1);
  std::vector<Candidate> candidates{{"a", module, {}}, {"b", module, {}}};
  auto options = quick("model");
  options.search_blas_threads = false;
  auto choice = choose_meter(options);
  const at::Tensor x = at::randn({4, 1, 28, 28});
  SECTION("a limit no timing can meet: measured twice, still wide, said so") {
    options.wide_interval = 0;  // any spread at all is "wide"
    options.remeasure_rounds = 1;
    const auto results = run_interleaved(candidates, x, options, choice, false);
    for (const auto& r : results) {
      CHECK(r.quality.rounds == 2);
      CHECK(r.quality.wide());
      CHECK(r.quality.relative_half_width > 0);
      CHECK(r.latency_seconds.n == 3);  // the kept set only: the first set's windows are gone
    }
    Report report;
    report.models = {{"a"}, {"b"}};
    report.runs = results;
    std::ostringstream text;
    write_report(text, report, "table");
    CHECK_THAT(text.str(), Contains("wide †") && Contains("measured 2 times") && Contains("is still +-"));
  }
  SECTION("a limit every timing meets: one set") {
    options.wide_interval = 1e9;
    for (const auto& r : run_interleaved(candidates, x, options, choice, false)) {
      CHECK(r.quality.rounds == 1);
      CHECK_FALSE(r.quality.wide());
    }
  }
  SECTION("what else ran beside the windows is recorded") {
    const auto r = run_interleaved(candidates, x, options, choice, false).front();
    CHECK(r.quality.other_load >= 0);  // /proc/stat exists on Linux
    CHECK(r.quality.other_load <= 1);
    CHECK(r.quality.steal >= 0);
  }
}
