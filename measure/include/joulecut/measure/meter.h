#pragma once
// Hardware energy meters. Each reports whether it works here and, if not, why; creating one
// where the hardware is absent gives a valid object that says so (supported() == false).
// Torch-free.
#include <memory>
#include <string>
#include <vector>

#include "joulecut/measure/energy.h"

namespace joulecut::measure {

class Meter {
 public:
  virtual ~Meter() = default;
  virtual std::string name() const = 0;
  virtual bool supported() const = 0;
  // Why the meter cannot be used, and how to fix it where there is a fix. Empty if supported.
  virtual std::string why_unsupported() const = 0;
  // What is read, e.g. "package-0 + dram" or "NVIDIA H100 (gpu 0) total energy counter".
  virtual std::string domains() const = 0;
  // The counter's update period in seconds; windows must be many of these long.
  virtual double update_period_seconds() const = 0;
  // Precondition for start/stop/poll: supported().
  virtual void start() = 0;
  // Reads the counters often enough that they cannot wrap unnoticed; the runner calls this
  // between inferences during long windows.
  virtual void poll() = 0;
  // Energy since start() so far; the window stays open (nested windows subtract readings).
  virtual MeasuredEnergy read() = 0;
  // Energy since start(); ends the window.
  virtual MeasuredEnergy stop() = 0;
};

struct RaplOptions {
  std::string root = "/sys/class/powercap";
  // "package+dram" (default: every CPU package and its DRAM), "package", or "psys" (the
  // whole SoC/platform where the firmware exposes it). Parents and children are never summed.
  std::string domains = "package+dram";
};

std::unique_ptr<Meter> make_rapl_meter(const RaplOptions& options = {});

struct NvmlOptions {
  std::string library = "libnvidia-ml.so.1";  // dlopen'ed: no link dependency on the driver
  unsigned device_index = 0;
};

std::unique_ptr<Meter> make_nvml_meter(const NvmlOptions& options = {});

}  // namespace joulecut::measure
