#include "joulecut/image.h"

#include <png.h>
#include <turbojpeg.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <fstream>
#include <iterator>
#include <memory>

#include "joulecut/error.h"

namespace joulecut {
namespace {

// Pillow's decompression-bomb limit: a larger header is refused before anything is allocated.
constexpr std::int64_t kMaxPixels = 89478485;

void check_dimensions(std::int64_t width, std::int64_t height, const std::string& origin, const char* kind) {
  if (width <= 0 || height <= 0 || width * height > kMaxPixels)
    throw UserError(origin + ": " + kind + " of " + std::to_string(width) + "x" + std::to_string(height) +
                    " pixels is outside the supported sizes (1 to 89.5 million pixels)");
}

// RGB(A) or gray(+alpha) 8-bit pixels to `channels`, as Pillow converts.
Image convert(int width, int height, int source_channels, const std::uint8_t* p, int channels) {
  Image out;
  out.width = width;
  out.height = height;
  out.channels = channels;
  const std::size_t n = std::size_t(width) * std::size_t(height);
  out.pixels.resize(n * std::size_t(channels));
  const bool gray_source = source_channels <= 2;
  for (std::size_t i = 0; i < n; ++i) {
    const std::uint8_t* s = p + i * std::size_t(source_channels);
    std::uint8_t* d = &out.pixels[i * std::size_t(channels)];
    if (channels == 1) {
      d[0] = gray_source ? s[0] : std::uint8_t((s[0] * 19595 + s[1] * 38470 + s[2] * 7471 + 0x8000) >> 16);
    } else if (gray_source) {
      d[0] = d[1] = d[2] = s[0];
    } else {
      d[0] = s[0];
      d[1] = s[1];
      d[2] = s[2];
    }
  }
  return out;
}

Image decode_png(const std::uint8_t* bytes, std::size_t size, const std::string& origin, int channels) {
  png_image image;
  std::memset(&image, 0, sizeof image);
  image.version = PNG_IMAGE_VERSION;
  if (!png_image_begin_read_from_memory(&image, bytes, size))
    throw UserError(origin + ": corrupt PNG (" + image.message + ")");
  const bool gray = (image.format & PNG_FORMAT_FLAG_COLOR) == 0;
  const bool alpha = (image.format & PNG_FORMAT_FLAG_ALPHA) != 0;
  // Keep the file's own layout (8 bits, sRGB): no gamma or alpha compositing by libpng.
  image.format = gray ? (alpha ? PNG_FORMAT_GA : PNG_FORMAT_GRAY) : (alpha ? PNG_FORMAT_RGBA : PNG_FORMAT_RGB);
  const int source_channels = int(PNG_IMAGE_PIXEL_CHANNELS(image.format));
  try {
    check_dimensions(image.width, image.height, origin, "PNG");
  } catch (const UserError&) {
    png_image_free(&image);
    throw;
  }
  std::vector<std::uint8_t> buffer(PNG_IMAGE_SIZE(image));
  if (!png_image_finish_read(&image, nullptr, buffer.data(), 0, nullptr)) {
    const std::string why = image.message;
    png_image_free(&image);
    throw UserError(origin + ": corrupt or truncated PNG (" + why + ")");
  }
  return convert(int(image.width), int(image.height), source_channels, buffer.data(), channels);
}

Image decode_jpeg(const std::uint8_t* bytes, std::size_t size, const std::string& origin, int channels) {
  std::unique_ptr<void, decltype(&tjDestroy)> tj(tjInitDecompress(), &tjDestroy);
  if (!tj) throw UserError(origin + ": cannot start the JPEG decoder");
  int width = 0, height = 0, subsampling = 0, colorspace = 0;
  if (tjDecompressHeader3(tj.get(), bytes, static_cast<unsigned long>(size), &width, &height, &subsampling, &colorspace) != 0)
    throw UserError(origin + ": corrupt JPEG (" + tjGetErrorStr2(tj.get()) + ")");
  check_dimensions(width, height, origin, "JPEG");
  if (colorspace == TJCS_CMYK || colorspace == TJCS_YCCK)
    throw UserError(origin + ": CMYK JPEG is not supported; convert it to RGB");
  // A color JPEG is decoded to RGB first, then (for gray) converted as Pillow does; the
  // decoder's own luminance differs from Pillow's L.
  const int source_channels = colorspace == TJCS_GRAY ? 1 : 3;
  std::vector<std::uint8_t> decoded(std::size_t(width) * std::size_t(height) * std::size_t(source_channels));
  // Accurate DCT and fancy upsampling: libjpeg's defaults, which Pillow uses.
  if (tjDecompress2(tj.get(), bytes, static_cast<unsigned long>(size), decoded.data(), width, 0, height,
                    source_channels == 1 ? TJPF_GRAY : TJPF_RGB, TJFLAG_ACCURATEDCT) != 0) {
    // A truncated file decodes with a warning and grey rows: refuse it rather than feed them.
    throw UserError(origin + ": corrupt or truncated JPEG (" + tjGetErrorStr2(tj.get()) + ")");
  }
  return convert(width, height, source_channels, decoded.data(), channels);
}

// ---- Pillow's resampling (libImaging/Resample.c), bilinear ----------------------------------
constexpr int kPrecisionBits = 32 - 8 - 2;

double bilinear(double x) {
  x = std::fabs(x);
  return x < 1.0 ? 1.0 - x : 0.0;
}

struct Coefficients {
  int ksize = 0;
  std::vector<int> bounds;  // per output: first input, count
  std::vector<int> k;       // per output: ksize fixed-point weights
};

Coefficients precompute(int in_size, int out_size) {
  const double scale = double(in_size) / out_size;
  const double filterscale = std::max(scale, 1.0);
  const double support = 1.0 * filterscale;
  Coefficients c;
  c.ksize = int(std::ceil(support)) * 2 + 1;
  c.bounds.resize(std::size_t(out_size) * 2);
  c.k.assign(std::size_t(out_size) * std::size_t(c.ksize), 0);
  std::vector<double> w(std::size_t(c.ksize));
  for (int xx = 0; xx < out_size; ++xx) {
    const double center = (xx + 0.5) * scale;
    const double ss = 1.0 / filterscale;
    int xmin = int(center - support + 0.5);
    if (xmin < 0) xmin = 0;
    int xmax = int(center + support + 0.5);
    if (xmax > in_size) xmax = in_size;
    xmax -= xmin;
    double ww = 0;
    for (int x = 0; x < xmax; ++x) {
      w[std::size_t(x)] = bilinear((x + xmin - center + 0.5) * ss);
      ww += w[std::size_t(x)];
    }
    for (int x = 0; x < xmax; ++x) {
      const double v = ww != 0.0 ? w[std::size_t(x)] / ww : w[std::size_t(x)];
      c.k[std::size_t(xx) * std::size_t(c.ksize) + std::size_t(x)] =
          v < 0 ? int(-0.5 + v * (1 << kPrecisionBits)) : int(0.5 + v * (1 << kPrecisionBits));
    }
    c.bounds[std::size_t(xx) * 2] = xmin;
    c.bounds[std::size_t(xx) * 2 + 1] = xmax;
  }
  return c;
}

std::uint8_t clip8(long long v) {
  v >>= kPrecisionBits;
  return std::uint8_t(v < 0 ? 0 : v > 255 ? 255 : v);
}

}  // namespace

Image decode_image(const std::uint8_t* bytes, std::size_t size, const std::string& origin, int channels) {
  JOULECUT_ASSERT(channels == 1 || channels == 3, "decode_image: 1 or 3 channels");
  static const std::uint8_t png_magic[] = {0x89, 'P', 'N', 'G', 0x0d, 0x0a, 0x1a, 0x0a};
  if (size >= 8 && std::memcmp(bytes, png_magic, 8) == 0) return decode_png(bytes, size, origin, channels);
  if (size >= 3 && bytes[0] == 0xff && bytes[1] == 0xd8 && bytes[2] == 0xff) return decode_jpeg(bytes, size, origin, channels);
  throw UserError(origin + ": not a PNG or JPEG image");
}

Image read_image(const std::string& path, int channels) {
  std::ifstream in(path, std::ios::binary);
  if (!in) throw UserError(path + ": cannot open");
  const std::vector<std::uint8_t> bytes((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  return decode_image(bytes.data(), bytes.size(), path, channels);
}

Image resize_bilinear(const Image& in, int width, int height) {
  JOULECUT_ASSERT(width > 0 && height > 0, "resize to a positive size");
  const int ch = in.channels;
  // Horizontal pass over the rows the vertical pass will read, then the vertical pass.
  const Coefficients vertical = precompute(in.height, height);
  const int first_row = vertical.bounds[0];
  const int last_row = vertical.bounds[std::size_t(height) * 2 - 2] + vertical.bounds[std::size_t(height) * 2 - 1];
  Image mid;
  const bool horizontal_needed = width != in.width;
  const bool vertical_needed = height != in.height;
  if (horizontal_needed) {
    const Coefficients h = precompute(in.width, width);
    mid.width = width;
    mid.height = last_row - first_row;
    mid.channels = ch;
    mid.pixels.resize(std::size_t(mid.width) * std::size_t(mid.height) * std::size_t(ch));
    for (int y = 0; y < mid.height; ++y)
      for (int xx = 0; xx < width; ++xx) {
        const int xmin = h.bounds[std::size_t(xx) * 2], xmax = h.bounds[std::size_t(xx) * 2 + 1];
        const int* k = &h.k[std::size_t(xx) * std::size_t(h.ksize)];
        for (int c = 0; c < ch; ++c) {
          long long ss = 1LL << (kPrecisionBits - 1);
          for (int x = 0; x < xmax; ++x)
            ss += (long long)in.pixels[(std::size_t(y + first_row) * std::size_t(in.width) + std::size_t(x + xmin)) * std::size_t(ch) + std::size_t(c)] * k[x];
          mid.pixels[(std::size_t(y) * std::size_t(width) + std::size_t(xx)) * std::size_t(ch) + std::size_t(c)] = clip8(ss);
        }
      }
  } else {
    mid = in;
  }
  if (!vertical_needed) return mid;
  const int row_offset = horizontal_needed ? first_row : 0;
  Image out;
  out.width = mid.width;
  out.height = height;
  out.channels = ch;
  out.pixels.resize(std::size_t(out.width) * std::size_t(height) * std::size_t(ch));
  for (int yy = 0; yy < height; ++yy) {
    const int ymin = vertical.bounds[std::size_t(yy) * 2] - row_offset, ymax = vertical.bounds[std::size_t(yy) * 2 + 1];
    const int* k = &vertical.k[std::size_t(yy) * std::size_t(vertical.ksize)];
    for (int x = 0; x < out.width; ++x)
      for (int c = 0; c < ch; ++c) {
        long long ss = 1LL << (kPrecisionBits - 1);
        for (int y = 0; y < ymax; ++y)
          ss += (long long)mid.pixels[(std::size_t(y + ymin) * std::size_t(mid.width) + std::size_t(x)) * std::size_t(ch) + std::size_t(c)] * k[y];
        out.pixels[(std::size_t(yy) * std::size_t(out.width) + std::size_t(x)) * std::size_t(ch) + std::size_t(c)] = clip8(ss);
      }
  }
  return out;
}

Image preprocess_image(const Image& image, const ImagePreprocess& options, const std::string& origin) {
  Image out = image;
  if (options.resize > 0) {
    // torchvision's Resize(int): the short side becomes `resize`, the long one int(resize * long / short).
    const bool wide = image.width >= image.height;
    const int short_side = wide ? image.height : image.width, long_side = wide ? image.width : image.height;
    const int new_long = int(double(options.resize) * long_side / short_side);
    const int w = wide ? new_long : options.resize, h = wide ? options.resize : new_long;
    if (w != image.width || h != image.height) out = resize_bilinear(image, w, h);
  }
  if (options.crop > 0) {
    if (out.width < options.crop || out.height < options.crop)
      throw UserError(origin + ": " + std::to_string(out.width) + "x" + std::to_string(out.height) +
                      " pixels is smaller than " + option_ref("DataSource::crop") + " " + std::to_string(options.crop) +
                      " (add " + option_ref("DataSource::resize") + ")");
    // torchvision's CenterCrop: Python's round (half to even), as std::nearbyint does by default.
    const int top = int(std::nearbyint((out.height - options.crop) / 2.0));
    const int left = int(std::nearbyint((out.width - options.crop) / 2.0));
    Image cropped;
    cropped.width = cropped.height = options.crop;
    cropped.channels = out.channels;
    cropped.pixels.resize(std::size_t(options.crop) * std::size_t(options.crop) * std::size_t(out.channels));
    const std::size_t row = std::size_t(options.crop) * std::size_t(out.channels);
    for (int y = 0; y < options.crop; ++y)
      std::memcpy(&cropped.pixels[std::size_t(y) * row],
                  &out.pixels[(std::size_t(y + top) * std::size_t(out.width) + std::size_t(left)) * std::size_t(out.channels)], row);
    out = std::move(cropped);
  }
  return out;
}

}  // namespace joulecut
