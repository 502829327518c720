// The NumPy (.npy, .npz) and CIFAR parsers on hand-made bytes: what they read, and every way a
// file can be wrong (each a UserError naming the file).
#include <catch2/catch.hpp>

#include <zip.h>

#include <cstring>
#include <fstream>

#include "joulecut/cifar.h"
#include "joulecut/error.h"
#include "joulecut/npy.h"
#include "temp_dir.h"

using namespace joulecut;
using Catch::Matchers::Contains;

namespace {

std::vector<unsigned char> npy_bytes(const std::string& dict, const std::vector<unsigned char>& data, int version = 1) {
  std::string header = dict;
  const std::size_t prefix = version == 1 ? 10 : 12;
  while ((prefix + header.size() + 1) % 64 != 0) header += ' ';
  header += '\n';
  std::vector<unsigned char> out = {0x93, 'N', 'U', 'M', 'P', 'Y', static_cast<unsigned char>(version), 0};
  const std::size_t n = header.size();
  out.push_back(static_cast<unsigned char>(n & 0xff));
  out.push_back(static_cast<unsigned char>(n >> 8));
  if (version != 1) {
    out.push_back(0);
    out.push_back(0);
  }
  out.insert(out.end(), header.begin(), header.end());
  out.insert(out.end(), data.begin(), data.end());
  return out;
}

std::vector<unsigned char> floats(std::initializer_list<float> values) {
  std::vector<unsigned char> out(values.size() * 4);
  std::memcpy(out.data(), std::data(values), out.size());
  return out;
}

NpyArray parse(const std::vector<unsigned char>& bytes) { return parse_npy(bytes.data(), bytes.size(), "x.npy"); }

}  // namespace

TEST_CASE("npy: arrays of each supported dtype, versions 1 and 2", "[npy]") {
  const auto a = parse(npy_bytes("{'descr': '<f4', 'fortran_order': False, 'shape': (2, 3), }", floats({1, 2, 3, 4, 5, 6})));
  CHECK(a.dtype == "float32");
  CHECK(a.shape == std::vector<std::int64_t>{2, 3});
  REQUIRE(a.data.size() == 24);
  float last;
  std::memcpy(&last, a.data.data() + 20, 4);
  CHECK(last == 6.0f);
  const auto v = parse(npy_bytes("{'descr': '<i8', 'fortran_order': False, 'shape': (3,), }", std::vector<unsigned char>(24, 0), 2));
  CHECK(v.dtype == "int64");
  CHECK(v.count() == 3);
  CHECK(parse(npy_bytes("{'descr': '|b1', 'fortran_order': False, 'shape': (4,), }", {1, 0, 1, 1})).dtype == "bool");
  CHECK(parse(npy_bytes("{'descr': '|u1', 'fortran_order': False, 'shape': (2, 2), }", {1, 2, 3, 4})).dtype == "uint8");
  CHECK(parse(npy_bytes("{'descr': '<f4', 'fortran_order': False, 'shape': (0, 5), }", {})).count() == 0);
}

TEST_CASE("npy: bad files are refused, naming the file and the problem", "[npy]") {
  const std::string ok = "{'descr': '<f4', 'fortran_order': False, 'shape': (2,), }";
  auto not_npy = npy_bytes(ok, floats({1, 2}));
  not_npy[1] = 'X';
  CHECK_THROWS_WITH(parse(not_npy), Contains("x.npy: not a .npy file"));
  CHECK_THROWS_WITH(parse(npy_bytes(ok, floats({1}))), Contains("x.npy: truncated .npy file (4 data bytes, the shape needs 8)"));
  CHECK_THROWS_WITH(parse(npy_bytes("{'descr': '>f4', 'fortran_order': False, 'shape': (2,), }", floats({1, 2}))),
                    Contains("dtype '>f4' is not supported"));
  CHECK_THROWS_WITH(parse(npy_bytes("{'descr': '|O', 'fortran_order': False, 'shape': (2,), }", floats({1, 2}))),
                    Contains("dtype '|O' is not supported"));
  CHECK_THROWS_WITH(parse(npy_bytes("{'descr': '<f4', 'fortran_order': True, 'shape': (2,), }", floats({1, 2}))),
                    Contains("Fortran order"));
  CHECK_THROWS_WITH(parse(npy_bytes("{'descr': '<f4', 'fortran_order': False, 'shape': (a,), }", floats({1, 2}))),
                    Contains("is not a tuple of sizes"));
  CHECK_THROWS_WITH(parse(npy_bytes("{'descr': '<f4', 'fortran_order': False}", floats({1, 2}))), Contains("no 'shape'"));
  auto long_header = npy_bytes(ok, floats({1, 2}));
  long_header[9] = 0x7f;  // the header claims more bytes than the file has
  CHECK_THROWS_WITH(parse(long_header), Contains("truncated .npy file (header)"));
  auto version = npy_bytes(ok, floats({1, 2}));
  version[6] = 9;
  CHECK_THROWS_WITH(parse(version), Contains("format version 9 is not supported"));
  CHECK_THROWS_WITH(parse_npy(nullptr, 0, "empty.npy"), Contains("empty.npy: not a .npy file"));
  CHECK_THROWS_WITH(parse(npy_bytes("{'descr': '<f4', 'fortran_order': False, 'shape': (99999999999, 99999999999), }", {})),
                    Contains("shape too large"));
}

TEST_CASE("npz: named arrays from a zip, and broken archives", "[npy]") {
  TempDir dir;
  const std::string path = dir.file("data.npz");
  const auto x = npy_bytes("{'descr': '<f4', 'fortran_order': False, 'shape': (2,), }", floats({1, 2}));
  const auto y = npy_bytes("{'descr': '<i8', 'fortran_order': False, 'shape': (2,), }", std::vector<unsigned char>(16, 0));
  {
    int error = 0;
    zip_t* z = zip_open(path.c_str(), ZIP_CREATE | ZIP_TRUNCATE, &error);
    REQUIRE(z);
    zip_file_add(z, "input_ids.npy", zip_source_buffer(z, x.data(), x.size(), 0), 0);
    zip_file_add(z, "labels.npy", zip_source_buffer(z, y.data(), y.size(), 0), 0);
    REQUIRE(zip_close(z) == 0);
  }
  CHECK(looks_like_zip(path));
  CHECK_FALSE(looks_like_npy(path));
  const auto arrays = read_npz(path);
  REQUIRE(arrays.size() == 2);
  CHECK(arrays.at("input_ids").dtype == "float32");
  CHECK(arrays.at("labels").dtype == "int64");
  // Cut in half: libzip finds no central directory.
  std::ifstream in(path, std::ios::binary);
  std::string whole((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  const std::string cut = dir.file("cut.npz");
  std::ofstream(cut, std::ios::binary) << whole.substr(0, whole.size() / 2);
  CHECK_THROWS_WITH(read_npz(cut), Contains("cut.npz: not a readable .npz (zip) archive"));
  CHECK_THROWS_WITH(read_npz(dir.file("missing.npz")), Contains("missing.npz: not a readable .npz"));
}

TEST_CASE("cifar: CIFAR-10 and CIFAR-100 records, and what is not one", "[cifar]") {
  std::vector<std::uint8_t> ten(2 * 3073, 7);
  ten[0] = 3;
  ten[3073] = 9;
  const CifarBatch b = parse_cifar(ten.data(), ten.size(), "b.bin");
  CHECK(b.classes == 10);
  CHECK(b.count == 2);
  CHECK(b.labels == std::vector<std::uint8_t>{3, 9});
  CHECK(b.pixels.size() == 2 * 3072);
  std::vector<std::uint8_t> hundred(3 * 3074, 1);
  for (int i = 0; i < 3; ++i) {
    hundred[std::size_t(i) * 3074] = 19;       // coarse
    hundred[std::size_t(i) * 3074 + 1] = 42 + i;  // fine: the label kept
  }
  const CifarBatch c = parse_cifar(hundred.data(), hundred.size(), "train.bin");
  CHECK(c.classes == 100);
  CHECK(c.labels == std::vector<std::uint8_t>{42, 43, 44});
  CHECK_THROWS_WITH(parse_cifar(ten.data(), ten.size() - 1, "b.bin"), Contains("b.bin: not a CIFAR batch file (6145 bytes"));
  ten[3073] = 200;
  CHECK_THROWS_WITH(parse_cifar(ten.data(), ten.size(), "b.bin"), Contains("label byte is out of range"));
}
