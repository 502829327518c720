#include "joulecut/cifar.h"

#include <fstream>
#include <iterator>

#include "joulecut/error.h"

namespace joulecut {
namespace {

constexpr std::size_t kPixels = 3 * 32 * 32;

// Every record's label bytes within range for `label_bytes` (1: < 10; 2: coarse < 20, fine < 100).
bool labels_fit(const std::uint8_t* bytes, std::size_t size, int label_bytes) {
  const std::size_t record = kPixels + std::size_t(label_bytes);
  if (size == 0 || size % record != 0) return false;
  for (std::size_t at = 0; at < size; at += record) {
    if (label_bytes == 1 && bytes[at] >= 10) return false;
    if (label_bytes == 2 && (bytes[at] >= 20 || bytes[at + 1] >= 100)) return false;
  }
  return true;
}

std::vector<std::uint8_t> read_all(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) throw UserError(path + ": cannot open");
  return {std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>()};
}

}  // namespace

CifarBatch parse_cifar(const std::uint8_t* bytes, std::size_t size, const std::string& origin) {
  int label_bytes = 0;
  if (labels_fit(bytes, size, 1)) label_bytes = 1;
  else if (labels_fit(bytes, size, 2)) label_bytes = 2;
  if (label_bytes == 0) {
    if (size % (kPixels + 1) != 0 && size % (kPixels + 2) != 0)
      throw UserError(origin + ": not a CIFAR batch file (" + std::to_string(size) +
                      " bytes is not a whole number of 3073-byte CIFAR-10 or 3074-byte CIFAR-100 records)");
    throw UserError(origin + ": not a CIFAR batch file (a label byte is out of range for CIFAR-10 and CIFAR-100)");
  }
  const std::size_t record = kPixels + std::size_t(label_bytes);
  CifarBatch batch;
  batch.path = origin;
  batch.classes = label_bytes == 1 ? 10 : 100;
  batch.count = std::int64_t(size / record);
  batch.labels.reserve(std::size_t(batch.count));
  batch.pixels.resize(std::size_t(batch.count) * kPixels);
  for (std::int64_t i = 0; i < batch.count; ++i) {
    const std::uint8_t* r = bytes + std::size_t(i) * record;
    batch.labels.push_back(r[label_bytes - 1]);
    std::copy(r + label_bytes, r + record, batch.pixels.begin() + std::ptrdiff_t(std::size_t(i) * kPixels));
  }
  return batch;
}

CifarBatch read_cifar(const std::string& path) {
  const auto bytes = read_all(path);
  return parse_cifar(bytes.data(), bytes.size(), path);
}

bool looks_like_cifar(const std::string& path) {
  std::ifstream in(path, std::ios::binary | std::ios::ate);
  if (!in) return false;
  const auto size = std::size_t(in.tellg());
  if (size == 0 || (size % (kPixels + 1) != 0 && size % (kPixels + 2) != 0)) return false;
  const auto bytes = read_all(path);
  return labels_fit(bytes.data(), bytes.size(), 1) || labels_fit(bytes.data(), bytes.size(), 2);
}

}  // namespace joulecut
