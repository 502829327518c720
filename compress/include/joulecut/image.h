#pragma once
// Image decoding (PNG through libpng, JPEG through libjpeg-turbo) and the preprocessing
// torchvision users apply to a PIL image: resize of the short side, center crop, per-channel
// mean and std. Resizing reproduces Pillow's antialiased bilinear filter bit for bit (the
// two separable passes with their fixed-point coefficients), so that a model sees the pixels
// it saw in Python. Torch-free: the decoders are fuzzed on their own.
#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

namespace joulecut {

struct Image {
  int width = 0, height = 0, channels = 0;  // channels: 1 (gray) or 3 (RGB)
  std::vector<std::uint8_t> pixels;         // height x width x channels
};

// Decodes a PNG or JPEG (recognized by its first bytes) to gray or RGB, 8 bits per channel, the
// way Pillow's Image.open(...).convert("RGB" or "L") does: alpha dropped (not composited), gray
// replicated to RGB, RGB to gray as L = (19595 R + 38470 G + 7471 B + 2^15) >> 16.
// `channels` is 1 or 3. Throws UserError naming `origin` for a corrupt, truncated or unknown image.
Image decode_image(const std::uint8_t* bytes, std::size_t size, const std::string& origin, int channels);
Image read_image(const std::string& path, int channels);

// Pillow's Image.resize((width, height), BILINEAR) with its default antialiasing.
Image resize_bilinear(const Image& image, int width, int height);

struct ImagePreprocess {
  int resize = 0;  // the short side's length after resizing (torchvision Resize(int)); 0: none
  int crop = 0;    // center crop size (torchvision CenterCrop); 0: none
  int channels = 3;
};

// Resize then center crop, as torchvision's Resize(resize) and CenterCrop(crop) on a PIL image.
// Throws UserError naming `origin` when the image is smaller than the crop.
Image preprocess_image(const Image& image, const ImagePreprocess& options, const std::string& origin);

}  // namespace joulecut
