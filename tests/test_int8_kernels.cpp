// joulecut's own int8 kernels (compress/src/runtime/int8_kernels.cpp) against scalar references,
// exhaustively over small shapes. Torch-free: built with the sanitizers too, so a read or write
// past a buffer fails here rather than somewhere in a model.
#include <catch2/catch.hpp>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <random>
#include <utility>
#include <vector>

#include "runtime/int8_kernels.h"

using namespace joulecut::kernels;

namespace {

// What the kernel must compute, in the order it must compute it: the exact integer sum of
// (x - zero point) * w over the taps inside the image, then (sum + bias) * scale, the residual
// (scale * (r - zero point), fused), ReLU, the output zero point, rounding half to even, saturation.
// `volatile` keeps each float operation rounded on its own, as the kernel's are.
float reference_output(const SmallConvShape& s, const std::vector<std::uint8_t>& in, const std::vector<std::int8_t>& w,
                       std::int64_t n, std::int64_t y, std::int64_t x, std::int64_t o, std::uint8_t input_zero_point,
                       float scale, float bias, const SmallConvResidual* residual, std::uint8_t residual_value,
                       bool relu) {
  std::int64_t sum = 0;
  for (std::int64_t ky = 0; ky < s.kh; ++ky)
    for (std::int64_t ci = 0; ci < s.c; ++ci)
      for (std::int64_t kx = 0; kx < s.kw; ++kx) {
        const std::int64_t iy = y * s.sh + ky - s.ph, ix = x * s.sw + kx - s.pw;
        if (iy < 0 || iy >= s.h || ix < 0 || ix >= s.w) continue;
        sum += (std::int64_t(in[static_cast<std::size_t>(((n * s.h + iy) * s.w + ix) * s.c + ci)]) - input_zero_point) *
               w[static_cast<std::size_t>(((o * s.c + ci) * s.kh + ky) * s.kw + kx)];
      }
  volatile float r = float(sum) + bias;
  r = r * scale;
  float value = r;
  if (residual) {
    volatile float shifted = float(residual_value) - residual->zero_point;
    value = std::fma(residual->scale, float(shifted), value);  // one rounding, as the kernel's
  }
  return relu && value < 0 ? 0.f : value;
}

// Runs `Kernel` on every shape of the grid it fits, each against the reference, and returns
// how many it ran and how many it refused.
template <class Kernel>
std::pair<int, int> check_exactly_the_reference() {
  std::mt19937 random(7);
  int ran = 0, refused = 0;
  for (const std::int64_t c : {1, 2, 3, 4, 6, 8, 12, 16, 32, 64})
    for (const std::int64_t oc : {1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 12, 16, 32})
      for (const std::int64_t k : {1, 2, 3, 5, 7})
        for (const std::int64_t stride : {1, 2, 3, 4})
          for (std::int64_t pad = 0; pad <= 3 && 2 * pad <= k + 1; ++pad) {
            const std::int64_t n = 1 + random() % 3, h = 5 + random() % 14, w = 5 + random() % 20;
            const std::int64_t kw = random() % 2 ? k : std::max<std::int64_t>(1, k - 1 - random() % 2);
            // A third of the shapes with their own horizontal stride and padding.
            const bool own_horizontal = random() % 3 == 0;
            const std::int64_t sw = own_horizontal ? 1 + random() % 4 : stride;
            const std::int64_t pw = own_horizontal ? std::int64_t(random() % std::uint32_t(pad + 1)) : pad;
            if (h + 2 * pad < k || w + 2 * pw < kw) continue;
            const SmallConvShape s{n, h, w, c, (h + 2 * pad - k) / stride + 1, (w + 2 * pw - kw) / sw + 1,
                                   oc, k, kw, stride, sw, pad, pw};
            if (!Kernel::fits(s)) {
              ++refused;
              continue;
            }
            const bool relu = random() % 2, float_out = random() % 4 == 0, with_residual = !float_out && random() % 2;
            const SmallConvResidual residual{0.3f + float(random() % 100) * 0.01f, float(random() % 256)};
            const auto input_zero_point = std::uint8_t(random() % 256);
            const auto output_zero_point = std::uint8_t(float_out ? 0 : random() % 256);
            std::vector<std::int8_t> weight(static_cast<std::size_t>(oc * c * k * kw));
            for (auto& v : weight) v = std::int8_t(int(random() % 255) - 127);
            std::vector<float> scale(static_cast<std::size_t>(oc)), bias(static_cast<std::size_t>(oc));
            for (std::int64_t o = 0; o < oc; ++o) {
              scale[static_cast<std::size_t>(o)] = 0.0005f + float(random() % 1000) * 1e-6f;
              bias[static_cast<std::size_t>(o)] = float(int(random() % 20001) - 10000) * 0.37f;
            }
            std::vector<std::uint8_t> in(static_cast<std::size_t>(n * h * w * c));
            for (auto& v : in) v = std::uint8_t(random() % 256);
            const std::size_t total = static_cast<std::size_t>(n * s.oh * s.ow * oc);
            std::vector<std::uint8_t> sum(total), bytes(total + 1, 0xAB);
            for (auto& v : sum) v = std::uint8_t(random() % 256);
            std::vector<float> floats(total + 1, -7.f);
            const Kernel conv(s, weight.data(), scale.data(), bias.data(), input_zero_point,
                                        output_zero_point, relu, float_out, with_residual ? &residual : nullptr);
            void* out = float_out ? static_cast<void*>(floats.data()) : static_cast<void*>(bytes.data());
            conv.run(in.data(), sum.data(), out, 0, n / 2);  // in two parts, as threads split a batch
            conv.run(in.data(), sum.data(), out, n / 2, n);
            ++ran;
            INFO(c << " -> " << oc << " channels, kernel " << k << "x" << kw << ", stride " << stride << "x" << sw
                   << ", padding " << pad << "x" << pw << ", input " << n << "x" << h << "x" << w << (relu ? ", relu" : "")
                   << (float_out ? ", float output" : "") << (with_residual ? ", residual" : ""));
            REQUIRE((float_out ? floats[total] == -7.f : bytes[total] == 0xAB));  // nothing written past the end
            std::int64_t wrong = 0;
            for (std::int64_t b = 0; b < n; ++b)
              for (std::int64_t y = 0; y < s.oh; ++y)
                for (std::int64_t x = 0; x < s.ow; ++x)
                  for (std::int64_t o = 0; o < oc; ++o) {
                    const std::size_t at = static_cast<std::size_t>(((b * s.oh + y) * s.ow + x) * oc + o);
                    const float value = reference_output(
                        s, in, weight, b, y, x, o, input_zero_point, scale[static_cast<std::size_t>(o)],
                        bias[static_cast<std::size_t>(o)], with_residual ? &residual : nullptr, sum[at], relu);
                    if (float_out) {
                      wrong += floats[at] != value;
                    } else {
                      volatile float shifted = value + float(output_zero_point);
                      const float expected = std::nearbyint(std::min(255.f, std::max(0.f, float(shifted))));
                      wrong += bytes[at] != std::uint8_t(expected);
                    }
                  }
            REQUIRE(wrong == 0);
          }
  return {ran, refused};
}

}  // namespace

TEST_CASE("SmallChannelConv: exactly the reference, every shape it fits, no byte outside its output",
          "[int8_kernels]") {
  const auto [ran, refused] = check_exactly_the_reference<SmallChannelConv>();
  INFO(ran << " shapes run, " << refused << " refused");
  if (ran == 0) {
    WARN("SmallChannelConv needs AVX-512 VNNI, which this build's CPU lacks: it fits no shape here");
  } else {
    CHECK(refused > 0);  // 6 input channels, 9 output channels...
  }
}

TEST_CASE("AmxConv: exactly the reference, every shape it fits, no byte outside its output", "[int8_kernels]") {
  const auto [ran, refused] = check_exactly_the_reference<AmxConv>();
  INFO(ran << " shapes run, " << refused << " refused");
  if (ran == 0) {
    WARN("AmxConv needs AMX-INT8 (and Linux's permission to use it), which this build or CPU lacks: it fits no shape here");
  } else {
    CHECK(ran > 200);
    CHECK(refused > 0);  // strides > 1, 3 channels...
  }
}

TEST_CASE("SmallChannelConv::fits refuses what its buffers are not sized for", "[int8_kernels]") {
  const SmallConvShape lenet{2, 28, 28, 1, 28, 28, 6, 5, 5, 1, 1, 2, 2};
  SmallConvShape wrong_size = lenet;
  wrong_size.ow = 1;  // not what 28 + 2 * 2 - 5 + 1 gives
  CHECK_FALSE(SmallChannelConv::fits(wrong_size));
  SmallConvShape six_channels = lenet;
  six_channels.c = 6;  // neither 1-4 nor a multiple of 4
  CHECK_FALSE(SmallChannelConv::fits(six_channels));
  SmallConvShape many_outputs = lenet;
  many_outputs.oc = 32;
  CHECK_FALSE(SmallChannelConv::fits(many_outputs));
  SmallConvShape nine_outputs = lenet;
  nine_outputs.oc = 9;  // its tiling needs more registers
  CHECK_FALSE(SmallChannelConv::fits(nine_outputs));
}

TEST_CASE("max_pool_u8_nhwc: exactly the reference, every window, stride and padding up to 3", "[int8_kernels]") {
  std::mt19937 random(11);
  for (const std::int64_t c : {1, 3, 6, 8, 9, 16, 17, 32, 40, 64, 80})
    for (std::int64_t k = 1; k <= 3; ++k)
      for (std::int64_t stride = 1; stride <= 3; ++stride)
        for (std::int64_t pad = 0; 2 * pad <= k; ++pad) {
          MaxPoolShape s{3, 4 + std::int64_t(random() % 9), 4 + std::int64_t(random() % 9), c, 0, 0, k, k, stride,
                         stride, pad, pad};
          s.oh = (s.h + 2 * pad - k) / stride + 1;
          s.ow = (s.w + 2 * pad - k) / stride + 1;
          std::vector<std::uint8_t> in(static_cast<std::size_t>(s.n * s.h * s.w * c));
          for (auto& v : in) v = std::uint8_t(random() % 256);
          const std::size_t total = static_cast<std::size_t>(s.n * s.oh * s.ow * c);
          std::vector<std::uint8_t> out(total + 1, 0xAB);
          max_pool_u8_nhwc(in.data(), out.data(), s, 0, 1);  // split at an image boundary
          max_pool_u8_nhwc(in.data(), out.data(), s, 1, s.n);
          INFO(c << " channels, window " << k << ", stride " << stride << ", padding " << pad);
          REQUIRE(out[total] == 0xAB);
          std::int64_t wrong = 0;
          for (std::int64_t b = 0; b < s.n; ++b)
            for (std::int64_t y = 0; y < s.oh; ++y)
              for (std::int64_t x = 0; x < s.ow; ++x)
                for (std::int64_t ch = 0; ch < c; ++ch) {
                  int best = 0;
                  for (std::int64_t ky = 0; ky < k; ++ky)
                    for (std::int64_t kx = 0; kx < k; ++kx) {
                      const std::int64_t iy = y * stride + ky - pad, ix = x * stride + kx - pad;
                      if (iy >= 0 && iy < s.h && ix >= 0 && ix < s.w)
                        best = std::max<int>(best, in[static_cast<std::size_t>(((b * s.h + iy) * s.w + ix) * c + ch)]);
                    }
                  wrong += out[static_cast<std::size_t>(((b * s.oh + y) * s.ow + x) * c + ch)] != best;
                }
          REQUIRE(wrong == 0);
        }
}
