#pragma once
// Reader for the IDX format of (Fashion-)MNIST, gzip-compressed or not.
//
// Format (all integers big-endian): 2 zero bytes, a type byte (0x08 = unsigned byte),
// a dimension count byte, then one uint32 per dimension, then the data, row-major.
// Images: 3 dimensions (count, rows, cols), magic 0x00000803.
// Labels: 1 dimension (count),              magic 0x00000801.
// Any deviation (magic, dimension count, a size that does not match the data, trailing
// bytes, a truncated gzip stream) throws UserError naming the file.
#include <cstdint>
#include <string>
#include <vector>

namespace joulecut {

struct IdxImages {
  std::string path;
  std::int64_t count = 0;
  std::int64_t rows = 0;
  std::int64_t cols = 0;
  std::vector<std::uint8_t> pixels;  // count * rows * cols, row-major
};

struct IdxLabels {
  std::string path;
  std::vector<std::uint8_t> labels;
};

// Reads the whole file (gzip or plain, detected from its content, not its name).
std::vector<std::uint8_t> read_maybe_gzip(const std::string& path);

IdxImages read_idx_images(const std::string& path);
IdxLabels read_idx_labels(const std::string& path);

// Checks that images and labels describe the same samples and that every label is
// below class_count.
void check_idx_pair(const IdxImages& images, const IdxLabels& labels, int class_count);

}  // namespace joulecut
