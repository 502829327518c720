// joulecut's direct convolution for layers with few output channels on AVX-512 VNNI
// (SmallChannelConv, see int8_kernels.h): the layout of its expanded rows and tiled weights, the
// expansion of each input row, and the multiply-adds over each output row.
#include <algorithm>
#include <cstring>
#include <numeric>
#include <vector>

#include "int8_epilogue.h"
#include "int8_kernels.h"

namespace joulecut::kernels {
namespace {

constexpr int kMaxAccumulators = 12; // of 32 registers: enough chains to hide latency
constexpr std::int64_t kQuad = 4;    // one VNNI multiply-add sums 4 byte products per lane

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

#ifdef JOULECUT_SMALL_CONV_VNNI
// One call's expanded input rows, [h + 1][source][phase][expanded_] int32: per input row, source
// and phase p, element q * oc + o holds the 4 bytes of padded pixel q * sw + p (4 channels), or
// of padded pixels q * sw + p .. + 3 (one channel); the padding is the input zero point. Row h is
// all padding, for the kernel rows above and below the image. With the scratch of one row.
template <int Vectors>
class SmallChannelConv::Expansion {
 public:
  explicit Expansion(const SmallChannelConv& conv)
      : conv_(conv),
        shape_(conv.s_),
        pixels_per_block_(conv.block_ / conv.s_.oc),
        blocks_(conv.expanded_ / conv.block_),
        pixels_(conv.expanded_ / conv.s_.oc),
        row_stride_(conv.sources_ * conv.phases_ * conv.expanded_),
        padded_pixels_(round_up((pixels_ + kLanes) * conv.s_.sw + kQuad, kLanes) + kQuad),
        visible_(std::min(conv.s_.w, padded_pixels_ - kLanes - conv.s_.pw)) {
    rows_.resize(static_cast<std::size_t>((shape_.h + 1) * row_stride_));
    // One channel: its bytes, padded. Channel quads: their int32s, padded.
    padded_.assign(static_cast<std::size_t>(padded_pixels_), conv.input_zero_point_);
    const std::int32_t padding_quad = std::int32_t(0x01010101u * conv.input_zero_point_);
    quads_.assign(static_cast<std::size_t>(padded_pixels_), padding_quad);
    strided_.resize(static_cast<std::size_t>(pixels_ + kLanes));
    for (int v = 0; v < Vectors; ++v) {
      alignas(64) std::int32_t index[kLanes];
      for (std::int64_t i = 0; i < kLanes; ++i) index[i] = std::int32_t((v * kLanes + i) / shape_.oc);
      spread_[v] = _mm512_load_si512(index);
    }
    if (!conv.channel_quads_) quads_of_bytes();
    for (std::int64_t source = 0; source < conv.sources_; ++source)
      for (std::int64_t p = 0; p < conv.phases_; ++p) expand(at(shape_.h, source, p), p);
  }

  const std::int32_t* rows() const { return rows_.data(); }
  std::int64_t row_stride() const { return row_stride_; }

  // The input rows of image n into rows [0, h).
  void expand_image(const std::uint8_t* in, std::int64_t n) {
    const SmallConvShape& s = shape_;
    for (std::int64_t iy = 0; iy < s.h; ++iy) {
      const std::uint8_t* row = in + (n * s.h + iy) * s.w * s.c;
      for (std::int64_t source = 0; source < conv_.sources_; ++source) {
        load(row, source);
        for (std::int64_t p = 0; p < conv_.phases_; ++p) expand(at(iy, source, p), p);
      }
    }
  }

 private:
  std::int32_t* at(std::int64_t iy, std::int64_t source, std::int64_t p) {
    return rows_.data() + iy * row_stride_ + (source * conv_.phases_ + p) * conv_.expanded_;
  }

  // One source of an input row into the padded scratch: its channel quad, or its channel's bytes
  // and then their quads.
  void load(const std::uint8_t* row, std::int64_t source) {
    const SmallConvShape& s = shape_;
    const std::int64_t visible = visible_;
    if (conv_.channel_quads_) {
      std::int32_t* to = quads_.data() + s.pw;
      for (std::int64_t x = 0; x < visible; ++x) std::memcpy(to + x, row + x * s.c + source * kQuad, kQuad);
    } else if (s.c == 1) {
      std::memcpy(padded_.data() + s.pw, row, static_cast<std::size_t>(visible));
      quads_of_bytes();
    } else {
      for (std::int64_t x = 0; x < visible; ++x) padded_[static_cast<std::size_t>(s.pw + x)] = row[x * s.c + source];
      quads_of_bytes();
    }
  }

  // One channel: element k of the quads holds padded bytes k .. k + 3, four byte-shifted copies
  // widened and merged 16 at a time.
  void quads_of_bytes() {
    const std::uint8_t* padded = padded_.data();
    std::int32_t* quads = quads_.data();
    const std::int64_t padded_pixels = padded_pixels_;
    for (std::int64_t k = 0; k + kLanes + kQuad - 1 <= padded_pixels; k += kLanes) {
      __m512i quad = _mm512_setzero_si512();
      for (int t = 0; t < kQuad; ++t) {
        const __m128i bytes = _mm_loadu_si128(reinterpret_cast<const __m128i*>(padded + k + t));
        quad = _mm512_or_si512(quad, _mm512_slli_epi32(_mm512_cvtepu8_epi32(bytes), 8 * t));
      }
      _mm512_storeu_si512(quads + k, quad);
    }
  }

  // Phase p of the quads, every sw-th from p, spread into `to`: each block's pixels repeated for
  // its oc lanes.
  void expand(std::int32_t* to, std::int64_t p) {
    const std::int64_t sw = shape_.sw, pixels = pixels_, blocks = blocks_, per_block = pixels_per_block_;
    const std::int64_t block = conv_.block_;
    __m512i spread[Vectors];
    for (int v = 0; v < Vectors; ++v) spread[v] = spread_[v];
    const std::int32_t* source_pixels = quads_.data() + p;
    if (sw > 1) {
      for (std::int64_t q = 0; q < pixels + kLanes; ++q)
        strided_[static_cast<std::size_t>(q)] = quads_[static_cast<std::size_t>(q * sw + p)];
      source_pixels = strided_.data();
    }
    for (std::int64_t b = 0; b < blocks; ++b) {
      const __m512i source = _mm512_loadu_si512(source_pixels + b * per_block);
      for (int v = 0; v < Vectors; ++v)
        _mm512_storeu_si512(to + b * block + v * kLanes, _mm512_permutexvar_epi32(spread[v], source));
    }
  }

  const SmallChannelConv& conv_;
  const SmallConvShape& shape_;
  const std::int64_t pixels_per_block_, blocks_, pixels_, row_stride_, padded_pixels_, visible_;
  std::vector<std::int32_t> rows_;
  std::vector<std::uint8_t> padded_;   // one channel's bytes
  std::vector<std::int32_t> quads_;    // 4 bytes per element: 4 channels, or 4 taps of one channel
  std::vector<std::int32_t> strided_;  // every sw-th quad, for strides > 1
  __m512i spread_[Vectors];            // lane i of vector v takes pixel (16 v + i) / oc of the block
};
#endif

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
  Expansion<Vectors> expansion(*this);
  const std::int32_t* expanded = expansion.rows();
  const std::int64_t row_stride = expansion.row_stride();
  const Epilogue epilogue(relu_, output_zero_point_, output_float_, residual_ ? &residual_terms_ : nullptr);
  for (std::int64_t n = first_image; n < end_image; ++n) {
    expansion.expand_image(in, n);
    // Each tile of each output row: Blocks blocks' accumulators in registers.
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
            const std::int32_t* base = expanded + iy * row_stride + source * phases_ * expanded_ + b;
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
