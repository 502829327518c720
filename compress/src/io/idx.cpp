#include "joulecut/idx.h"

#include <zlib.h>

#include <cerrno>
#include <cstring>
#include <fstream>
#include <memory>

#include "joulecut/error.h"

namespace joulecut {
namespace {

std::uint32_t read_be32(const std::uint8_t* p) {
  return (std::uint32_t(p[0]) << 24) | (std::uint32_t(p[1]) << 16) | (std::uint32_t(p[2]) << 8) |
         std::uint32_t(p[3]);
}

struct GzCloser {
  void operator()(gzFile_s* f) const { gzclose(f); }
};

// Parses the header; returns the dimensions and checks the payload size exactly.
std::vector<std::uint32_t> parse_header(const std::string& path, const std::vector<std::uint8_t>& bytes,
                                        int expected_dims, const char* what) {
  if (bytes.size() < 4)
    throw UserError(path + ": not an IDX file (only " + std::to_string(bytes.size()) + " bytes)");
  if (bytes[0] != 0 || bytes[1] != 0)
    throw UserError(path + ": not an IDX file (bad magic number; expected 0x0000080" +
                    std::to_string(expected_dims) + " for " + what + ")");
  if (bytes[2] != 0x08)
    throw UserError(path + ": IDX element type 0x" + std::to_string(bytes[2]) +
                    " is not supported (only unsigned bytes, 0x08)");
  if (bytes[3] != expected_dims)
    throw UserError(path + ": IDX file has " + std::to_string(bytes[3]) + " dimensions, expected " +
                    std::to_string(expected_dims) + " for " + what +
                    " (did you swap the images and labels files?)");
  const std::size_t header = 4 + 4 * std::size_t(expected_dims);
  if (bytes.size() < header) throw UserError(path + ": IDX header is truncated");
  std::vector<std::uint32_t> dims;
  std::uint64_t payload = 1;
  for (int i = 0; i < expected_dims; ++i) {
    dims.push_back(read_be32(bytes.data() + 4 + 4 * i));
    payload *= dims.back();
  }
  const std::uint64_t actual = bytes.size() - header;
  if (actual < payload)
    throw UserError(path + ": IDX file is truncated (header promises " + std::to_string(payload) +
                    " bytes of data, file has " + std::to_string(actual) + ")");
  if (actual > payload)
    throw UserError(path + ": IDX file has " + std::to_string(actual - payload) +
                    " unexpected trailing bytes after the data its header describes");
  return dims;
}

}  // namespace

std::vector<std::uint8_t> read_maybe_gzip(const std::string& path) {
  {
    std::ifstream probe(path, std::ios::binary);
    if (!probe) throw UserError(path + ": cannot open (" + std::strerror(errno) + ")");
  }
  // gzread reads plain files transparently, so one path serves both.
  std::unique_ptr<gzFile_s, GzCloser> file(gzopen(path.c_str(), "rb"));
  if (!file) throw UserError(path + ": cannot open (" + std::strerror(errno) + ")");
  std::vector<std::uint8_t> out;
  std::uint8_t buffer[1 << 16];
  for (;;) {
    const int n = gzread(file.get(), buffer, sizeof buffer);
    if (n < 0) {
      int code = 0;
      const char* message = gzerror(file.get(), &code);
      throw UserError(path + ": corrupt gzip data (" + std::string(message ? message : "unknown") + ")");
    }
    if (n == 0) break;
    out.insert(out.end(), buffer, buffer + n);
  }
  // zlib reports a stream cut short only through gzerror after EOF.
  int code = 0;
  gzerror(file.get(), &code);
  if (code != Z_OK && code != Z_STREAM_END)
    throw UserError(path + ": gzip stream is truncated or corrupt");
  return out;
}

IdxImages read_idx_images(const std::string& path) {
  auto bytes = read_maybe_gzip(path);
  const auto dims = parse_header(path, bytes, 3, "images");
  IdxImages images;
  images.path = path;
  images.count = dims[0];
  images.rows = dims[1];
  images.cols = dims[2];
  if (images.count == 0 || images.rows == 0 || images.cols == 0)
    throw UserError(path + ": IDX images file is empty");
  images.pixels.assign(bytes.begin() + 16, bytes.end());
  return images;
}

IdxLabels read_idx_labels(const std::string& path) {
  auto bytes = read_maybe_gzip(path);
  const auto dims = parse_header(path, bytes, 1, "labels");
  IdxLabels labels;
  labels.path = path;
  if (dims[0] == 0) throw UserError(path + ": IDX labels file is empty");
  labels.labels.assign(bytes.begin() + 8, bytes.end());
  return labels;
}

void check_idx_pair(const IdxImages& images, const IdxLabels& labels, int class_count) {
  if (std::int64_t(labels.labels.size()) != images.count)
    throw UserError(labels.path + ": has " + std::to_string(labels.labels.size()) + " labels but " +
                    images.path + " has " + std::to_string(images.count) + " images");
  for (std::size_t i = 0; i < labels.labels.size(); ++i)
    if (labels.labels[i] >= class_count)
      throw UserError(labels.path + ": label " + std::to_string(labels.labels[i]) + " at index " +
                      std::to_string(i) + " is outside the " + std::to_string(class_count) + " classes");
}

}  // namespace joulecut
