#pragma once
// Summary statistics used for every figure joulecut prints. Torch-free.
#include <cstdint>
#include <utility>
#include <vector>

namespace joulecut::measure {

// Mean of repeated windows with a two-sided 95% confidence interval from Student's t.
// How far a measurement can be trusted: window sets run (> 1: an earlier, noisier set was
// discarded), the kept set's widest interval (latency or energy) as half-width over mean, the
// harness' limit on it, and what else used the machine's CPUs meanwhile, as shares of its CPU
// time: other processes (from /proc/stat, minus this process) and the hypervisor (steal); < 0:
// unknown. Measured, like the figures it qualifies.
struct MeasurementQuality {
  int rounds = 1;
  double relative_half_width = 0;
  double limit = 0.10;
  double other_load = -1, steal = -1;
  bool wide() const { return relative_half_width > limit; }  // still wide after the last round
};

struct MeanCI {
  double mean = 0;
  double half_width = 0;  // the interval is mean +- half_width; 0 when n < 2 (unknown, see n)
  double stddev = 0;      // sample standard deviation (n - 1)
  std::int64_t n = 0;
  double low() const { return mean - half_width; }
  double high() const { return mean + half_width; }
};

// Precondition: none; an empty sample gives n == 0 and zeros.
MeanCI mean_ci95(const std::vector<double>& samples);

// Two-sided 97.5% quantile of Student's t with `df` degrees of freedom (df >= 1).
double student_t_975(std::int64_t df);

// A proportion (e.g. top-1 accuracy) with its 95% Wilson score interval, which stays
// inside [0, 1] and behaves at small n, unlike the normal approximation.
struct ProportionCI {
  double value = 0;
  double low = 0;
  double high = 0;
  std::int64_t successes = 0;
  std::int64_t trials = 0;
};

// Precondition: 0 <= successes <= trials.
ProportionCI wilson_ci95(std::int64_t successes, std::int64_t trials);

// The median's 95% confidence interval from order statistics: distribution-free, for
// latencies, which are skewed. Precondition: samples non-empty. Returns {low, high}; with
// fewer than 6 samples the interval is the whole range.
std::pair<double, double> median_ci95(std::vector<double> samples);

// Quantile by linear interpolation between order statistics (q in [0, 1]).
double quantile(std::vector<double> samples, double q);

}  // namespace joulecut::measure
