#include "joulecut/observers.h"

#include <cstdio>
#include <algorithm>
#include <cmath>
#include <limits>

#include "joulecut/error.h"
#include "joulecut/text.h"

namespace joulecut {
namespace {

void check_finite(const float* data, std::size_t count, const std::string& observer) {
  for (std::size_t i = 0; i < count; ++i)
    if (!std::isfinite(data[i]))
      throw UserError(observer + " observer: the calibration activations contain NaN or infinity");
}

class MinMax final : public Observer {
 public:
  void observe(const float* data, std::size_t count) override {
    check_finite(data, count, name());
    for (std::size_t i = 0; i < count; ++i) {
      min_ = std::min(min_, data[i]);
      max_ = std::max(max_, data[i]);
    }
    seen_ += count;
  }
  QuantRange range() const override {
    JOULECUT_ASSERT(seen_ > 0, "range() before observe()");
    return affine_uint8(min_, max_);
  }
  std::string name() const override { return "minmax"; }

 private:
  float min_ = std::numeric_limits<float>::infinity();
  float max_ = -std::numeric_limits<float>::infinity();
  std::size_t seen_ = 0;
};

// A histogram over [lo, hi] that widens (re-binning its counts) when new data falls outside.
// Shared by the percentile, entropy and mse observers.
class Histogram {
 public:
  static constexpr int kBins = 2048;
  void add(const float* data, std::size_t count) {
    if (count == 0) return;
    const auto [lo_it, hi_it] = std::minmax_element(data, data + count);
    widen(*lo_it, *hi_it);
    const double width = (hi_ - lo_) / kBins;
    for (std::size_t i = 0; i < count; ++i) {
      int bin = width > 0 ? int((data[i] - lo_) / width) : 0;
      counts_[std::size_t(std::clamp(bin, 0, kBins - 1))] += 1;
    }
    total_ += double(count);
  }
  double lo() const { return lo_; }
  double hi() const { return hi_; }
  double total() const { return total_; }
  double width() const { return (hi_ - lo_) / kBins; }
  const std::vector<double>& counts() const { return counts_; }

 private:
  void widen(double lo, double hi) {
    if (total_ == 0) {
      lo_ = std::min(lo, 0.0);
      hi_ = std::max(hi, 0.0);
      if (hi_ == lo_) hi_ = lo_ + 1e-6;
      return;
    }
    if (lo >= lo_ && hi <= hi_) return;
    const double new_lo = std::min(lo, lo_), new_hi = std::max(hi, hi_);
    std::vector<double> moved(kBins, 0.0);
    const double old_width = width(), new_width = (new_hi - new_lo) / kBins;
    for (int b = 0; b < kBins; ++b) {
      const double centre = lo_ + (b + 0.5) * old_width;
      moved[std::size_t(std::clamp(int((centre - new_lo) / new_width), 0, kBins - 1))] += counts_[std::size_t(b)];
    }
    counts_ = std::move(moved);
    lo_ = new_lo;
    hi_ = new_hi;
  }
  double lo_ = 0, hi_ = 0, total_ = 0;
  std::vector<double> counts_ = std::vector<double>(kBins, 0.0);
};

class HistogramObserver : public Observer {
 public:
  void observe(const float* data, std::size_t count) override {
    check_finite(data, count, name());
    histogram_.add(data, count);
  }

 protected:
  const Histogram& histogram() const {
    JOULECUT_ASSERT(histogram_.total() > 0, "range() before observe()");
    return histogram_;
  }

 private:
  Histogram histogram_;
};

class Percentile final : public HistogramObserver {
 public:
  explicit Percentile(double p) : p_(p) {}
  QuantRange range() const override {
    const Histogram& h = histogram();
    const double tail = h.total() * (100.0 - p_) / 100.0;
    // Lowest and highest bin edges that leave at most `tail` values outside on each side.
    double below = 0;
    int first = 0;
    while (first < Histogram::kBins - 1 && below + h.counts()[std::size_t(first)] <= tail)
      below += h.counts()[std::size_t(first++)];
    double above = 0;
    int last = Histogram::kBins - 1;
    while (last > first && above + h.counts()[std::size_t(last)] <= tail) above += h.counts()[std::size_t(last--)];
    return affine_uint8(float(h.lo() + first * h.width()), float(h.lo() + (last + 1) * h.width()));
  }
  std::string name() const override { return "percentile"; }

 private:
  double p_;
};

// Candidate clipping ranges [lo, hi] for the search observers: the upper edge moves inward
// for non-negative data (post-ReLU activations); both edges move together otherwise.
template <typename Cost>
QuantRange search(const Histogram& h, Cost cost) {
  const bool signed_data = h.lo() < 0 && h.hi() > 0;
  double best = std::numeric_limits<double>::infinity();
  QuantRange chosen = affine_uint8(float(h.lo()), float(h.hi()));
  for (int keep = 256; keep <= Histogram::kBins; keep += 16) {
    const double fraction = double(keep) / Histogram::kBins;
    const double lo = signed_data ? h.lo() * fraction : h.lo(), hi = h.hi() * fraction;
    const double c = cost(lo, hi);
    if (c < best) {
      best = c;
      chosen = affine_uint8(float(lo), float(hi));
    }
  }
  return chosen;
}

class Mse final : public HistogramObserver {
 public:
  QuantRange range() const override {
    const Histogram& h = histogram();
    return search(h, [&](double lo, double hi) {
      const QuantRange r = affine_uint8(float(lo), float(hi));
      double error = 0;
      for (int b = 0; b < Histogram::kBins; ++b) {
        const double n = h.counts()[std::size_t(b)];
        if (n == 0) continue;
        const double x = h.lo() + (b + 0.5) * h.width();
        const double q = std::clamp(std::nearbyint(x / r.scale) + r.zero_point, 0.0, 255.0);
        const double back = (q - r.zero_point) * r.scale;
        error += n * (x - back) * (x - back);
      }
      return error;
    });
  }
  std::string name() const override { return "mse"; }
};

class Entropy final : public HistogramObserver {
 public:
  QuantRange range() const override {
    const Histogram& h = histogram();
    return search(h, [&](double lo, double hi) {
      // Reference distribution P: the histogram inside [lo, hi] with the outliers folded into the
      // edge bins. Candidate Q: the histogram inside [lo, hi] without them, merged into 256
      // levels and spread back evenly over each level's non-empty bins. Cost: KL(P || Q), as in
      // TensorRT's calibrator: clipping too tightly shows up as mass Q lacks at the edges.
      const int first = int(std::lround((lo - h.lo()) / h.width())), last = int(std::lround((hi - h.lo()) / h.width()));
      const int bins = std::max(last - first, 1);
      std::vector<double> p(std::size_t(bins), 0.0), inside(std::size_t(bins), 0.0);
      for (int b = 0; b < Histogram::kBins; ++b) {
        p[std::size_t(std::clamp(b - first, 0, bins - 1))] += h.counts()[std::size_t(b)];
        if (b >= first && b < first + bins) inside[std::size_t(b - first)] += h.counts()[std::size_t(b)];
      }
      std::vector<double> q(p.size(), 0.0);
      const int levels = std::min(256, bins);
      for (int level = 0; level < levels; ++level) {
        const int begin = level * bins / levels, end = (level + 1) * bins / levels;
        double mass = 0;
        int nonzero = 0;
        for (int b = begin; b < end; ++b) {
          mass += inside[std::size_t(b)];
          nonzero += inside[std::size_t(b)] > 0;
        }
        for (int b = begin; b < end; ++b)
          if (inside[std::size_t(b)] > 0) q[std::size_t(b)] = mass / nonzero;
      }
      // Q is smoothed where it has no mass but P does (the folded outliers), as TensorRT does.
      double q_total = 0;
      for (double v : q) q_total += v;
      if (q_total == 0) return std::numeric_limits<double>::infinity();
      double kl = 0;
      for (std::size_t b = 0; b < p.size(); ++b) {
        if (p[b] == 0) continue;
        const double pb = p[b] / h.total(), qb = std::max(q[b] / q_total, 1e-8);
        kl += pb * std::log(pb / qb);
      }
      return kl;
    });
  }
  std::string name() const override { return "entropy"; }
};

}  // namespace

QuantRange affine_uint8(float min, float max) {
  QuantRange r;
  r.min = std::min(min, 0.0f);
  r.max = std::max(max, 0.0f);
  if (r.max - r.min < 1e-8f) r.max = r.min + 1e-8f;
  r.scale = (r.max - r.min) / 255.0f;
  r.zero_point = std::int32_t(std::clamp(std::lround(-r.min / r.scale), 0L, 255L));
  return r;
}

std::unique_ptr<Observer> make_observer(const std::string& name, double percentile) {
  if (name == "minmax") return std::make_unique<MinMax>();
  if (name == "percentile") {
    if (!(percentile > 0 && percentile <= 100))
      throw UserError("percentile " + format("%.10g", percentile) + " must be in (0, 100] (e.g. 99.99)");
    return std::make_unique<Percentile>(percentile);
  }
  if (name == "entropy") return std::make_unique<Entropy>();
  if (name == "mse") return std::make_unique<Mse>();
  throw UserError("unknown observer '" + name + "': choose minmax, percentile, entropy or mse");
}

std::vector<float> symmetric_int8_scales(const float* weight, std::int64_t rows, std::int64_t cols) {
  std::vector<float> scales(std::size_t(rows), 1.0f);
  for (std::int64_t r = 0; r < rows; ++r) {
    float largest = 0;
    for (std::int64_t c = 0; c < cols; ++c) largest = std::max(largest, std::fabs(weight[r * cols + c]));
    if (largest > 0) scales[std::size_t(r)] = largest / 127.0f;
  }
  return scales;
}

}  // namespace joulecut
