#include <catch2/catch.hpp>
#include <sys/stat.h>
#include <unistd.h>

#include <chrono>
#include <cstdlib>
#include <thread>

#include "joulecut/measure/energy_model.h"
#include "joulecut/measure/meter.h"
#include "joulecut/error.h"
#include "powercap_fixture.h"
#include "temp_dir.h"

using namespace joulecut::measure;
using Catch::Matchers::Contains;
using Catch::Matchers::WithinAbs;
using Catch::Matchers::WithinRel;

TEST_CASE("RAPL: package and dram counted, core and uncore (children) never", "[rapl]") {
  TempDir t;
  const auto root = t.path.string();
  write_zone(root + "/intel-rapl:0", "package-0", 1000000);
  write_zone(root + "/intel-rapl:0/intel-rapl:0:0", "core", 500000);
  write_zone(root + "/intel-rapl:0/intel-rapl:0:1", "uncore", 100000);
  write_zone(root + "/intel-rapl:0/intel-rapl:0:2", "dram", 300000);
  auto meter = make_rapl_meter({root, "package+dram"});
  REQUIRE(meter->supported());
  CHECK(meter->domains() == "package-0 + dram");
  meter->start();
  set_energy(root + "/intel-rapl:0", 6000000);                // +5 J
  set_energy(root + "/intel-rapl:0/intel-rapl:0:0", 3500000);  // +3 J, inside the package: not added
  set_energy(root + "/intel-rapl:0/intel-rapl:0:2", 1300000);  // +1 J
  const auto e = meter->stop();
  CHECK_THAT(e.joules, WithinAbs(6.0, 1e-9));
  CHECK(e.provenance == Provenance::measured);
  CHECK(e.domains.size() == 2);
  CHECK(e.wraps == 0);
}

TEST_CASE("RAPL: wraparound corrected with max_energy_range_uj", "[rapl]") {
  TempDir t;
  const auto root = t.path.string();
  const auto pkg = root + "/intel-rapl:0";
  write_zone(pkg, "package-0", 900000, 1000000);
  auto meter = make_rapl_meter({root, "package"});
  REQUIRE(meter->supported());
  meter->start();
  set_energy(pkg, 100000);  // wrapped: 0.1 J to the top, 0.1 J after
  meter->poll();
  set_energy(pkg, 950000);  // +0.85 J
  meter->poll();
  set_energy(pkg, 50000);   // wrapped again: +0.1 J
  const auto e = meter->stop();
  CHECK_THAT(e.joules, WithinAbs(0.2 + 0.85 + 0.1, 1e-9));
  CHECK(e.wraps == 2);
}

TEST_CASE("RAPL: two sockets are summed", "[rapl]") {
  TempDir t;
  const auto root = t.path.string();
  write_zone(root + "/intel-rapl:0", "package-0", 0);
  write_zone(root + "/intel-rapl:1", "package-1", 0);
  write_zone(root + "/intel-rapl:1/intel-rapl:1:0", "dram", 0);
  auto meter = make_rapl_meter({root, "package+dram"});
  REQUIRE(meter->supported());
  meter->start();
  set_energy(root + "/intel-rapl:0", 2000000);
  set_energy(root + "/intel-rapl:1", 3000000);
  set_energy(root + "/intel-rapl:1/intel-rapl:1:0", 500000);
  CHECK_THAT(meter->stop().joules, WithinAbs(5.5, 1e-9));
}

TEST_CASE("RAPL: psys is its own domain, never added to packages", "[rapl]") {
  TempDir t;
  const auto root = t.path.string();
  write_zone(root + "/intel-rapl:0", "package-0", 0);
  write_zone(root + "/intel-rapl:1", "psys", 0);
  auto packages = make_rapl_meter({root, "package+dram"});
  auto psys = make_rapl_meter({root, "psys"});
  CHECK(packages->domains() == "package-0");
  CHECK(psys->domains() == "psys");
  packages->start();
  psys->start();
  set_energy(root + "/intel-rapl:0", 4000000);
  set_energy(root + "/intel-rapl:1", 9000000);
  CHECK_THAT(packages->stop().joules, WithinAbs(4.0, 1e-9));
  CHECK_THAT(psys->stop().joules, WithinAbs(9.0, 1e-9));
  CHECK_THROWS_AS(make_rapl_meter({root, "gpu"}), joulecut::UserError);
}

TEST_CASE("RAPL: dies mirroring one socket counter are counted once", "[rapl]") {
  TempDir t;
  const auto root = t.path.string();
  write_zone(root + "/intel-rapl:0", "package-0", 0);
  write_zone(root + "/intel-rapl:1", "package-0", 0);
  auto meter = make_rapl_meter({root, "package"});
  REQUIRE(meter->supported());
  CHECK_THAT(meter->domains(), Contains("package-0") && Contains("ignored: package-0 duplicate at intel-rapl:1"));
  meter->start();
  set_energy(root + "/intel-rapl:0", 1000000);
  set_energy(root + "/intel-rapl:1", 1000000);
  CHECK_THAT(meter->stop().joules, WithinAbs(1.0, 1e-9));
}

TEST_CASE("RAPL: a missing tree and no zones say why", "[rapl]") {
  TempDir t;
  auto missing = make_rapl_meter({t.file("nope"), "package+dram"});
  CHECK_FALSE(missing->supported());
  CHECK_THAT(missing->why_unsupported(), Contains("no powercap tree") && Contains("VM"));
  auto empty = make_rapl_meter({t.path.string(), "package+dram"});
  CHECK_FALSE(empty->supported());
  CHECK_THAT(empty->why_unsupported(), Contains("no RAPL zones"));
}

TEST_CASE("RAPL: permission denied gives the fix", "[rapl]") {
  TempDir t;
  const auto root = t.path.string();
  write_zone(root + "/intel-rapl:0", "package-0", 0);
  chmod(t.path.c_str(), 0755);
  chmod((root + "/intel-rapl:0").c_str(), 0755);
  chmod((root + "/intel-rapl:0/name").c_str(), 0444);
  chmod((root + "/intel-rapl:0/max_energy_range_uj").c_str(), 0444);
  chmod((root + "/intel-rapl:0/energy_uj").c_str(), 0400);  // as on Linux >= 5.10
  // Root reads anything: drop to an unprivileged user for the check, as a user would run.
  const bool was_root = geteuid() == 0;
  if (was_root) REQUIRE(seteuid(65534) == 0);
  auto meter = make_rapl_meter({root, "package+dram"});
  if (was_root) REQUIRE(seteuid(0) == 0);
  CHECK_FALSE(meter->supported());
  CHECK_THAT(meter->why_unsupported(), Contains("readable by root only") && Contains("chmod a+r"));
}

#ifdef FAKE_NVML_PATH
TEST_CASE("NVML: no library means unsupported, with the reason", "[nvml]") {
  auto meter = make_nvml_meter({"/nonexistent/libnvidia-ml.so.1", 0});
  CHECK_FALSE(meter->supported());
  CHECK_THAT(meter->why_unsupported(), Contains("cannot load /nonexistent/libnvidia-ml.so.1"));
}

TEST_CASE("NVML: total-energy counter read at window edges", "[nvml]") {
  setenv("FAKE_NVML_MODE", "counter", 1);
  auto meter = make_nvml_meter({FAKE_NVML_PATH, 0});
  REQUIRE(meter->supported());
  CHECK_THAT(meter->domains(), Contains("Fake GPU (gpu 0) total-energy counter"));
  CHECK(meter->update_period_seconds() < 0.1);  // the fake counter moves on every read
  meter->start();
  const auto e = meter->stop();  // one read after the start: +250 mJ
  CHECK_THAT(e.joules, WithinAbs(0.25, 1e-9));
  CHECK(e.provenance == Provenance::measured);
  CHECK(e.meter == "nvml");
  auto missing_gpu = make_nvml_meter({FAKE_NVML_PATH, 3});
  CHECK_FALSE(missing_gpu->supported());
  CHECK_THAT(missing_gpu->why_unsupported(), Contains("GPU 3") && Contains("Invalid Argument"));
}

TEST_CASE("NVML: without a counter, power is sampled and labelled so", "[nvml]") {
  setenv("FAKE_NVML_MODE", "no-counter", 1);
  auto meter = make_nvml_meter({FAKE_NVML_PATH, 0});
  REQUIRE(meter->supported());
  CHECK_THAT(meter->domains(), Contains("sampled"));
  meter->start();
  std::this_thread::sleep_for(std::chrono::milliseconds(300));
  const auto e = meter->stop();
  CHECK(e.provenance == Provenance::sampled);
  CHECK_THAT(e.joules, WithinRel(30.0, 0.35));  // 100 W for ~0.3 s
  unsetenv("FAKE_NVML_MODE");
}

TEST_CASE("NVML: init failure is explained", "[nvml]") {
  setenv("FAKE_NVML_MODE", "init-fails", 1);
  auto meter = make_nvml_meter({FAKE_NVML_PATH, 0});
  CHECK_FALSE(meter->supported());
  CHECK_THAT(meter->why_unsupported(), Contains("nvmlInit failed: Driver Not Loaded"));
  unsetenv("FAKE_NVML_MODE");
}
#endif

TEST_CASE("time x power model", "[energy-model]") {
  const auto model = make_time_power_model(std::nullopt, 2);
  CHECK(model.watts == 8.0);
  // 1 s of CPU on a 2-core, 8 W machine = half the CPU for a second = 4 J, over 10 inferences.
  CHECK_THAT(model_time_power(model, 1.0, 10).joules, WithinAbs(0.4, 1e-12));
  const auto given = make_time_power_model(65.0, 16);
  CHECK_THAT(model_time_power(given, 16.0, 1).joules, WithinAbs(65.0, 1e-12));
  CHECK_THROWS_AS(make_time_power_model(-1.0, 2), joulecut::UserError);
}

TEST_CASE("op count x energy per op model", "[energy-model]") {
  const auto c = default_op_energy_constants();
  CHECK_THAT(c.mac_pj.at("float32"), WithinAbs(3.7 + 0.9, 1e-12));
  CHECK_THAT(c.mac_pj.at("int8"), WithinAbs(0.2 + 0.1, 1e-12));
  CHECK_THAT(c.dram_pj_per_byte, WithinAbs(1950.0 / 8, 1e-12));
  CHECK_THAT(c.source, Contains("Horowitz"));
  OpCounts ops;
  ops.macs = 1000;
  ops.weight_bytes = 800;
  ops.activation_bytes = 200;
  ops.batch = 2;
  const auto e = model_op_energy(c, ops);
  CHECK_THAT(e.joules, WithinRel((1000 * 4.6 + 1000 * 243.75) * 1e-12 / 2, 1e-12));
  CHECK(e.model == "op count x energy per op");
  ops.dtype = "int8";
  CHECK(model_op_energy(c, ops).joules < e.joules);
  ops.dtype = "float64";
  CHECK_THROWS_WITH(model_op_energy(c, ops), Contains("float64"));
  CHECK_THROWS_WITH(parse_op_energy_constants("{}", "mine.json"), Contains("mine.json"));
}
