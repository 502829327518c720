#pragma once
// Internal: the ratio rules both result models use (the ledger's rows in ledger.cpp and
// tradeoff.cpp, the comparison report's runs in report.cpp). Reporters print the ratios
// these give and compute none. Torch-free.
#include <optional>

namespace joulecut::measure::ratios {

// baseline / value: > 1 is better (faster, less energy, smaller). 0 when `value` is not
// positive (unknown); reporters print a ratio that is not positive as unknown.
inline double against(double baseline, double value) { return value > 0 ? baseline / value : 0; }

// Speed-up: the baseline's p50 latency / this one's.
inline double speedup(double baseline_p50, double p50) { return against(baseline_p50, p50); }

// The energy-ratio rule: compare like with like, the meters' figures when both sides have
// one, else the time x power model's on both sides; `metered` says which.
struct Energy {
  double value = 0;
  bool metered = false;
};
inline Energy energy(std::optional<double> baseline_meter, double baseline_modeled, std::optional<double> meter,
                     double modeled) {
  const bool metered = baseline_meter && meter;
  return {metered ? against(*baseline_meter, *meter) : against(baseline_modeled, modeled), metered};
}

}  // namespace joulecut::measure::ratios
