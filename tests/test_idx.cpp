#include <catch2/catch.hpp>
#include <zlib.h>

#include <cstdint>
#include <fstream>
#include <vector>

#include "joulecut/error.h"
#include "joulecut/idx.h"
#include "temp_dir.h"

using joulecut::UserError;
using Catch::Matchers::Contains;

namespace {

std::vector<std::uint8_t> idx_bytes(std::vector<std::uint32_t> dims, std::uint8_t fill = 7, int extra = 0) {
  std::vector<std::uint8_t> out = {0, 0, 0x08, std::uint8_t(dims.size())};
  std::uint64_t n = 1;
  for (auto d : dims) {
    n *= d;
    for (int s = 24; s >= 0; s -= 8) out.push_back(std::uint8_t(d >> s));
  }
  for (std::uint64_t i = 0; i < n + std::uint64_t(extra > 0 ? extra : 0); ++i) out.push_back(std::uint8_t(fill + i));
  if (extra < 0) out.resize(out.size() + extra);
  return out;
}

void write_plain(const std::string& path, const std::vector<std::uint8_t>& bytes) {
  std::ofstream(path, std::ios::binary).write(reinterpret_cast<const char*>(bytes.data()), bytes.size());
}

void write_gz(const std::string& path, const std::vector<std::uint8_t>& bytes) {
  gzFile f = gzopen(path.c_str(), "wb");
  gzwrite(f, bytes.data(), unsigned(bytes.size()));
  gzclose(f);
}

}  // namespace

TEST_CASE("idx images and labels read from gzip and plain files", "[idx]") {
  TempDir dir;
  write_gz(dir.file("img.gz"), idx_bytes({3, 2, 4}));
  write_plain(dir.file("lab"), idx_bytes({3}, 0));
  const auto images = joulecut::read_idx_images(dir.file("img.gz"));
  const auto labels = joulecut::read_idx_labels(dir.file("lab"));
  CHECK(images.count == 3);
  CHECK(images.rows == 2);
  CHECK(images.cols == 4);
  REQUIRE(images.pixels.size() == 24);
  CHECK(images.pixels[0] == 7);
  CHECK(images.pixels[23] == 7 + 23);
  CHECK(labels.labels == std::vector<std::uint8_t>{0, 1, 2});
  CHECK_NOTHROW(joulecut::check_idx_pair(images, labels, 10));
}

TEST_CASE("idx reader rejects corrupt files with the file name", "[idx]") {
  TempDir dir;
  SECTION("missing file") {
    CHECK_THROWS_WITH(joulecut::read_idx_images(dir.file("nope.gz")), Contains("nope.gz") && Contains("cannot open"));
  }
  SECTION("bad magic") {
    auto bytes = idx_bytes({2, 2, 2});
    bytes[0] = 0x1f;
    write_plain(dir.file("bad"), bytes);
    CHECK_THROWS_WITH(joulecut::read_idx_images(dir.file("bad")), Contains("bad magic"));
  }
  SECTION("labels file given as images") {
    write_plain(dir.file("lab"), idx_bytes({5}));
    CHECK_THROWS_WITH(joulecut::read_idx_images(dir.file("lab")), Contains("1 dimensions, expected 3"));
  }
  SECTION("unsupported element type") {
    auto bytes = idx_bytes({2});
    bytes[2] = 0x0D;
    write_plain(dir.file("f"), bytes);
    CHECK_THROWS_WITH(joulecut::read_idx_labels(dir.file("f")), Contains("not supported"));
  }
  SECTION("data shorter than the header says") {
    write_plain(dir.file("short"), idx_bytes({4, 3, 3}, 0, -5));
    CHECK_THROWS_WITH(joulecut::read_idx_images(dir.file("short")), Contains("truncated"));
  }
  SECTION("trailing bytes") {
    write_plain(dir.file("long"), idx_bytes({4}, 0, 3));
    CHECK_THROWS_WITH(joulecut::read_idx_labels(dir.file("long")), Contains("3 unexpected trailing bytes"));
  }
  SECTION("truncated gzip stream") {
    write_gz(dir.file("t.gz"), idx_bytes({50, 28, 28}));
    std::ifstream in(dir.file("t.gz"), std::ios::binary);
    std::vector<char> all((std::istreambuf_iterator<char>(in)), {});
    std::ofstream(dir.file("cut.gz"), std::ios::binary).write(all.data(), std::streamsize(all.size() / 2));
    CHECK_THROWS_AS(joulecut::read_idx_images(dir.file("cut.gz")), UserError);
    CHECK_THROWS_WITH(joulecut::read_idx_images(dir.file("cut.gz")), Contains("cut.gz"));
  }
  SECTION("empty file") {
    write_plain(dir.file("empty"), {});
    CHECK_THROWS_WITH(joulecut::read_idx_labels(dir.file("empty")), Contains("not an IDX file"));
  }
}

TEST_CASE("idx pair must agree on count and classes", "[idx]") {
  TempDir dir;
  write_plain(dir.file("img"), idx_bytes({3, 2, 2}));
  write_plain(dir.file("lab4"), idx_bytes({4}, 0));
  write_plain(dir.file("lab3"), std::vector<std::uint8_t>{0, 0, 8, 1, 0, 0, 0, 3, 1, 2, 12});
  const auto images = joulecut::read_idx_images(dir.file("img"));
  CHECK_THROWS_WITH(joulecut::check_idx_pair(images, joulecut::read_idx_labels(dir.file("lab4")), 10),
                    Contains("4 labels") && Contains("3 images"));
  CHECK_THROWS_WITH(joulecut::check_idx_pair(images, joulecut::read_idx_labels(dir.file("lab3")), 10),
                    Contains("label 12 at index 2"));
}
