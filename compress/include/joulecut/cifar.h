#pragma once
// CIFAR-10 and CIFAR-100 binary batch files (data_batch_1.bin ... test_batch.bin; train.bin,
// test.bin). Records of 1 label byte (CIFAR-10) or 2 (CIFAR-100: coarse, then fine) followed by
// 3072 pixel bytes, 32x32 red, then green, then blue. Torch-free (fuzzed on its own).
#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

namespace joulecut {

struct CifarBatch {
  std::string path;
  int classes = 10;                   // 10, or 100 (fine labels)
  std::int64_t count = 0;
  std::vector<std::uint8_t> labels;   // count (CIFAR-100: the fine label)
  std::vector<std::uint8_t> pixels;   // count x 3 x 32 x 32
};

// Throws UserError naming `origin` when the bytes are not whole records of either format, or a
// label is out of range.
CifarBatch parse_cifar(const std::uint8_t* bytes, std::size_t size, const std::string& origin);
CifarBatch read_cifar(const std::string& path);

// Whether a file's size and its label bytes fit CIFAR-10 or CIFAR-100 records.
bool looks_like_cifar(const std::string& path);

}  // namespace joulecut
