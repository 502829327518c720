#pragma once
// Internal: the elementwise uint8 loops of the int8 runtime and its few-channel convolutions, in
// their own Torch-free files so they can be compiled for the build machine's CPU
// (JOULECUT_NATIVE_KERNELS) and vectorize: int8_kernels.cpp (the loops, max pooling),
// small_channel_conv.cpp (SmallChannelConv), amx_conv.cpp (AmxConv), int8_epilogue.h (what the
// two convolutions share).
#include <cstdint>
#include <vector>

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

// A direct convolution for layers with few output channels (at most 16): a network's first
// layer on grey or RGB images (LeNet-5's 1 -> 6 channels, 5x5) and the thin layers channel
// pruning leaves (8 -> 8 channels). oneDNN 2.6's int8 kernels work on blocks of 16 output
// channels and 4 input channels; on such layers most of their work is padding (LeNet-5's first
// layer took as long in int8 as in fp32, about 0.45 ms per batch of 64).
//
// A channels-last output row is ow * oc contiguous values, [ox][oc]. Each input row is
// expanded once per image into that layout, every int32 element holding 4 input bytes (4
// neighbouring taps of one channel when there are fewer than 4 channels, else 4 channels of
// one pixel) repeated for every output channel, and the weights are tiled the same way. Then
// each group of 4 taps of each output row is one contiguous run of AVX-512 VNNI multiply-adds
// (64 products each), whatever the channel counts. Padding holds the input zero point, whose
// products are subtracted once. A residual (oneDNN's sum post-op) is read where it lies.
struct SmallConvShape {
  std::int64_t n, h, w, c, oh, ow, oc, kh, kw, sh, sw, ph, pw;  // dilation 1, one group
};
struct SmallConvResidual {
  float scale = 1, zero_point = 0;  // output += scale * (residual - zero_point), before the ReLU
};
// What both of joulecut's few-channel convolutions keep of their arguments: the shape and the
// epilogue's terms (see SmallChannelConv's constructor).
class SmallConvTerms {
 protected:
  SmallConvTerms(const SmallConvShape& s, std::uint8_t input_zero_point, std::uint8_t output_zero_point, bool relu,
                 bool output_float, const SmallConvResidual* residual)
      : s_(s),
        input_zero_point_(input_zero_point),
        output_zero_point_(output_zero_point),
        relu_(relu),
        output_float_(output_float),
        residual_(residual != nullptr),
        residual_terms_(residual ? *residual : SmallConvResidual{}) {}
  SmallConvShape s_;
  std::uint8_t input_zero_point_, output_zero_point_;
  bool relu_, output_float_, residual_;
  SmallConvResidual residual_terms_;
};

class SmallChannelConv : private SmallConvTerms {
 public:
  // Whether this kernel runs the shape on this build: compiled with AVX-512 VNNI; 1-4 input
  // channels or a multiple of 4 up to 32; at most 16 output channels but not 9, 11, 13 or 15
  // (their tiling needs more registers); strides up to 4; int32 sums that cannot overflow; at
  // most 4 MiB of buffers per image.
  static bool fits(const SmallConvShape& s);
  // Pre: fits(s). `weight` is int8 [oc, c, kh, kw]; `scale[o]` takes the int32 accumulator to
  // output units (real units for a float output) and `bias[o]` is in accumulator units: both
  // as oneDNN takes them. Output: (acc + bias) * scale, plus the residual, then ReLU, plus the
  // output zero point, rounded half to even and saturated to uint8; or the float before the
  // zero point. `residual` only with a uint8 output.
  SmallChannelConv(const SmallConvShape& s, const std::int8_t* weight, const float* scale, const float* bias,
                   std::uint8_t input_zero_point, std::uint8_t output_zero_point, bool relu, bool output_float,
                   const SmallConvResidual* residual = nullptr);
  // Images [first_image, end_image) of the uint8 channels-last input [n, h, w, c] into the
  // channels-last output [n, oh, ow, oc], uint8 or float. `residual`: uint8, channels-last, the
  // output's shape; required when constructed with a residual, else ignored.
  void run(const std::uint8_t* in, const std::uint8_t* residual, void* out, std::int64_t first_image,
           std::int64_t end_image) const;

 private:
  template <int Vectors>
  class Expansion;  // one call's expanded input rows (small_channel_conv.cpp)
  template <int Vectors, int Blocks>
  void run_tiles(const std::uint8_t* in, const std::uint8_t* residual, void* out, std::int64_t first_image,
                 std::int64_t end_image) const;
  template <int Vectors, int Blocks = 1>
  void dispatch(const std::uint8_t* in, const std::uint8_t* residual, void* out, std::int64_t first_image,
                std::int64_t end_image) const;

  bool channel_quads_;     // 4 channels per int32 (c % 4 == 0), else 4 taps of one channel
  std::int64_t sources_;   // expanded rows per input row and phase: c / 4 channel quads, or c channels
  std::int64_t block_;     // lcm(16, oc) int32 lanes: the weights' tiling repeats with this period
  std::int64_t tile_;      // blocks computed at once, their accumulators in registers
  std::int64_t phases_;    // expanded rows per source for strides > 1
  std::int64_t row_;       // ow * oc rounded up to whole tiles
  std::int64_t expanded_;  // one expanded row: row_ plus the widest shift, whole blocks
  std::vector<std::int64_t> shifts_;  // per group of 4 taps along a kernel row: where it reads
  std::vector<std::int32_t> weights_; // [ky][source][group][block_], 4 int8 weights per element
  std::vector<std::int32_t> offset_;  // [block_]: the zero point's products, subtracted
  std::vector<float> scale_, bias_;   // [block_], tiled
};

// The same convolutions on Intel's AMX tiles (Sapphire Rapids and later). oneDNN 2.6's AMX
// kernels pad 8 channels to the multiply's 64-byte depth and 8 output channels to 16 columns;
// this packs the taps of a kernel row into the depth instead. A tile row is 64 bytes of a
// channels-last input row, read in place from a padded copy of the image: 64 / c pixels, enough
// for a run of neighbouring outputs (whose weights sit at their own offsets in the 64 bytes,
// zero elsewhere); a tile of 16 such rows, times 16 columns (16 / oc neighbouring outputs x oc
// channels), is one AMX multiply-add of 16,384 products. Strides: the copy is split into one
// plane per phase of the strides, each read at stride 1; more than 16 channels into planes of
// 16. The epilogue (zero point, bias, scale, residual, ReLU, rounding) is SmallChannelConv's,
// so the two agree exactly.
class AmxConv : private SmallConvTerms {
 public:
  // Whether this build and CPU run the shape: compiled for AMX-INT8 and AVX-512, the kernel
  // allowed by Linux (arch_prctl), c a power of two up to 64, oc a power of two up to 32,
  // strides up to 4, kernels up to 16x16, a tile row's pixels covering at least one output's
  // taps, at most 4 MiB of buffers.
  static bool fits(const SmallConvShape& s);
  // Pre: fits(s). Arguments as SmallChannelConv's.
  AmxConv(const SmallConvShape& s, const std::int8_t* weight, const float* scale, const float* bias,
          std::uint8_t input_zero_point, std::uint8_t output_zero_point, bool relu, bool output_float,
          const SmallConvResidual* residual = nullptr);
  // As SmallChannelConv::run. Configures the calling thread's tiles and releases them.
  void run(const std::uint8_t* in, const std::uint8_t* residual, void* out, std::int64_t first_image,
           std::int64_t end_image) const;

 private:
  // One image into the planes of its padded copy (their padding already the input zero point).
  void copy_image(const std::uint8_t* image, std::uint8_t* padded) const;
  template <int Tiles>
  void run_tiles(const std::uint8_t* in, const std::uint8_t* residual, void* out, std::int64_t first_image,
                 std::int64_t end_image) const;

  std::int64_t tiles_;       // accumulator tiles per tile row: 16 / oc outputs, or oc / 16 per output
  std::int64_t outputs_;     // neighbouring outputs per tile row
  std::int64_t row_blocks_;  // tile rows per output row, the padded row's width / outputs_
  std::int64_t width_;       // a plane's row, positions: row_blocks_ * outputs_
  std::int64_t slice_;       // channels per plane
  std::int64_t plane_bytes_;
  std::vector<std::int64_t> plane_offsets_;  // per pass: where its tile rows start in the planes
  std::vector<std::int8_t> weights_;  // [pass][tile]: 16 x 64 bytes, AMX's B layout
  std::vector<std::int32_t> offset_;  // [max(16, oc)]: the zero point's products, subtracted
  std::vector<float> scale_, bias_;   // [max(16, oc)], tiled
};

}  // namespace joulecut::kernels
