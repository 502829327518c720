#include <catch2/catch.hpp>

#include <ATen/ATen.h>

#include <sstream>

#include "joulecut/error.h"
#include "joulecut/models.h"
#include "joulecut/sensitivity.h"
#include "noise_data.h"

using namespace joulecut;
using Catch::Matchers::Contains;

namespace {
std::size_t count(const std::string& text, const std::string& what) {
  std::size_t n = 0;
  for (std::size_t at = text.find(what); at != std::string::npos; at = text.find(what, at + 1)) ++n;
  return n;
}
}  // namespace

TEST_CASE("sensitivity prunes one layer at a time and counts what a sparse runtime would skip", "[sensitivity]") {
  at::manual_seed(21);
  const auto mlp = build_reference_model("mlp", 1);
  SensitivityOptions options;
  options.levels = {0.5, 0.9};
  options.progress = false;
  const auto report = analyze_sensitivity(mlp, noise_dataset(64), options);
  REQUIRE(report.layers == std::vector<std::string>{"fc1", "fc2", "fc3"});
  REQUIRE(report.points.size() == 6);
  CHECK(report.baseline_macs == 784 * 300 + 300 * 100 + 100 * 10);
  // fc2 at 50%: half of its 30,000 MACs are skipped; the other layers are untouched.
  CHECK(report.points[2].layer == "fc2");
  CHECK(report.points[2].effective_macs == report.baseline_macs - 15000);
  CHECK(report.points[2].modeled_joules < report.baseline_joules);
  CHECK(report.points[3].effective_macs < report.points[2].effective_macs);
  CHECK_THAT(report.energy_model, Contains("op count x energy per op"));

  std::ostringstream table, csv;
  write_sensitivity_table(table, report);
  CHECK_THAT(table.str(), Contains("MODELED") && Contains("fc2") && Contains("sparse runtime"));
  write_sensitivity_csv(csv, report);
  CHECK(count(csv.str(), "\n") == 1 + 1 + 6);
  CHECK(count(csv.str(), ",modeled\n") == 7);
  const std::string svg = sensitivity_svg(report, "MLP <test>");
  CHECK(count(svg, "<polyline") == 3);
  CHECK_THAT(svg, Contains("MLP &lt;test&gt;") && Contains("unpruned") && Contains("</svg>"));
}

TEST_CASE("channel sensitivity works per channel group", "[sensitivity]") {
  at::manual_seed(22);
  auto resnet = build_reference_model("resnet8", 1);
  resnet.eval();
  SensitivityOptions options;
  options.method = "channel";
  options.levels = {0.5};
  options.progress = false;
  const auto report = analyze_sensitivity(resnet, noise_dataset(16), options);
  CHECK(report.layers.size() == 6);  // the classifier's group is the model's output: not listed
  for (const auto& p : report.points) CHECK(p.effective_macs < report.baseline_macs);
  CHECK_THROWS_WITH(analyze_sensitivity(resnet, noise_dataset(4), {"svd", {0.5}, false}), Contains("choose magnitude or channel"));
  CHECK_THROWS_WITH(analyze_sensitivity(resnet, noise_dataset(4), {"channel", {1.0}, false}), Contains("must be in [0, 1)"));
}
