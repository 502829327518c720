#include "int8_kernels.h"

#include <vector>

namespace joulecut::kernels {
namespace {

// Branch-free clamp (the ternaries compile to min/max instructions; std::min/max left branches
// that mispredicted on real activations), then round half to even by adding and subtracting
// 1.5 * 2^23, which rounds in the FPU's default mode and, unlike std::nearbyint, vectorizes.
inline std::uint8_t saturate(float v) {
  constexpr float kRound = 12582912.f;
  v = v > 0.f ? v : 0.f;
  v = v < 255.f ? v : 255.f;
  return static_cast<std::uint8_t>(static_cast<int>((v + kRound) - kRound));
}

}  // namespace

void quantize_u8(const float* __restrict in, std::uint8_t* __restrict out, std::int64_t n, float inverse_scale,
                 float zero_point) {
  for (std::int64_t i = 0; i < n; ++i) out[i] = saturate(in[i] * inverse_scale + zero_point);
}

void dequantize_u8(const std::uint8_t* __restrict in, float* __restrict out, std::int64_t n, float scale,
                   float zero_point) {
  for (std::int64_t i = 0; i < n; ++i) out[i] = (float(in[i]) - zero_point) * scale;
}

void add_u8(const std::uint8_t* __restrict a, const std::uint8_t* __restrict b, std::uint8_t* __restrict out,
            std::int64_t n, float ka, float kb, float offset, float low) {
  for (std::int64_t i = 0; i < n; ++i) {
    const float v = ka * float(a[i]) + kb * float(b[i]) + offset;
    out[i] = saturate(v > low ? v : low);
  }
}

void scale_channels_u8(const std::uint8_t* __restrict in, std::uint8_t* __restrict out, std::int64_t rows,
                       std::int64_t c, const float* __restrict k, float in_zero, float out_zero) {
  for (std::int64_t r = 0; r < rows; ++r) {
    const std::uint8_t* __restrict x = in + r * c;
    std::uint8_t* __restrict y = out + r * c;
    for (std::int64_t i = 0; i < c; ++i) y[i] = saturate(k[i] * (float(x[i]) - in_zero) + out_zero);
  }
}

void max_pool_u8_nhwc(const std::uint8_t* __restrict in, std::uint8_t* __restrict out, const MaxPoolShape& s,
                      std::int64_t first_image, std::int64_t end_image) {
  // Vertical max first, over whole rows (long contiguous loops that vectorize), then the
  // horizontal max per output pixel: short loops over channels run kw times, not kh * kw.
  const std::int64_t row = s.w * s.c;
  std::vector<std::uint8_t> column_max(static_cast<std::size_t>(row));
  std::uint8_t* __restrict m = column_max.data();
  for (std::int64_t n = first_image; n < end_image; ++n)
    for (std::int64_t oy = 0; oy < s.oh; ++oy) {
      for (std::int64_t i = 0; i < row; ++i) m[i] = 0;  // the uint8 minimum: padding never wins
      for (std::int64_t ky = 0; ky < s.kh; ++ky) {
        const std::int64_t y = oy * s.sh - s.ph + ky;
        if (y < 0 || y >= s.h) continue;
        const std::uint8_t* __restrict r = in + (n * s.h + y) * row;
        for (std::int64_t i = 0; i < row; ++i) m[i] = r[i] > m[i] ? r[i] : m[i];
      }
      std::uint8_t* __restrict o = out + (n * s.oh + oy) * s.ow * s.c;
      for (std::int64_t ox = 0; ox < s.ow; ++ox, o += s.c) {
        for (std::int64_t c = 0; c < s.c; ++c) o[c] = 0;
        for (std::int64_t kx = 0; kx < s.kw; ++kx) {
          const std::int64_t x = ox * s.sw - s.pw + kx;
          if (x < 0 || x >= s.w) continue;
          const std::uint8_t* __restrict t = m + x * s.c;
          for (std::int64_t c = 0; c < s.c; ++c) o[c] = t[c] > o[c] ? t[c] : o[c];
        }
      }
    }
}

}  // namespace joulecut::kernels
