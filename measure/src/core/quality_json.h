#pragma once
// MeasurementQuality in JSON, the same in ledgers and reports. Torch-free.
#include <nlohmann/json.hpp>

#include "joulecut/measure/stats.h"

namespace joulecut::measure {

inline nlohmann::json quality_json(const MeasurementQuality& q) {
  return {{"rounds", q.rounds},         {"relative_half_width", q.relative_half_width},
          {"wide_limit", q.limit},      {"wide_interval", q.wide()},
          {"other_load", q.other_load}, {"steal", q.steal}};
}

// Missing keys (lines written before the harness recorded them) keep the defaults.
inline MeasurementQuality quality_from_json(const nlohmann::json& j) {
  MeasurementQuality q;
  q.rounds = j.value("rounds", 1);
  q.relative_half_width = j.value("relative_half_width", 0.0);
  q.limit = j.value("wide_limit", 0.10);
  q.other_load = j.value("other_load", -1.0);
  q.steal = j.value("steal", -1.0);
  return q;
}

}  // namespace joulecut::measure
