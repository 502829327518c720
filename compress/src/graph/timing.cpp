#include "joulecut/timing.h"

#include <algorithm>
#include <chrono>
#include <limits>
#include <utility>
#include <vector>

namespace joulecut {
namespace {

using Clock = std::chrono::steady_clock;

double microseconds_of(const std::function<void()>& f) {
  const auto start = Clock::now();
  f();
  return std::chrono::duration<double, std::micro>(Clock::now() - start).count();
}

// The k-th smallest of `v` (0-based).
double kth_smallest(std::vector<double> v, std::size_t k) {
  std::nth_element(v.begin(), v.begin() + k, v.end());
  return v[k];
}

double quantile(std::vector<double> v, double q) {
  const auto k = std::size_t(q * double(v.size() - 1));
  return kth_smallest(std::move(v), k);
}

double median(std::vector<double> v) {
  const std::size_t k = v.size() / 2;
  return kth_smallest(std::move(v), k);
}

}  // namespace

PairTiming TimingService::compare(const std::string&, const std::function<void()>& a, const std::function<void()>& b,
                                  double budget_seconds) const {
  for (int i = 0; i < 3; ++i) {
    a();
    b();
  }
  std::vector<double> ta, tb;
  const auto deadline = Clock::now() + std::chrono::duration<double>(budget_seconds);
  while (ta.size() < 9 || (ta.size() < 101 && Clock::now() < deadline)) {
    ta.push_back(microseconds_of(a));
    tb.push_back(microseconds_of(b));
  }
  return {quantile(ta, 0.1), quantile(tb, 0.1)};
}

double TimingService::median_us(const std::string&, const std::function<void()>& f, int warmup, int repeats) const {
  for (int i = 0; i < warmup; ++i) f();
  std::vector<double> times;
  for (int i = 0; i < std::max(repeats, 1); ++i) times.push_back(microseconds_of(f));
  return median(times);
}

std::vector<double> TimingService::fastest_us(const std::string&, const std::vector<std::function<void()>>& candidates,
                                              int rounds, int calls) const {
  std::vector<double> best(candidates.size(), std::numeric_limits<double>::infinity());
  for (int round = 0; round < rounds; ++round)
    for (std::size_t c = 0; c < candidates.size(); ++c)
      for (int call = 0; call < calls; ++call) best[c] = std::min(best[c], microseconds_of(candidates[c]));
  return best;
}

const TimingService& default_timing() {
  static const TimingService service;
  return service;
}

}  // namespace joulecut
