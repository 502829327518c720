// RAPL through the Linux powercap sysfs tree (Intel, and AMD on kernel >= 5.8).
#include <algorithm>
#include <cerrno>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <set>

#include "joulecut/error.h"
#include "joulecut/measure/meter.h"
#include "joulecut/text.h"

namespace joulecut::measure {
namespace {
namespace fs = std::filesystem;

struct Zone {
  std::string dir;
  std::string name;
  std::uint64_t max_range_uj = 0;
  std::uint64_t last_uj = 0;
  double accumulated_uj = 0;
};

bool read_text(const std::string& path, std::string* out, int* error) {
  std::ifstream in(path);
  if (!in) {
    *error = errno;
    return false;
  }
  std::getline(in, *out);
  return true;
}

std::uint64_t read_counter(const std::string& path) {
  std::string text;
  int error = 0;
  if (!read_text(path, &text, &error))
    throw UserError(path + ": cannot read RAPL counter (" + std::strerror(error) + ")");
  try {
    return std::stoull(text);
  } catch (const std::exception&) {
    throw UserError(path + ": not a RAPL counter value: '" + text + "'");
  }
}

class RaplMeter final : public Meter {
 public:
  explicit RaplMeter(const RaplOptions& options) : options_(options) { discover(); }

  std::string name() const override { return "rapl"; }
  bool supported() const override { return why_.empty(); }
  std::string why_unsupported() const override { return why_; }
  std::string domains() const override {
    std::vector<std::string> names;
    for (const auto& z : zones_) names.push_back(z.name);
    return join(names, " + ") + (dropped_.empty() ? "" : " (ignored: " + dropped_ + ")");
  }
  double update_period_seconds() const override { return 0.001; }  // ~1 ms on Intel and AMD

  void start() override {
    JOULECUT_ASSERT(supported(), "RAPL meter used while unsupported");
    wraps_ = 0;
    for (auto& z : zones_) {
      z.last_uj = read_counter(z.dir + "/energy_uj");
      z.accumulated_uj = 0;
    }
  }

  void poll() override {
    for (auto& z : zones_) {
      const std::uint64_t now = read_counter(z.dir + "/energy_uj");
      if (now >= z.last_uj) {
        z.accumulated_uj += double(now - z.last_uj);
      } else {  // the counter wrapped at max_energy_range_uj
        z.accumulated_uj += double(z.max_range_uj - z.last_uj) + double(now);
        ++wraps_;
      }
      z.last_uj = now;
    }
  }

  MeasuredEnergy stop() override { return read(); }

  MeasuredEnergy read() override {
    poll();
    MeasuredEnergy out;
    out.meter = "rapl";
    out.provenance = Provenance::measured;
    out.wraps = wraps_;
    for (const auto& z : zones_) {
      out.domains.push_back({z.name, z.accumulated_uj * 1e-6});
      out.joules += z.accumulated_uj * 1e-6;
    }
    return out;
  }

 private:
  void discover() {
    std::error_code ec;
    if (!fs::is_directory(options_.root, ec)) {
      why_ = "no powercap tree at " + options_.root +
             " (no RAPL here: a VM, a container without /sys/class/powercap, or a kernel without intel_rapl)";
      return;
    }
    std::vector<Zone> all;
    for (const auto& entry : fs::directory_iterator(options_.root, ec)) {
      const std::string base = entry.path().filename().string();
      // intel-rapl:N (package, psys) and intel-rapl:N:M (core, uncore, dram). The MMIO
      // interface (intel-rapl-mmio) mirrors the package counter and is skipped.
      if (base.rfind("intel-rapl:", 0) != 0) continue;
      collect(entry.path().string(), &all);
      for (const auto& sub : fs::directory_iterator(entry.path(), ec)) {
        const std::string sub_base = sub.path().filename().string();
        if (sub_base.rfind("intel-rapl:", 0) == 0) collect(sub.path().string(), &all);
      }
    }
    std::sort(all.begin(), all.end(), [](const Zone& a, const Zone& b) { return a.dir < b.dir; });
    if (all.empty()) {
      why_ = "no RAPL zones (intel-rapl:*) under " + options_.root;
      return;
    }
    const auto wanted = [&](const std::string& zone_name) {
      const bool package = zone_name.rfind("package", 0) == 0;
      if (options_.domains == "psys") return zone_name == "psys";
      if (options_.domains == "package") return package;
      if (options_.domains == "package+dram") return package || zone_name == "dram";
      throw UserError(option_ref("RaplOptions::domains") + " '" + options_.domains +
                      "': choose package+dram, package or psys");
    };
    std::set<std::string> seen;
    for (auto& z : all) {
      if (!wanted(z.name)) continue;
      // Multi-die parts expose one package zone per die, all mirroring one socket counter:
      // the same name twice is the same counter, counted once. (dram zones are named
      // per package by their parent directory, so they stay distinct.)
      const std::string key = z.name == "dram" ? z.dir.substr(0, z.dir.rfind(':')) + "/dram" : z.name;
      if (!seen.insert(key).second) {
        dropped_ += (dropped_.empty() ? "" : ", ") + z.name + " duplicate at " + fs::path(z.dir).filename().string();
        continue;
      }
      zones_.push_back(z);
    }
    if (zones_.empty()) {
      why_ = "no RAPL zone matches '" + options_.domains + "' under " + options_.root;
      return;
    }
    // energy_uj is readable by root only since Linux 5.10 (CVE-2020-8694).
    for (const auto& z : zones_) {
      std::string text;
      int error = 0;
      if (!read_text(z.dir + "/energy_uj", &text, &error)) {
        if (error == EACCES || error == EPERM)
          why_ = z.dir + "/energy_uj is readable by root only (Linux >= 5.10, CVE-2020-8694): run as root, or "
                 "grant read access: sudo chmod a+r " + options_.root + "/intel-rapl:*/energy_uj " + options_.root +
                 "/intel-rapl:*/intel-rapl:*/energy_uj (or a udev rule to keep it across reboots)";
        else
          why_ = z.dir + "/energy_uj: " + std::strerror(error);
        zones_.clear();
        return;
      }
    }
  }

  static void collect(const std::string& dir, std::vector<Zone>* out) {
    Zone z;
    z.dir = dir;
    std::string text;
    int error = 0;
    if (!read_text(dir + "/name", &z.name, &error)) return;
    if (read_text(dir + "/max_energy_range_uj", &text, &error)) {
      try {
        z.max_range_uj = std::stoull(text);
      } catch (const std::exception&) {
        z.max_range_uj = 0;
      }
    }
    out->push_back(z);
  }

  RaplOptions options_;
  std::vector<Zone> zones_;
  std::string why_;
  std::string dropped_;
  int wraps_ = 0;
};

}  // namespace

std::unique_ptr<Meter> make_rapl_meter(const RaplOptions& options) { return std::make_unique<RaplMeter>(options); }

}  // namespace joulecut::measure
