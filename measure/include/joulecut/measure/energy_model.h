#pragma once
// Modeled energy, for machines without energy counters (VMs, these CI machines) and as a
// cross-check where counters exist. Every result is a ModeledEnergy. Torch-free.
#include <cstdint>
#include <map>
#include <optional>
#include <string>

#include "joulecut/measure/energy.h"

namespace joulecut::measure {

// time x power: P = W x (share of the CPU used), as CodeCarbon does without counters.
struct TimePowerModel {
  double watts = 0;    // power of the whole CPU at full load
  int logical_cores = 1;
  std::string source;  // where `watts` comes from
};

// With `cpu_watts` (e.g. the CPU's TDP from its datasheet) that figure is used; otherwise
// 4 W per logical core, CodeCarbon's constant for an unknown CPU.
TimePowerModel make_time_power_model(std::optional<double> cpu_watts, int logical_cores);

// "45.0 W x CPU share over 2 logical cores; W from ...": the model and its constants, for
// tables and manifests.
std::string describe_time_power(const TimePowerModel& model);

// Energy per inference for a window that used `cpu_seconds` of process CPU time (all
// threads) to run `inferences`: W x cpu_seconds / logical_cores / inferences.
ModeledEnergy model_time_power(const TimePowerModel& model, double cpu_seconds, double inferences);

// op count x energy per op, bytes moved x energy per byte (Horowitz 2014 by default).
struct OpEnergyConstants {
  std::map<std::string, double> mac_pj;  // dtype ("float32", "int8"...) -> pJ per MAC
  double dram_pj_per_byte = 0;
  std::string source;
};

// Parses measure/data/energy_per_op.json (or a user's file of the same shape); `origin`
// names it in errors.
OpEnergyConstants parse_op_energy_constants(const std::string& json, const std::string& origin);
// The constants compiled into joulecut (from measure/data/energy_per_op.json).
OpEnergyConstants default_op_energy_constants();

struct OpCounts {
  std::int64_t macs = 0;              // per batch
  std::string dtype = "float32";      // of `macs`, unless macs_by_dtype says otherwise
  std::map<std::string, std::int64_t> macs_by_dtype;  // mixed precision: MACs per weight dtype
  std::int64_t weight_bytes = 0;      // read once per batch
  std::int64_t activation_bytes = 0;  // per batch
  std::int64_t batch = 1;
};

// Throws UserError if the constants have no entry for the dtype.
ModeledEnergy model_op_energy(const OpEnergyConstants& constants, const OpCounts& counts);

}  // namespace joulecut::measure
