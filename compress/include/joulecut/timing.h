#pragma once
// The timing service passes receive through their context (PassContext::timing) when a choice
// depends on speed (a kernel, a layer's precision, a sparse kernel, the teacher's batch). One
// implementation of interleaved repeats, so every timed decision follows the same protocol;
// tests hand a pass a clock of their own (a TimingService whose compare returns chosen times)
// through PassContext::timing to force the decision.
#include <functional>
#include <string>
#include <vector>

namespace joulecut {

struct PairTiming {
  // Each side's fast runs, microseconds: the 10th percentile of its runs (the fastest of 9).
  // Preemption and other load only ever add time, to some runs: a low quantile stays where the
  // code's own speed is, where a mean or a median moves with the load.
  double a_us = 0, b_us = 0;
};

// A timed choice leaves its default (int8 for a layer, the whole model all int8, frozen +
// optimize_for_inference for a deployable form) only for a candidate clearly faster: by more
// than this fraction. A near tie is noise's to decide, and would flip between runs.
constexpr double kClearlyFasterMargin = 0.10;
inline bool clearly_faster(double candidate_us, double default_us) {
  return candidate_us < (1 - kClearlyFasterMargin) * default_us;
}

class TimingService {
 public:
  virtual ~TimingService() = default;
  // `a` and `b` run alternately (so drift and other load hit both alike) after 3 warm-up pairs,
  // for at least 9 pairs and up to `budget_seconds` or 101 pairs; each side's 10th percentile
  // (PairTiming). `what` names the comparison
  // ("layer conv1: fp32 vs int8"), for a service that records or fakes it.
  virtual PairTiming compare(const std::string& what, const std::function<void()>& a, const std::function<void()>& b,
                             double budget_seconds) const;
  // The median of `repeats` runs of `f` after `warmup` untimed ones, microseconds.
  virtual double median_us(const std::string& what, const std::function<void()>& f, int warmup, int repeats) const;
  // Several candidates in `rounds` interleaved rounds of `calls` calls each (no warm-up: the
  // caller's first calls are): each one's fastest call, microseconds, in their order.
  virtual std::vector<double> fastest_us(const std::string& what, const std::vector<std::function<void()>>& candidates,
                                         int rounds, int calls) const;
};

// The service a PassContext without one uses.
const TimingService& default_timing();

}  // namespace joulecut
