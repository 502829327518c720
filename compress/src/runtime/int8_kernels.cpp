#include "int8_kernels.h"

#include <algorithm>
#include <cstring>
#include <numeric>
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

#if defined(__AVX512F__) && defined(__AVX512BW__) && defined(__AVX512VL__) && defined(__AVX512VNNI__)
#include <immintrin.h>
#define JOULECUT_SMALL_CONV_VNNI 1
#endif

namespace joulecut::kernels {
namespace {

constexpr std::int64_t kLanes = 16;  // int32 lanes of an AVX-512 register
constexpr int kMaxAccumulators = 12; // of 32 registers: enough chains to hide latency
constexpr std::int64_t kQuad = 4;    // one VNNI multiply-add sums 4 byte products per lane

std::int64_t round_up(std::int64_t v, std::int64_t to) { return (v + to - 1) / to * to; }

#ifdef JOULECUT_SMALL_CONV_VNNI
// oneDNN's epilogue, in its order, on 16 sums of a channels-last output (both kernels share it,
// so they agree exactly): minus the zero point's products, plus bias, times scale, plus the
// residual (one rounding, as oneDNN's sum post-op), ReLU, then a float out, or plus the output
// zero point, saturated and rounded half to even to uint8.
struct Epilogue {
  Epilogue(bool relu, std::uint8_t output_zero_point, bool output_float, const SmallConvResidual* residual)
      : low(_mm512_set1_ps(relu ? 0.f : -3e38f)),
        zero_point(_mm512_set1_ps(float(output_zero_point))),
        residual_scale(_mm512_set1_ps(residual ? residual->scale : 0.f)),
        residual_zero_point(_mm512_set1_ps(residual ? residual->zero_point : 0.f)),
        output_float(output_float),
        with_residual(residual != nullptr) {}
  // `sums` lands at output[at, at + 16), lanes beyond `lanes` untouched; `residual` is read at
  // the same place.
  void store(__m512i sums, const std::int32_t* offset, const float* bias, const float* scale,
             const std::uint8_t* residual, void* out, std::int64_t at, __mmask16 lanes) const {
    store(sums, _mm512_loadu_si512(offset), _mm512_loadu_ps(bias), _mm512_loadu_ps(scale), residual, out, at, lanes);
  }
  void store(__m512i sums, __m512i offset, __m512 bias, __m512 scale, const std::uint8_t* residual, void* out,
             std::int64_t at, __mmask16 lanes) const {
    const __m512i exact = _mm512_sub_epi32(sums, offset);
    __m512 r = _mm512_mul_ps(_mm512_add_ps(_mm512_cvtepi32_ps(exact), bias), scale);
    if (with_residual) {
      const __m128i bytes = _mm_maskz_loadu_epi8(lanes, residual + at);
      const __m512 added = _mm512_sub_ps(_mm512_cvtepi32_ps(_mm512_cvtepu8_epi32(bytes)), residual_zero_point);
      r = _mm512_fmadd_ps(residual_scale, added, r);  // explicit: GCC contracts a mul and add only at -O3
    }
    r = _mm512_max_ps(r, low);
    if (output_float) {
      _mm512_mask_storeu_ps(static_cast<float*>(out) + at, lanes, r);
      return;
    }
    r = _mm512_min_ps(_mm512_max_ps(_mm512_add_ps(r, zero_point), _mm512_setzero_ps()), _mm512_set1_ps(255.f));
    _mm512_mask_cvtusepi32_storeu_epi8(static_cast<std::uint8_t*>(out) + at, lanes, _mm512_cvtps_epi32(r));  // nearest even
  }
  __m512 low, zero_point, residual_scale, residual_zero_point;
  bool output_float, with_residual;
};
#endif

// The geometry both fits() and the constructor need.
struct Layout {
  bool channel_quads;
  std::int64_t sources, groups, block, tile, phases, row, expanded;
  std::vector<std::int64_t> pixel_shift;  // per group of 4 taps along a kernel row
};

Layout layout_of(const SmallConvShape& s) {
  Layout l;
  l.channel_quads = s.c % kQuad == 0;
  l.sources = l.channel_quads ? s.c / kQuad : s.c;
  // 4 channels of one tap per group, one group per tap; or 4 taps of one channel per group.
  l.groups = l.channel_quads ? s.kw : (s.kw + kQuad - 1) / kQuad;
  for (std::int64_t g = 0; g < l.groups; ++g) l.pixel_shift.push_back(l.channel_quads ? g : kQuad * g);
  l.block = kLanes / std::gcd(kLanes, s.oc) * s.oc;
  // Blocks per tile: the count that leaves the least padding at the end of a row, the larger on ties.
  const std::int64_t blocks = round_up(s.ow * s.oc, l.block) / l.block;
  const std::int64_t most = std::max<std::int64_t>(1, kMaxAccumulators / (l.block / kLanes));
  l.tile = 1;
  for (std::int64_t tile = 2; tile <= std::min(most, blocks); ++tile)
    if (round_up(blocks, tile) <= round_up(blocks, l.tile)) l.tile = tile;
  // Group g reads input pixel ox * sw + shift: phase shift % sw, shift / sw pixels further.
  l.phases = 1;
  for (const std::int64_t shift : l.pixel_shift) l.phases = std::max(l.phases, shift % s.sw + 1);
  l.row = round_up(s.ow * s.oc, l.tile * l.block);
  l.expanded = round_up(l.row + l.pixel_shift.back() / s.sw * s.oc, l.block);
  return l;
}

}  // namespace

bool SmallChannelConv::fits(const SmallConvShape& s) {
#ifndef JOULECUT_SMALL_CONV_VNNI
  (void)s;
  return false;
#else
  if (s.c < 1 || (s.c > kQuad && (s.c % kQuad != 0 || s.c > 32)) || s.oc < 1 || s.oc > 16 || s.oh < 1 || s.ow < 1 ||
      s.kh < 1 || s.kw < 1 || s.sw < 1 || s.sw > 4 || s.sh < 1 || s.ph < 0 || s.pw < 0)
    return false;
  // The output size the geometry gives: the buffers are sized from it.
  if (s.oh != (s.h + 2 * s.ph - s.kh) / s.sh + 1 || s.ow != (s.w + 2 * s.pw - s.kw) / s.sw + 1) return false;
  const Layout l = layout_of(s);
  if (l.block / kLanes > 8) return false;  // 9, 11, 13 or 15 channels: too many registers
  if (s.kh * l.sources * l.groups * kQuad * 255 * 128 >= (std::int64_t(1) << 31)) return false;
  return (s.h + 1) * l.sources * l.phases * l.expanded * 4 <= (std::int64_t(4) << 20);
#endif
}

SmallChannelConv::SmallChannelConv(const SmallConvShape& s, const std::int8_t* weight, const float* scale,
                                   const float* bias, std::uint8_t input_zero_point, std::uint8_t output_zero_point,
                                   bool relu, bool output_float, const SmallConvResidual* residual)
    : SmallConvTerms(s, input_zero_point, output_zero_point, relu, output_float, residual) {
  const Layout l = layout_of(s);
  channel_quads_ = l.channel_quads;
  sources_ = l.sources;
  block_ = l.block;
  tile_ = l.tile;
  phases_ = l.phases;
  row_ = l.row;
  expanded_ = l.expanded;
  for (const std::int64_t shift : l.pixel_shift) shifts_.push_back(shift % s.sw * expanded_ + shift / s.sw * s.oc);
  weights_.assign(static_cast<std::size_t>(s.kh * sources_ * l.groups * block_), 0);
  offset_.assign(static_cast<std::size_t>(block_), 0);
  for (std::int64_t j = 0; j < block_; ++j) {
    const std::int64_t o = j % s.oc;
    for (std::int64_t ky = 0; ky < s.kh; ++ky)
      for (std::int64_t ci = 0; ci < s.c; ++ci)
        for (std::int64_t kx = 0; kx < s.kw; ++kx) {
          const std::int8_t w = weight[((o * s.c + ci) * s.kh + ky) * s.kw + kx];
          const std::int64_t source = channel_quads_ ? ci / kQuad : ci, group = channel_quads_ ? kx : kx / kQuad;
          const std::int64_t byte = channel_quads_ ? ci % kQuad : kx % kQuad;
          const std::size_t element = static_cast<std::size_t>(((ky * sources_ + source) * l.groups + group) * block_ + j);
          reinterpret_cast<std::int8_t*>(&weights_[element])[byte] = w;
          // Every input byte, the padding's too, enters as (x - zero point) + zero point.
          offset_[static_cast<std::size_t>(j)] += std::int32_t(input_zero_point) * w;
        }
  }
  scale_.resize(static_cast<std::size_t>(block_));
  bias_.resize(static_cast<std::size_t>(block_));
  for (std::int64_t j = 0; j < block_; ++j) {
    scale_[static_cast<std::size_t>(j)] = scale[j % s.oc];
    bias_[static_cast<std::size_t>(j)] = bias[j % s.oc];
  }
}

void SmallChannelConv::run(const std::uint8_t* in, const std::uint8_t* residual, void* out, std::int64_t first_image,
                           std::int64_t end_image) const {
  switch (block_ / kLanes) {
    case 1: return dispatch<1>(in, residual, out, first_image, end_image);
    case 2: return dispatch<2>(in, residual, out, first_image, end_image);
    case 3: return dispatch<3>(in, residual, out, first_image, end_image);
    case 4: return dispatch<4>(in, residual, out, first_image, end_image);
    case 5: return dispatch<5>(in, residual, out, first_image, end_image);
    case 6: return dispatch<6>(in, residual, out, first_image, end_image);
    case 7: return dispatch<7>(in, residual, out, first_image, end_image);
    case 8: return dispatch<8>(in, residual, out, first_image, end_image);
    default: return;  // fits() refused the shape
  }
}

template <int Vectors, int Blocks>
void SmallChannelConv::dispatch(const std::uint8_t* in, const std::uint8_t* residual, void* out,
                                std::int64_t first_image, std::int64_t end_image) const {
  if (tile_ == Blocks) return run_tiles<Vectors, Blocks>(in, residual, out, first_image, end_image);
  if constexpr ((Blocks + 1) * Vectors <= kMaxAccumulators)
    dispatch<Vectors, Blocks + 1>(in, residual, out, first_image, end_image);
}

template <int Vectors, int Blocks>
void SmallChannelConv::run_tiles(const std::uint8_t* in, const std::uint8_t* residual, void* out,
                                 std::int64_t first_image, std::int64_t end_image) const {
#ifdef JOULECUT_SMALL_CONV_VNNI
  const SmallConvShape& s = s_;
  const std::int64_t oc = s.oc, width = s.ow * oc, groups = std::int64_t(shifts_.size());
  const std::int64_t pixels_per_block = block_ / oc, blocks = expanded_ / block_, pixels = expanded_ / oc;
  // Per input row, source and phase p: element q * oc + o of the expansion holds the 4 bytes
  // of padded pixel q * sw + p (4 channels), or of padded pixels q * sw + p .. + 3 (one
  // channel); the padding is the input zero point. Row h is all padding, for the kernel rows
  // above and below the image.
  const std::int64_t row_stride = sources_ * phases_ * expanded_;
  std::vector<std::int32_t> expanded(static_cast<std::size_t>((s.h + 1) * row_stride));
  const std::int64_t padded_pixels = round_up((pixels + kLanes) * s.sw + kQuad, kLanes) + kQuad;
  // One channel: its bytes, padded. Channel quads: their int32s, padded.
  std::vector<std::uint8_t> padded(static_cast<std::size_t>(padded_pixels), input_zero_point_);
  const std::int32_t padding_quad = std::int32_t(0x01010101u * input_zero_point_);
  std::vector<std::int32_t> quads(static_cast<std::size_t>(padded_pixels), padding_quad);
  std::vector<std::int32_t> strided(static_cast<std::size_t>(pixels + kLanes));
  __m512i spread[Vectors];  // lane i of vector v takes pixel (16 v + i) / oc of the block
  for (int v = 0; v < Vectors; ++v) {
    alignas(64) std::int32_t index[kLanes];
    for (std::int64_t i = 0; i < kLanes; ++i) index[i] = std::int32_t((v * kLanes + i) / oc);
    spread[v] = _mm512_load_si512(index);
  }
  // One channel: element k of `quads` holds padded bytes k .. k + 3, four byte-shifted copies
  // widened and merged 16 at a time.
  auto quads_of_bytes = [&] {
    for (std::int64_t k = 0; k + kLanes + kQuad - 1 <= padded_pixels; k += kLanes) {
      __m512i quad = _mm512_setzero_si512();
      for (int t = 0; t < kQuad; ++t) {
        const __m128i bytes = _mm_loadu_si128(reinterpret_cast<const __m128i*>(padded.data() + k + t));
        quad = _mm512_or_si512(quad, _mm512_slli_epi32(_mm512_cvtepu8_epi32(bytes), 8 * t));
      }
      _mm512_storeu_si512(quads.data() + k, quad);
    }
  };
  auto expand = [&](std::int32_t* to, std::int64_t p) {
    const std::int32_t* source_pixels = quads.data() + p;
    if (s.sw > 1) {
      for (std::int64_t q = 0; q < pixels + kLanes; ++q)
        strided[static_cast<std::size_t>(q)] = quads[static_cast<std::size_t>(q * s.sw + p)];
      source_pixels = strided.data();
    }
    for (std::int64_t b = 0; b < blocks; ++b) {
      const __m512i source = _mm512_loadu_si512(source_pixels + b * pixels_per_block);
      for (int v = 0; v < Vectors; ++v)
        _mm512_storeu_si512(to + b * block_ + v * kLanes, _mm512_permutexvar_epi32(spread[v], source));
    }
  };
  if (!channel_quads_) quads_of_bytes();
  for (std::int64_t source = 0; source < sources_; ++source)
    for (std::int64_t p = 0; p < phases_; ++p)
      expand(expanded.data() + s.h * row_stride + (source * phases_ + p) * expanded_, p);
  const std::int64_t visible = std::min(s.w, padded_pixels - kLanes - s.pw);
  const Epilogue epilogue(relu_, output_zero_point_, output_float_, residual_ ? &residual_terms_ : nullptr);
  for (std::int64_t n = first_image; n < end_image; ++n) {
    for (std::int64_t iy = 0; iy < s.h; ++iy) {
      const std::uint8_t* row = in + (n * s.h + iy) * s.w * s.c;
      for (std::int64_t source = 0; source < sources_; ++source) {
        if (channel_quads_) {
          std::int32_t* to = quads.data() + s.pw;
          for (std::int64_t x = 0; x < visible; ++x) std::memcpy(to + x, row + x * s.c + source * kQuad, kQuad);
        } else if (s.c == 1) {
          std::memcpy(padded.data() + s.pw, row, static_cast<std::size_t>(visible));
          quads_of_bytes();
        } else {
          for (std::int64_t x = 0; x < visible; ++x) padded[static_cast<std::size_t>(s.pw + x)] = row[x * s.c + source];
          quads_of_bytes();
        }
        for (std::int64_t p = 0; p < phases_; ++p)
          expand(expanded.data() + iy * row_stride + (source * phases_ + p) * expanded_, p);
      }
    }
    for (std::int64_t oy = 0; oy < s.oh; ++oy) {
      const std::int64_t out_row = (n * s.oh + oy) * width;
      for (std::int64_t b = 0; b < row_; b += Blocks * block_) {
        __m512i acc[Blocks][Vectors];
        for (int u = 0; u < Blocks; ++u)
          for (int v = 0; v < Vectors; ++v) acc[u][v] = _mm512_setzero_si512();
        for (std::int64_t ky = 0; ky < s.kh; ++ky) {
          std::int64_t iy = oy * s.sh + ky - s.ph;
          if (iy < 0 || iy >= s.h) iy = s.h;  // the padding row
          const std::int32_t* w = weights_.data() + ky * sources_ * groups * block_;
          for (std::int64_t source = 0; source < sources_; ++source) {
            const std::int32_t* base = expanded.data() + iy * row_stride + source * phases_ * expanded_ + b;
            for (std::int64_t g = 0; g < groups; ++g, w += block_) {
              const std::int32_t* e = base + shifts_[static_cast<std::size_t>(g)];
              __m512i weight[Vectors];
              for (int v = 0; v < Vectors; ++v) weight[v] = _mm512_loadu_si512(w + v * kLanes);
              for (int u = 0; u < Blocks; ++u)
                for (int v = 0; v < Vectors; ++v)
                  acc[u][v] = _mm512_dpbusd_epi32(acc[u][v], _mm512_loadu_si512(e + (u * Vectors + v) * kLanes), weight[v]);
            }
          }
        }
        for (int u = 0; u < Blocks; ++u) {
          for (int v = 0; v < Vectors; ++v) {
            const std::int64_t first = b + (u * Vectors + v) * kLanes, count = std::min(kLanes, width - first);
            if (count <= 0) continue;
            epilogue.store(acc[u][v], offset_.data() + v * kLanes, bias_.data() + v * kLanes,
                           scale_.data() + v * kLanes, residual, out, out_row + first, __mmask16((1u << count) - 1u));
          }
        }
      }
    }
  }
#else
  (void)in, (void)residual, (void)out, (void)first_image, (void)end_image;
#endif
}

}  // namespace joulecut::kernels

#if defined(JOULECUT_SMALL_CONV_VNNI) && defined(__AMX_TILE__) && defined(__AMX_INT8__)
#include <cpuid.h>
#include <sys/syscall.h>
#include <unistd.h>
#define JOULECUT_AMX 1
#endif

namespace joulecut::kernels {
namespace {

constexpr std::int64_t kTileRows = 16;   // rows of an AMX tile
constexpr std::int64_t kTileBytes = 64;  // bytes of a tile row: the multiply's depth
constexpr std::int64_t kWeightTile = kTileRows * kTileBytes;
constexpr int kMaxAmxTiles = 4;          // accumulators; tiles 4 (input) and 5, 6 (weights) are the rest

// The CPU has AMX-INT8 and Linux lets this process use its tile state (asked once; oneDNN asks
// the same way for its own AMX kernels).
bool amx_usable() {
#ifndef JOULECUT_AMX
  return false;
#else
  static const bool usable = [] {
    unsigned a = 0, b = 0, c = 0, d = 0;
    if (!__get_cpuid_count(7, 0, &a, &b, &c, &d)) return false;
    if (!(d & (1u << 24)) || !(d & (1u << 25))) return false;  // AMX-TILE, AMX-INT8
    constexpr long kRequestPermission = 0x1023, kTileData = 18;  // ARCH_REQ_XCOMP_PERM, XFEATURE_XTILEDATA
    return syscall(SYS_arch_prctl, kRequestPermission, kTileData) == 0;
  }();
  return usable;
#endif
}

// Where AmxConv reads. The image is copied, with its padding (the input zero point), into
// planes: one per slice of at most 16 channels and per phase of the strides (padded pixel
// (Y, X) goes to plane (Y % sh, X % sw) at (Y / sh, X / sw)), so that every plane is read at
// stride 1. A pass is one kernel row of one plane: its taps, at kernel row ky = ky' sh + py and
// columns kx = kx' sw + px. Tile row j of output row y reads a plane's row y + ky' from
// position j * outputs: tile rows are evenly spaced, and a tile spans several output rows.
struct AmxGeometry {
  std::int64_t slice = 0;    // channels per plane
  std::int64_t tiles = 0;    // accumulator tiles per tile row
  std::int64_t outputs = 0;  // neighbouring outputs per tile row
  std::int64_t row_blocks = 0, width = 0, height = 0;  // tile rows per output row; a plane's positions, rows
  std::int64_t plane_bytes = 0, planes = 0;
  struct Pass {
    std::int64_t slice, py, px, ky_step;  // ky = ky_step * sh + py
  };
  std::vector<Pass> passes;
};

AmxGeometry amx_geometry(const SmallConvShape& s) {
  AmxGeometry g;
  g.slice = std::min<std::int64_t>(s.c, kLanes);
  const std::int64_t pixels = kTileBytes / g.slice;                              // per tile row
  const std::int64_t taps = (s.kw + s.sw - 1) / s.sw, rows = (s.kh + s.sh - 1) / s.sh;  // per plane
  const std::int64_t reach = pixels - taps + 1;  // outputs a tile row's pixels cover
  if (reach < 1) return g;
  if (s.oc <= kLanes) {
    const std::int64_t per_tile = kLanes / s.oc;
    g.tiles = std::min<std::int64_t>(kMaxAmxTiles, reach / per_tile);
    g.outputs = g.tiles * per_tile;
  } else {
    const std::int64_t per_output = s.oc / kLanes;
    g.outputs = std::min<std::int64_t>(kMaxAmxTiles / per_output, reach);
    g.tiles = g.outputs * per_output;
  }
  if (g.tiles < 1) return g;
  const std::int64_t positions = std::max(s.ow + taps - 1, (s.w + 2 * s.pw + s.sw - 1) / s.sw);
  g.row_blocks = (positions + g.outputs - 1) / g.outputs;
  g.width = g.row_blocks * g.outputs;
  g.height = std::max(s.oh + rows - 1, (s.h + 2 * s.ph + s.sh - 1) / s.sh);
  // A plane, and what the last tile's rows read past it.
  const std::int64_t tile_rows = round_up(s.oh * g.row_blocks, kTileRows);
  const std::int64_t read = ((rows - 1) * g.width + (tile_rows - 1) * g.outputs) * g.slice + kTileBytes;
  g.plane_bytes = round_up(std::max(g.height * g.width * g.slice, read), kTileBytes);
  g.planes = s.c / g.slice * s.sh * s.sw;
  for (std::int64_t slice = 0; slice < s.c / g.slice; ++slice)
    for (std::int64_t py = 0; py < std::min(s.sh, s.kh); ++py)
      for (std::int64_t ky_step = 0; ky_step * s.sh + py < s.kh; ++ky_step)
        for (std::int64_t px = 0; px < std::min(s.sw, s.kw); ++px) g.passes.push_back({slice, py, px, ky_step});
  return g;
}

// `count` (1, 2, 4, 8 or 16) bytes: each size a fixed-size copy, not a call.
inline void copy_channels(std::uint8_t* to, const std::uint8_t* from, std::int64_t count) {
  switch (count) {
    case 1: *to = *from; return;
    case 2: std::memcpy(to, from, 2); return;
    case 4: std::memcpy(to, from, 4); return;
    case 8: std::memcpy(to, from, 8); return;
    default: std::memcpy(to, from, 16); return;
  }
}

bool power_of_two_upto(std::int64_t v, std::int64_t most) { return v >= 1 && v <= most && (v & (v - 1)) == 0; }

#ifdef JOULECUT_AMX
// GCC's tile intrinsics paste the tile number into assembly: literal numbers only, hence the
// macros. Accumulator t takes weight tile 5 or 6 in turn, so a load overlaps the multiply before.
#define JOULECUT_TILE_MULTIPLY_ADD(t, b, weights) \
  _tile_loadd(b, weights, kTileBytes);             \
  _tile_dpbusd(t, 4, b)
template <int Tiles>
inline void multiply_add_all(const std::int8_t* weights) {
  JOULECUT_TILE_MULTIPLY_ADD(0, 5, weights);
  if constexpr (Tiles > 1) { JOULECUT_TILE_MULTIPLY_ADD(1, 6, weights + kWeightTile); }
  if constexpr (Tiles > 2) { JOULECUT_TILE_MULTIPLY_ADD(2, 5, weights + 2 * kWeightTile); }
  if constexpr (Tiles > 3) { JOULECUT_TILE_MULTIPLY_ADD(3, 6, weights + 3 * kWeightTile); }
}
#undef JOULECUT_TILE_MULTIPLY_ADD
template <int Tiles>
inline void zero_all() {
  _tile_zero(0);
  if constexpr (Tiles > 1) _tile_zero(1);
  if constexpr (Tiles > 2) _tile_zero(2);
  if constexpr (Tiles > 3) _tile_zero(3);
}
// Tile t's 16 columns go to columns [16 t, 16 t + 16) of rows of Tiles * 16 int32.
template <int Tiles>
inline void store_all(std::int32_t* sums) {
  constexpr std::int64_t stride = Tiles * kLanes * 4;
  _tile_stored(0, sums, stride);
  if constexpr (Tiles > 1) _tile_stored(1, sums + kLanes, stride);
  if constexpr (Tiles > 2) _tile_stored(2, sums + 2 * kLanes, stride);
  if constexpr (Tiles > 3) _tile_stored(3, sums + 3 * kLanes, stride);
}
#endif

}  // namespace

bool AmxConv::fits(const SmallConvShape& s) {
  if (!amx_usable()) return false;
  if (!power_of_two_upto(s.c, 64) || !power_of_two_upto(s.oc, 32) || s.sh < 1 || s.sh > 4 || s.sw < 1 || s.sw > 4 ||
      s.kh < 1 || s.kw < 1 || s.kh > 16 || s.kw > 16 || s.ph < 0 || s.pw < 0 || s.oh < 1 || s.ow < 1)
    return false;
  if (s.oh != (s.h + 2 * s.ph - s.kh) / s.sh + 1 || s.ow != (s.w + 2 * s.pw - s.kw) / s.sw + 1) return false;
  const AmxGeometry g = amx_geometry(s);
  return g.tiles >= 1 && g.planes * g.plane_bytes <= (std::int64_t(4) << 20);
}

AmxConv::AmxConv(const SmallConvShape& s, const std::int8_t* weight, const float* scale, const float* bias,
                 std::uint8_t input_zero_point, std::uint8_t output_zero_point, bool relu, bool output_float,
                 const SmallConvResidual* residual)
    : SmallConvTerms(s, input_zero_point, output_zero_point, relu, output_float, residual) {
  const AmxGeometry g = amx_geometry(s);
  tiles_ = g.tiles;
  outputs_ = g.outputs;
  row_blocks_ = g.row_blocks;
  width_ = g.width;
  slice_ = g.slice;
  plane_bytes_ = g.plane_bytes;
  // Weight tile (pass, t), AMX's layout: row r, column n, byte i multiplies byte k = 4 r + i of
  // a tile row (position k / slice, channel k % slice of the pass's slice) into tile t's column
  // n: output t * 16 / oc + n / oc, channel n % oc (oc <= 16), or output t / (oc / 16),
  // channel (t % (oc / 16)) * 16 + n.
  weights_.assign(static_cast<std::size_t>(std::int64_t(g.passes.size()) * tiles_ * kWeightTile), 0);
  for (std::size_t pass = 0; pass < g.passes.size(); ++pass) {
    const AmxGeometry::Pass& p = g.passes[pass];
    const std::int64_t ky = p.ky_step * s.sh + p.py;
    plane_offsets_.push_back(((p.slice * s.sh + p.py) * s.sw + p.px) * plane_bytes_ +
                             p.ky_step * width_ * slice_);
    for (std::int64_t t = 0; t < tiles_; ++t)
      for (std::int64_t n = 0; n < kLanes; ++n) {
        const std::int64_t output = s.oc <= kLanes ? t * (kLanes / s.oc) + n / s.oc : t / (s.oc / kLanes);
        const std::int64_t o = s.oc <= kLanes ? n % s.oc : t % (s.oc / kLanes) * kLanes + n;
        for (std::int64_t k = 0; k < kTileBytes; ++k) {
          const std::int64_t kx = (k / slice_ - output) * s.sw + p.px, ci = p.slice * slice_ + k % slice_;
          if (k / slice_ < output || kx >= s.kw) continue;
          weights_[static_cast<std::size_t>((std::int64_t(pass) * tiles_ + t) * kWeightTile + k / 4 * kTileBytes +
                                            n * 4 + k % 4)] = weight[((o * s.c + ci) * s.kh + ky) * s.kw + kx];
        }
      }
  }
  const std::int64_t terms = std::max(kLanes, s.oc);
  offset_.assign(static_cast<std::size_t>(terms), 0);
  scale_.resize(static_cast<std::size_t>(terms));
  bias_.resize(static_cast<std::size_t>(terms));
  for (std::int64_t n = 0; n < terms; ++n) {
    const std::int64_t o = n % s.oc;
    for (std::int64_t i = 0; i < s.c * s.kh * s.kw; ++i)
      offset_[static_cast<std::size_t>(n)] += std::int32_t(input_zero_point) * weight[o * s.c * s.kh * s.kw + i];
    scale_[static_cast<std::size_t>(n)] = scale[o];
    bias_[static_cast<std::size_t>(n)] = bias[o];
  }
}

void AmxConv::run(const std::uint8_t* in, const std::uint8_t* residual, void* out, std::int64_t first_image,
                  std::int64_t end_image) const {
  switch (tiles_) {
    case 1: return run_tiles<1>(in, residual, out, first_image, end_image);
    case 2: return run_tiles<2>(in, residual, out, first_image, end_image);
    case 3: return run_tiles<3>(in, residual, out, first_image, end_image);
    case 4: return run_tiles<4>(in, residual, out, first_image, end_image);
    default: return;  // fits() refused the shape
  }
}

template <int Tiles>
void AmxConv::run_tiles(const std::uint8_t* in, const std::uint8_t* residual, void* out, std::int64_t first_image,
                        std::int64_t end_image) const {
#ifdef JOULECUT_AMX
  const SmallConvShape& s = s_;
  struct alignas(64) TileConfig {
    std::uint8_t palette = 1, start_row = 0, reserved[14] = {};
    std::uint16_t bytes_per_row[16] = {};
    std::uint8_t rows[16] = {};
  } config;
  for (const int tile : {0, 1, 2, 3, 4, 5, 6}) {
    if (tile < 4 && tile >= Tiles) continue;
    config.bytes_per_row[tile] = kTileBytes;
    config.rows[tile] = kTileRows;
  }
  // Allocated first: nothing that can throw runs between loading the tile configuration and
  // releasing it.
  const std::int64_t planes = s.c / slice_ * s.sh * s.sw;
  std::vector<std::uint8_t> padded(static_cast<std::size_t>(planes * plane_bytes_), input_zero_point_);
  _tile_loadconfig(&config);
  alignas(64) std::int32_t sums[kTileRows * Tiles * kLanes];
  const std::int64_t step = outputs_ * slice_, tile_rows = s.oh * row_blocks_;
  const std::int64_t values = outputs_ * s.oc;  // per tile row: Tiles vectors
  const std::size_t passes = plane_offsets_.size();
  const bool whole_rows = s.sh == 1 && s.sw == 1 && slice_ == s.c;
  // Locals: the compiler reloads members (and divides) inside the copy loop otherwise.
  const std::int64_t slice = slice_, slices = s.c / slice_, slice_planes = s.sh * s.sw, plane = plane_bytes_;
  const Epilogue epilogue(relu_, output_zero_point_, output_float_, residual_ ? &residual_terms_ : nullptr);
  // Vector v of a tile row starts at channel 16 v % oc: its lanes' terms, one set or two.
  const __m512i offset[2] = {_mm512_loadu_si512(offset_.data()),
                             _mm512_loadu_si512(offset_.data() + (s.oc > kLanes ? kLanes : 0))};
  const __m512 bias[2] = {_mm512_loadu_ps(bias_.data()), _mm512_loadu_ps(bias_.data() + (s.oc > kLanes ? kLanes : 0))};
  const __m512 scale[2] = {_mm512_loadu_ps(scale_.data()),
                           _mm512_loadu_ps(scale_.data() + (s.oc > kLanes ? kLanes : 0))};
  for (std::int64_t n = first_image; n < end_image; ++n) {
    const std::uint8_t* image = in + n * s.h * s.w * s.c;
    for (std::int64_t iy = 0; iy < s.h; ++iy) {
      const std::int64_t y = iy + s.ph;
      if (whole_rows) {
        std::memcpy(padded.data() + (y * width_ + s.pw) * s.c, image + iy * s.w * s.c,
                    static_cast<std::size_t>(s.w * s.c));
        continue;
      }
      const std::int64_t py = y % s.sh;
      if (py >= s.kh) continue;  // a row no pass reads (the passes' row phases are 0 .. min(sh, kh) - 1)
      const std::uint8_t* pixel = image + iy * s.w * s.c;
      std::uint8_t* row = padded.data() + py * s.sw * plane_bytes_ + y / s.sh * width_ * slice;
      std::int64_t px = s.pw % s.sw, position = s.pw / s.sw;
      for (std::int64_t ix = 0; ix < s.w; ++ix, pixel += s.c) {
        if (px < s.kw)  // else a column no pass reads
          for (std::int64_t k = 0; k < slices; ++k)
            copy_channels(row + (k * slice_planes + px) * plane + position * slice, pixel + k * slice, slice);
        if (++px == s.sw) px = 0, ++position;
      }
    }
    // Each group of 16 tile rows is multiplied while the epilogue of the group before runs
    // on the vector units: the tiles' latency hidden behind it.
    auto multiply = [&](std::int64_t first) {
      zero_all<Tiles>();
      for (std::size_t pass = 0; pass < passes; ++pass) {
        _tile_loadd(4, padded.data() + plane_offsets_[pass] + first * step, step);
        multiply_add_all<Tiles>(weights_.data() + std::int64_t(pass) * Tiles * kWeightTile);
      }
    };
    std::int64_t y = 0, x = 0;  // the output row and column of tile row `first + r`
    multiply(0);
    for (std::int64_t first = 0; first < tile_rows; first += kTileRows) {
      store_all<Tiles>(sums);
      if (first + kTileRows < tile_rows) multiply(first + kTileRows);
      for (std::int64_t r = 0; r < kTileRows && first + r < tile_rows; ++r) {
        const std::int64_t count = std::min(outputs_, s.ow - x) * s.oc, at = ((n * s.oh + y) * s.ow + x) * s.oc;
        for (std::int64_t v = 0; v * kLanes < count; ++v) {
          const std::int64_t lanes = std::min(kLanes, count - v * kLanes), terms = v & (s.oc > kLanes);
          epilogue.store(_mm512_load_si512(sums + r * values + v * kLanes), offset[terms], bias[terms], scale[terms],
                         residual, out, at + v * kLanes, __mmask16((1u << lanes) - 1u));
        }
        x += outputs_;  // the next tile row: the next outputs, or the next output row's first
        if (x >= width_) x = 0, ++y;
      }
    }
  }
  _tile_release();
#else
  (void)in, (void)residual, (void)out, (void)first_image, (void)end_image;
#endif
}

}  // namespace joulecut::kernels
