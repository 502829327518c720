#include "joulecut/measure/stats.h"

#include <algorithm>
#include <cmath>

#include "joulecut/error.h"

namespace joulecut::measure {

double student_t_975(std::int64_t df) {
  JOULECUT_ASSERT(df >= 1, "degrees of freedom must be positive");
  // Exact table for small df (where the approximation below is poorest).
  static const double table[] = {12.7062, 4.3027, 3.1824, 2.7764, 2.5706, 2.4469, 2.3646, 2.3060,
                                 2.2622,  2.2281, 2.2010, 2.1788, 2.1604, 2.1448, 2.1314, 2.1199,
                                 2.1098,  2.1009, 2.0930, 2.0860, 2.0796, 2.0739, 2.0687, 2.0639,
                                 2.0595,  2.0555, 2.0518, 2.0484, 2.0452, 2.0423};
  if (df <= 30) return table[df - 1];
  // Cornish-Fisher expansion around the normal quantile; error < 1e-4 for df > 30.
  const double z = 1.959963984540054;
  const double n = double(df);
  const double z3 = z * z * z, z5 = z3 * z * z, z7 = z5 * z * z;
  return z + (z3 + z) / (4 * n) + (5 * z5 + 16 * z3 + 3 * z) / (96 * n * n) +
         (3 * z7 + 19 * z5 + 17 * z3 - 15 * z) / (384 * n * n * n);
}

MeanCI mean_ci95(const std::vector<double>& samples) {
  MeanCI out;
  out.n = std::int64_t(samples.size());
  if (samples.empty()) return out;
  double sum = 0;
  for (double v : samples) sum += v;
  out.mean = sum / double(out.n);
  if (out.n < 2) return out;
  double squares = 0;
  for (double v : samples) squares += (v - out.mean) * (v - out.mean);
  out.stddev = std::sqrt(squares / double(out.n - 1));
  out.half_width = student_t_975(out.n - 1) * out.stddev / std::sqrt(double(out.n));
  return out;
}

ProportionCI wilson_ci95(std::int64_t successes, std::int64_t trials) {
  JOULECUT_ASSERT(successes >= 0 && successes <= trials, "successes must lie in [0, trials]");
  ProportionCI out;
  out.successes = successes;
  out.trials = trials;
  if (trials == 0) return out;
  const double z = 1.959963984540054;
  const double n = double(trials);
  const double p = double(successes) / n;
  const double denom = 1 + z * z / n;
  const double centre = (p + z * z / (2 * n)) / denom;
  const double half = z * std::sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / denom;
  out.value = p;
  out.low = std::max(0.0, centre - half);
  out.high = std::min(1.0, centre + half);
  return out;
}

double quantile(std::vector<double> samples, double q) {
  if (samples.empty()) return 0;
  std::sort(samples.begin(), samples.end());
  const double pos = q * double(samples.size() - 1);
  const auto lo = std::size_t(std::floor(pos));
  const auto hi = std::min(lo + 1, samples.size() - 1);
  const double frac = pos - double(lo);
  return samples[lo] + (samples[hi] - samples[lo]) * frac;
}

std::pair<double, double> median_ci95(std::vector<double> samples) {
  std::sort(samples.begin(), samples.end());
  const double n = double(samples.size());
  // Ranks n/2 -+ 1.96 sqrt(n)/2 (normal approximation of the binomial), 1-based.
  const double spread = 1.96 * std::sqrt(n) / 2;
  const auto low = std::int64_t(std::floor(n / 2 - spread));
  const auto high = std::int64_t(std::ceil(n / 2 + spread + 1));
  const auto at = [&](std::int64_t rank) {
    return samples[std::size_t(std::clamp<std::int64_t>(rank, 1, std::int64_t(samples.size())) - 1)];
  };
  return {at(low), at(high)};
}

}  // namespace joulecut::measure
