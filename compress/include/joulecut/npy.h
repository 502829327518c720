#pragma once
// NumPy's .npy arrays and .npz archives (a zip of .npy files, stored or deflated, read with
// libzip). Torch-free, so the parser is fuzzed and sanitizer-tested on its own.
#include <cstddef>
#include <cstdint>
#include <map>
#include <string>
#include <vector>

namespace joulecut {

struct NpyArray {
  std::string dtype;                // float32 float64 float16 int64 int32 int16 int8 uint8 bool
  std::vector<std::int64_t> shape;  // C order
  std::vector<unsigned char> data;  // little-endian elements, shape's product of them
  std::size_t element_size() const;
  std::int64_t count() const;       // elements
};

// Parses a whole .npy file in memory. Throws UserError naming `origin` and the problem: not a
// .npy file, a header that is not NumPy's dict, an unsupported dtype (big-endian, structured,
// object, complex), Fortran order, or fewer data bytes than the shape needs.
NpyArray parse_npy(const unsigned char* bytes, std::size_t size, const std::string& origin);
NpyArray read_npy(const std::string& path);

// The arrays of an .npz, by name (the member name without ".npy"). Throws UserError naming the
// file (and member) for anything unreadable.
std::map<std::string, NpyArray> read_npz(const std::string& path);

// True when the file starts with NumPy's magic ("\x93NUMPY") / a zip header ("PK\3\4").
bool looks_like_npy(const std::string& path);
bool looks_like_zip(const std::string& path);

}  // namespace joulecut
