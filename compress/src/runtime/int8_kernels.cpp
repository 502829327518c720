// joulecut's elementwise uint8 loops and uint8 max pooling (see int8_kernels.h). The few-channel
// convolutions are in small_channel_conv.cpp (AVX-512 VNNI) and amx_conv.cpp (AMX tiles).
#include "int8_kernels.h"

#include <cstring>
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

namespace {

// Copies `count` pixels of `c` bytes, from `from + k * step` to `to + k * c`. With Block >= c,
// each copy moves Block bytes, one vector load and store, and spills into the next pixel's
// place, which the next copy rewrites; the last copies, where a spill would pass `end`, move
// exactly c. `from` must be readable Block bytes past its last pixel.
template <std::int64_t Block>
void copy_pixels(std::uint8_t* to, const std::uint8_t* from, std::int64_t count, std::int64_t c, std::int64_t step,
                 const std::uint8_t* end) {
  std::int64_t k = 0;
  for (; k < count && to + k * c + Block <= end; ++k) std::memcpy(to + k * c, from + k * step, Block);
  for (; k < count; ++k) std::memcpy(to + k * c, from + k * step, static_cast<std::size_t>(c));
}

}  // namespace

void max_pool_u8_nhwc(const std::uint8_t* __restrict in, std::uint8_t* __restrict out, const MaxPoolShape& s,
                      std::int64_t first_image, std::int64_t end_image) {
  // Per image, passes over contiguous bytes that vectorize whatever the channel count: the
  // vertical max of each output row's kh input rows (into rows padded with pw zero pixels each
  // side: 0 is the uint8 minimum, so padding never wins), then the horizontal max of kw pixels,
  // shifted by one pixel each, over all rows at once; then every sw-th pixel copied out, a
  // vector per pixel. Loops over the channels alone (6 in LeNet-5) did not vectorize, and a
  // memcpy call per pixel cost more than the maxima: 310 and 115 us, against 124 us of fp32.
  constexpr std::int64_t kSlack = 64;  // copy_pixels' reads past the last pixel
  const std::int64_t c = s.c, row = s.w * c, padded = (s.w + 2 * s.pw) * c;
  const std::int64_t rows = s.oh * padded, span = rows - (s.kw - 1) * c;
  std::vector<std::uint8_t> column_max(static_cast<std::size_t>(rows), 0), window_max(static_cast<std::size_t>(rows + kSlack));
  std::uint8_t* __restrict v = column_max.data();
  std::uint8_t* __restrict h = window_max.data();
  const std::int64_t image_out = s.oh * s.ow * c;
  const std::uint8_t* end = out + end_image * image_out;
  for (std::int64_t n = first_image; n < end_image; ++n) {
    for (std::int64_t oy = 0; oy < s.oh; ++oy) {
      std::uint8_t* __restrict body = v + oy * padded + s.pw * c;
      for (std::int64_t i = 0; i < row; ++i) body[i] = 0;
      for (std::int64_t ky = 0; ky < s.kh; ++ky) {
        const std::int64_t y = oy * s.sh - s.ph + ky;
        if (y < 0 || y >= s.h) continue;
        const std::uint8_t* __restrict r = in + (n * s.h + y) * row;
        for (std::int64_t i = 0; i < row; ++i) body[i] = r[i] > body[i] ? r[i] : body[i];
      }
    }
    for (std::int64_t i = 0; i < span; ++i) h[i] = v[i];
    for (std::int64_t kx = 1; kx < s.kw; ++kx) {
      const std::uint8_t* __restrict shifted = v + kx * c;
      for (std::int64_t i = 0; i < span; ++i) h[i] = shifted[i] > h[i] ? shifted[i] : h[i];
    }
    for (std::int64_t oy = 0; oy < s.oh; ++oy) {
      std::uint8_t* o = out + n * image_out + oy * s.ow * c;
      const std::uint8_t* from = h + oy * padded;
      const std::int64_t step = s.sw * c;
      if (c <= 8) copy_pixels<8>(o, from, s.ow, c, step, end);
      else if (c <= 16) copy_pixels<16>(o, from, s.ow, c, step, end);
      else if (c <= 32) copy_pixels<32>(o, from, s.ow, c, step, end);
      else if (c <= 64) copy_pixels<64>(o, from, s.ow, c, step, end);
      else for (std::int64_t ox = 0; ox < s.ow; ++ox) std::memcpy(o + ox * c, from + ox * step, static_cast<std::size_t>(c));
    }
  }
}

}  // namespace joulecut::kernels
