// joulecut's few-channel convolutions on Intel's AMX tiles (AmxConv, see int8_kernels.h): the CPU
// and kernel check, where the tiles read (the planes' geometry), the packed weight tiles, and the
// tile multiply-adds with SmallChannelConv's epilogue.
#include <algorithm>
#include <cstring>
#include <vector>

#include "int8_epilogue.h"
#include "int8_kernels.h"

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
// The tiles' configuration: accumulators 0 .. Tiles - 1, the input 4, the weights 5 and 6, each
// 16 rows of 64 bytes.
struct alignas(64) TileConfig {
  std::uint8_t palette = 1, start_row = 0, reserved[14] = {};
  std::uint16_t bytes_per_row[16] = {};
  std::uint8_t rows[16] = {};
};
template <int Tiles>
TileConfig tile_config() {
  TileConfig config;
  for (const int tile : {0, 1, 2, 3, 4, 5, 6}) {
    if (tile < 4 && tile >= Tiles) continue;
    config.bytes_per_row[tile] = kTileBytes;
    config.rows[tile] = kTileRows;
  }
  return config;
}
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

void AmxConv::copy_image(const std::uint8_t* image, std::uint8_t* padded) const {
  const SmallConvShape& s = s_;
  const bool whole_rows = s.sh == 1 && s.sw == 1 && slice_ == s.c;
  // Locals: the compiler reloads members (and divides) inside the copy loop otherwise.
  const std::int64_t slice = slice_, slices = s.c / slice_, slice_planes = s.sh * s.sw, plane = plane_bytes_;
  for (std::int64_t iy = 0; iy < s.h; ++iy) {
    const std::int64_t y = iy + s.ph;
    if (whole_rows) {
      std::memcpy(padded + (y * width_ + s.pw) * s.c, image + iy * s.w * s.c,
                  static_cast<std::size_t>(s.w * s.c));
      continue;
    }
    const std::int64_t py = y % s.sh;
    if (py >= s.kh) continue;  // a row no pass reads (the passes' row phases are 0 .. min(sh, kh) - 1)
    const std::uint8_t* pixel = image + iy * s.w * s.c;
    std::uint8_t* row = padded + py * s.sw * plane_bytes_ + y / s.sh * width_ * slice;
    std::int64_t px = s.pw % s.sw, position = s.pw / s.sw;
    for (std::int64_t ix = 0; ix < s.w; ++ix, pixel += s.c) {
      if (px < s.kw)  // else a column no pass reads
        for (std::int64_t k = 0; k < slices; ++k)
          copy_channels(row + (k * slice_planes + px) * plane + position * slice, pixel + k * slice, slice);
      if (++px == s.sw) px = 0, ++position;
    }
  }
}

template <int Tiles>
void AmxConv::run_tiles(const std::uint8_t* in, const std::uint8_t* residual, void* out, std::int64_t first_image,
                        std::int64_t end_image) const {
#ifdef JOULECUT_AMX
  const SmallConvShape& s = s_;
  const TileConfig config = tile_config<Tiles>();
  // Allocated first: nothing that can throw runs between loading the tile configuration and
  // releasing it.
  const std::int64_t planes = s.c / slice_ * s.sh * s.sw;
  std::vector<std::uint8_t> padded(static_cast<std::size_t>(planes * plane_bytes_), input_zero_point_);
  _tile_loadconfig(&config);
  alignas(64) std::int32_t sums[kTileRows * Tiles * kLanes];
  const std::int64_t step = outputs_ * slice_, tile_rows = s.oh * row_blocks_;
  const std::int64_t values = outputs_ * s.oc;  // per tile row: Tiles vectors
  const std::size_t passes = plane_offsets_.size();
  const Epilogue epilogue(relu_, output_zero_point_, output_float_, residual_ ? &residual_terms_ : nullptr);
  // Vector v of a tile row starts at channel 16 v % oc: its lanes' terms, one set or two.
  const __m512i offset[2] = {_mm512_loadu_si512(offset_.data()),
                             _mm512_loadu_si512(offset_.data() + (s.oc > kLanes ? kLanes : 0))};
  const __m512 bias[2] = {_mm512_loadu_ps(bias_.data()), _mm512_loadu_ps(bias_.data() + (s.oc > kLanes ? kLanes : 0))};
  const __m512 scale[2] = {_mm512_loadu_ps(scale_.data()),
                           _mm512_loadu_ps(scale_.data() + (s.oc > kLanes ? kLanes : 0))};
  for (std::int64_t n = first_image; n < end_image; ++n) {
    copy_image(in + n * s.h * s.w * s.c, padded.data());
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
