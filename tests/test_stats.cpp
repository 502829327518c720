#include <catch2/catch.hpp>

#include "joulecut/measure/stats.h"

using namespace joulecut::measure;
using Catch::Matchers::WithinAbs;
using Catch::Matchers::WithinRel;

TEST_CASE("mean and Student-t 95% interval", "[stats]") {
  // Reference: scipy.stats.t.interval(0.95, 4, loc=3, scale=sem([1,2,3,4,5])) = (1.0367, 4.9633)
  const auto ci = mean_ci95({1, 2, 3, 4, 5});
  CHECK(ci.n == 5);
  CHECK_THAT(ci.mean, WithinAbs(3.0, 1e-12));
  CHECK_THAT(ci.stddev, WithinRel(1.5811388, 1e-6));
  CHECK_THAT(ci.half_width, WithinRel(1.9633, 1e-4));
  CHECK(mean_ci95({}).n == 0);
  CHECK(mean_ci95({2.5}).half_width == 0);
}

TEST_CASE("t quantiles", "[stats]") {
  CHECK_THAT(student_t_975(1), WithinRel(12.7062, 1e-4));
  CHECK_THAT(student_t_975(30), WithinRel(2.0423, 1e-4));
  CHECK_THAT(student_t_975(40), WithinRel(2.0211, 2e-4));   // scipy: 2.021075
  CHECK_THAT(student_t_975(120), WithinRel(1.9799, 2e-4));  // scipy: 1.979930
  CHECK_THAT(student_t_975(100000), WithinRel(1.95998, 1e-4));
}

TEST_CASE("Wilson interval for accuracy", "[stats]") {
  // Worked by hand: z^2/n = 3.8415e-4, centre 0.893549, half-width 0.0060418.
  const auto ci = wilson_ci95(8937, 10000);
  CHECK_THAT(ci.value, WithinAbs(0.8937, 1e-12));
  CHECK_THAT(ci.low, WithinAbs(0.887507, 2e-6));
  CHECK_THAT(ci.high, WithinAbs(0.899591, 2e-6));
  // 0 of n: the upper bound is z^2 / (n + z^2) (0.27753 for n = 10), where the normal
  // approximation would give a zero-width interval.
  const auto none = wilson_ci95(0, 10);
  CHECK_THAT(none.low, WithinAbs(0.0, 1e-12));
  CHECK_THAT(none.high, WithinAbs(3.841459 / 13.841459, 1e-6));
  const auto all = wilson_ci95(10, 10);
  CHECK_THAT(all.high, WithinAbs(1.0, 1e-12));
  CHECK_THAT(all.low, WithinAbs(1 - 3.841459 / 13.841459, 1e-6));
  CHECK(wilson_ci95(0, 0).trials == 0);
}

TEST_CASE("quantiles interpolate", "[stats]") {
  CHECK(quantile({3, 1, 2}, 0.5) == 2);
  CHECK_THAT(quantile({1, 2, 3, 4}, 0.99), WithinAbs(3.97, 1e-12));
  CHECK(quantile({}, 0.5) == 0);
}

TEST_CASE("the median's confidence interval brackets it, from order statistics", "[stats]") {
  std::vector<double> samples;
  for (int i = 1; i <= 100; ++i) samples.push_back(i);
  const auto [low, high] = median_ci95(samples);
  // Ranks 50 -+ 9.8: the 40th and 61st values.
  CHECK(low == 40);
  CHECK(high == 61);
  const auto [a, b] = median_ci95({5, 1, 3});
  CHECK(a == 1);  // too few samples: the whole range
  CHECK(b == 5);
}
