#include <catch2/catch.hpp>

#include <algorithm>
#include <cmath>
#include <random>

#include "joulecut/error.h"
#include "joulecut/observers.h"

using namespace joulecut;
using Catch::Matchers::Contains;

namespace {
// Post-ReLU-like activations: half-normal, plus a few far outliers.
std::vector<float> activations(std::size_t n, float outlier, unsigned seed = 7) {
  std::mt19937 gen(seed);
  std::normal_distribution<float> normal(0, 1);
  std::vector<float> v(n);
  for (auto& x : v) x = std::fabs(normal(gen));
  for (std::size_t i = 0; i < n; i += n / 4) v[i] = outlier;
  return v;
}
double quantization_mse(const std::vector<float>& v, const QuantRange& r) {
  double e = 0;
  for (float x : v) {
    const double q = std::clamp(std::nearbyint(double(x) / r.scale) + r.zero_point, 0.0, 255.0);
    e += std::pow(x - (q - r.zero_point) * r.scale, 2);
  }
  return e / double(v.size());
}
}  // namespace

TEST_CASE("uint8 affine parameters keep zero exact", "[observers]") {
  const auto r = affine_uint8(-1.0f, 3.0f);
  CHECK(r.scale == Approx(4.0 / 255));
  CHECK(r.zero_point == 64);  // round(1 / (4/255)) = round(63.75)
  CHECK(affine_uint8(0.5f, 2.0f).min == 0.0f);  // widened to contain 0
  CHECK(affine_uint8(0, 0).scale > 0);
}

TEST_CASE("observers choose clipping ranges as their methods say", "[observers]") {
  const auto data = activations(100000, 40.0f);
  auto minmax = make_observer("minmax");
  // Two batches: the histogram observers must widen as larger values arrive.
  auto feed = [&](Observer& o) {
    o.observe(data.data(), data.size() / 2);
    o.observe(data.data() + data.size() / 2, data.size() - data.size() / 2);
  };
  feed(*minmax);
  CHECK(minmax->range().max == Approx(40.0f));
  CHECK(minmax->range().min == 0.0f);
  auto percentile = make_observer("percentile", 99.9);
  feed(*percentile);
  // 99.9% of a half-normal lies below about 3.3; the outliers (4 values) are clipped.
  CHECK(percentile->range().max == Approx(3.3).margin(0.15));
  auto mse = make_observer("mse"), entropy = make_observer("entropy");
  feed(*mse);
  feed(*entropy);
  // Entropy clips the outliers: the distribution's shape matters, not the 4 far values.
  CHECK(entropy->range().max < 20.0f);
  CHECK(entropy->range().max > 2.0f);
  // MSE keeps them here (clipping 4 values at 40 would cost more squared error than the
  // coarser steps do), and its range has the lowest quantization error of the four.
  const double best = quantization_mse(data, mse->range());
  for (const auto* o : {minmax.get(), percentile.get(), entropy.get()})
    CHECK(best <= quantization_mse(data, o->range()) * 1.01);
}

TEST_CASE("signed data keeps both tails", "[observers]") {
  std::mt19937 gen(3);
  std::normal_distribution<float> normal(0, 1);
  std::vector<float> v(50000);
  for (auto& x : v) x = normal(gen);
  for (const char* name : {"minmax", "percentile", "entropy", "mse"}) {
    auto o = make_observer(name, 99.99);
    o->observe(v.data(), v.size());
    INFO(name);
    CHECK(o->range().min < -2.0f);
    CHECK(o->range().max > 2.0f);
    CHECK(o->range().zero_point > 100);
    CHECK(o->range().zero_point < 156);
  }
}

TEST_CASE("bad observer settings and data are named", "[observers]") {
  CHECK_THROWS_WITH(make_observer("kl"), Contains("unknown observer 'kl'") && Contains("entropy"));
  CHECK_THROWS_WITH(make_observer("percentile", 0), Contains("must be in (0, 100]"));
  CHECK_THROWS_WITH(make_observer("percentile", 100.5), Contains("must be in (0, 100]"));
  auto o = make_observer("mse");
  const float bad[] = {1.0f, NAN};
  CHECK_THROWS_WITH(o->observe(bad, 2), Contains("NaN or infinity"));
}

TEST_CASE("per-channel symmetric weight scales", "[observers]") {
  const float w[] = {0.5f, -1.27f, 0.0f, 0.0f, 0.0f, 0.0f, 2.54f, 1.0f, -0.1f};
  const auto scales = symmetric_int8_scales(w, 3, 3);
  CHECK(scales[0] == Approx(0.01));
  CHECK(scales[1] == 1.0f);  // all-zero row
  CHECK(scales[2] == Approx(0.02));
}
