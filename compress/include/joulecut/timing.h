#pragma once
// The timing service passes receive through their context (PassContext::timing) when a choice
// depends on speed (a kernel, a layer's precision, a sparse kernel, the teacher's batch). One
// implementation of interleaved repeats, so every timed decision follows the same protocol;
// tests hand a pass a clock of their own (a TimingService whose compare returns chosen times)
// through PassContext::timing to force the decision.
#include <functional>
#include <string>

namespace joulecut {

struct PairTiming {
  double a_us = 0, b_us = 0;  // the median run of each, microseconds
};

class TimingService {
 public:
  virtual ~TimingService() = default;
  // `a` and `b` run alternately (so drift and other load hit both alike) after 3 warm-up pairs,
  // for at least 9 pairs and up to `budget_seconds` or 101 pairs. `what` names the comparison
  // ("layer conv1: fp32 vs int8"), for a service that records or fakes it.
  virtual PairTiming compare(const std::string& what, const std::function<void()>& a, const std::function<void()>& b,
                             double budget_seconds) const;
  // The median of `repeats` runs of `f` after `warmup` untimed ones, microseconds.
  virtual double median_us(const std::string& what, const std::function<void()>& f, int warmup, int repeats) const;
};

// The service a PassContext without one uses.
const TimingService& default_timing();

}  // namespace joulecut
