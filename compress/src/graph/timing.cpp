#include "joulecut/timing.h"

#include <algorithm>
#include <chrono>
#include <cmath>
#include <vector>

namespace joulecut {
namespace {

using Clock = std::chrono::steady_clock;

double microseconds_of(const std::function<void()>& f) {
  const auto start = Clock::now();
  f();
  return std::chrono::duration<double, std::micro>(Clock::now() - start).count();
}

double median(std::vector<double> v) {
  std::nth_element(v.begin(), v.begin() + v.size() / 2, v.end());
  return v[v.size() / 2];
}

// The order statistics bounding the median of n samples with 95% confidence (normal
// approximation to the binomial: n/2 -+ 1.96 sqrt(n)/2), clamped to the sample.
std::pair<double, double> median_interval(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  const double n = double(v.size());
  const double half_width = 1.96 * std::sqrt(n) / 2;
  const auto low = std::size_t(std::max(0.0, std::floor(n / 2 - half_width)));
  const auto high = std::size_t(std::min(n - 1, std::ceil(n / 2 + half_width)));
  return {v[low], v[high]};
}

}  // namespace

PairTiming TimingService::compare(const std::string&, const std::function<void()>& a, const std::function<void()>& b,
                                  double budget_seconds) const {
  for (int i = 0; i < 3; ++i) {
    a();
    b();
  }
  std::vector<double> ta, tb, ratios;
  const auto deadline = Clock::now() + std::chrono::duration<double>(budget_seconds);
  while (ta.size() < 9 || (ta.size() < 101 && Clock::now() < deadline)) {
    ta.push_back(microseconds_of(a));
    tb.push_back(microseconds_of(b));
    ratios.push_back(tb.back() / std::max(ta.back(), 1e-3));
  }
  PairTiming timing;
  timing.a_us = median(ta);
  timing.b_us = median(tb);
  std::tie(timing.ratio_low, timing.ratio_high) = median_interval(ratios);
  timing.pairs = int(ta.size());
  return timing;
}

double TimingService::median_us(const std::string&, const std::function<void()>& f, int warmup, int repeats) const {
  for (int i = 0; i < warmup; ++i) f();
  std::vector<double> times;
  for (int i = 0; i < std::max(repeats, 1); ++i) times.push_back(microseconds_of(f));
  return median(times);
}

const TimingService& default_timing() {
  static const TimingService service;
  return service;
}

}  // namespace joulecut
