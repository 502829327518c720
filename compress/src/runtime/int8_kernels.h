#pragma once
// Internal: the elementwise uint8 loops of the int8 runtime, in their own file so they can be
// compiled for the build machine's CPU (JOULECUT_NATIVE_KERNELS) and vectorize.
#include <cstdint>

namespace joulecut::kernels {

// out = clamp(round_half_even(in * inverse_scale + zero_point), 0, 255)
void quantize_u8(const float* in, std::uint8_t* out, std::int64_t n, float inverse_scale, float zero_point);
// out = (in - zero_point) * scale
void dequantize_u8(const std::uint8_t* in, float* out, std::int64_t n, float scale, float zero_point);
// out = clamp(round_half_even(max(low, ka * a + kb * b + offset)), 0, 255)
void add_u8(const std::uint8_t* a, const std::uint8_t* b, std::uint8_t* out, std::int64_t n, float ka, float kb,
            float offset, float low);

// Per-channel scaling of channels-last rows (squeeze-and-excitation's `scale * x`): for each
// of `rows` rows of `c` channels, out = clamp(round_half_even(k[ch] * (in - in_zero) + out_zero), 0, 255).
void scale_channels_u8(const std::uint8_t* in, std::uint8_t* out, std::int64_t rows, std::int64_t c, const float* k,
                       float in_zero, float out_zero);

// Max pooling of a channels-last uint8 tensor [n, h, w, c] into [n, oh, ow, c]; padded positions
// are skipped. oneDNN's int8 pooling vectorizes over channels only and crawls when there are
// few (LeNet-5: 6 channels, 300 us for what this does in a fraction of that).
struct MaxPoolShape {
  std::int64_t n, h, w, c, oh, ow, kh, kw, sh, sw, ph, pw;
};
void max_pool_u8_nhwc(const std::uint8_t* in, std::uint8_t* out, const MaxPoolShape& s, std::int64_t first_image,
                      std::int64_t end_image);

}  // namespace joulecut::kernels
