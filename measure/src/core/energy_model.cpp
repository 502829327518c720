#include "joulecut/measure/energy_model.h"

#include <nlohmann/json.hpp>

#include <algorithm>
#include <map>
#include <vector>

#include "joulecut/error.h"
#include "joulecut/measure/energy_per_op_data.h"
#include "joulecut/text.h"

namespace joulecut::measure {

TimePowerModel make_time_power_model(std::optional<double> cpu_watts, int logical_cores) {
  TimePowerModel model;
  model.logical_cores = logical_cores > 0 ? logical_cores : 1;
  if (cpu_watts) {
    if (*cpu_watts <= 0) throw UserError(option_ref("RunOptions::cpu_watts") + " must be positive");
    model.watts = *cpu_watts;
    model.source = "--cpu-watts (user-supplied)";
  } else {
    model.watts = 4.0 * model.logical_cores;
    model.source = "4 W per logical core (CodeCarbon's constant for an unknown CPU); give --cpu-watts TDP for yours";
  }
  return model;
}

std::string describe_time_power(const TimePowerModel& model) {
  return format("%.1f W x CPU share over %d logical cores; W from %s", model.watts, model.logical_cores,
                model.source.c_str());
}

ModeledEnergy model_time_power(const TimePowerModel& model, double cpu_seconds, double inferences) {
  JOULECUT_ASSERT(inferences > 0, "a window must contain inferences");
  ModeledEnergy out;
  out.model = "time x power";
  out.joules = model.watts * cpu_seconds / double(model.logical_cores) / inferences;
  out.detail = describe_time_power(model);
  return out;
}

OpEnergyConstants parse_op_energy_constants(const std::string& text, const std::string& origin) {
  try {
    const auto j = nlohmann::json::parse(text);
    OpEnergyConstants c;
    c.source = j.at("source").get<std::string>();
    for (const auto& [dtype, costs] : j.at("mac_pj").items())
      c.mac_pj[dtype] = costs.at("mult").get<double>() + costs.at("add").get<double>();
    c.dram_pj_per_byte = j.at("dram_pj_per_64bit").at("used").get<double>() / 8.0;
    if (c.mac_pj.empty() || c.dram_pj_per_byte <= 0) throw UserError(origin + ": no MAC or DRAM energies");
    return c;
  } catch (const nlohmann::json::exception& e) {
    throw UserError(origin + ": not an energy-per-op file (" + std::string(e.what()) + ")");
  }
}

OpEnergyConstants default_op_energy_constants() {
  return parse_op_energy_constants(kEnergyPerOpJson, "measure/data/energy_per_op.json");
}

ModeledEnergy model_op_energy(const OpEnergyConstants& constants, const OpCounts& counts) {
  JOULECUT_ASSERT(counts.batch > 0, "batch must be positive");
  std::map<std::string, std::int64_t> macs = counts.macs_by_dtype;
  if (macs.empty()) macs[counts.dtype] = counts.macs;
  double arithmetic_pj = 0;
  std::vector<std::string> per_mac;
  for (const auto& [dtype, count] : macs) {
    const auto it = constants.mac_pj.find(dtype);
    if (it == constants.mac_pj.end()) throw UserError("no energy per MAC for dtype " + dtype + " in the energy constants");
    arithmetic_pj += double(count) * it->second;
    per_mac.push_back(format("%s MAC %.2f pJ", dtype.c_str(), it->second));
  }
  const double memory_pj = double(counts.weight_bytes + counts.activation_bytes) * constants.dram_pj_per_byte;
  ModeledEnergy out;
  out.model = "op count x energy per op";
  out.joules = (arithmetic_pj + memory_pj) * 1e-12 / double(counts.batch);
  out.detail = format("%s, DRAM %.1f pJ/byte; %.0f%% of it memory", join(per_mac, ", ").c_str(),
                      constants.dram_pj_per_byte, 100.0 * memory_pj / std::max(1e-30, arithmetic_pj + memory_pj));
  return out;
}

}  // namespace joulecut::measure
