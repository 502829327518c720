// The .npy format (NumPy's NEP 1): magic "\x93NUMPY", version, a little-endian header length,
// then a Python dict literal {'descr': '<f4', 'fortran_order': False, 'shape': (N, ...), }
// padded with spaces, then the raw elements.
#include "joulecut/npy.h"

#include <zip.h>

#include <cstring>
#include <fstream>
#include <iterator>
#include <limits>
#include <memory>

#include "joulecut/error.h"

namespace joulecut {
namespace {

struct Dtype {
  const char* descr;
  const char* name;
  std::size_t size;
};
constexpr Dtype kDtypes[] = {{"<f4", "float32", 4}, {"<f8", "float64", 8}, {"<f2", "float16", 2}, {"<i8", "int64", 8},
                             {"<i4", "int32", 4},   {"<i2", "int16", 2},   {"|i1", "int8", 1},    {"|u1", "uint8", 1},
                             {"|b1", "bool", 1}};

// The value of `key` in the header dict: the text after "'key':" up to the matching end.
std::string header_value(const std::string& header, const std::string& key, const std::string& origin) {
  const std::string quoted = "'" + key + "'";
  const auto at = header.find(quoted);
  if (at == std::string::npos) throw UserError(origin + ": not a .npy file (its header has no " + quoted + ")");
  auto colon = header.find(':', at + quoted.size());
  if (colon == std::string::npos) throw UserError(origin + ": not a .npy file (malformed header)");
  std::size_t start = header.find_first_not_of(' ', colon + 1);
  if (start == std::string::npos) throw UserError(origin + ": not a .npy file (malformed header)");
  std::size_t end = start;
  if (header[start] == '\'') {
    end = header.find('\'', start + 1);
    if (end == std::string::npos) throw UserError(origin + ": not a .npy file (unterminated string in its header)");
    return header.substr(start + 1, end - start - 1);
  }
  if (header[start] == '(') {
    end = header.find(')', start);
    if (end == std::string::npos) throw UserError(origin + ": not a .npy file (unterminated shape in its header)");
    return header.substr(start + 1, end - start - 1);
  }
  end = header.find_first_of(",}", start);
  if (end == std::string::npos) throw UserError(origin + ": not a .npy file (malformed header)");
  return header.substr(start, end - start);
}

std::vector<std::int64_t> parse_shape(const std::string& text, const std::string& origin) {
  std::vector<std::int64_t> shape;
  std::size_t i = 0;
  while (i < text.size()) {
    while (i < text.size() && (text[i] == ' ' || text[i] == ',')) ++i;
    if (i == text.size()) break;
    std::int64_t v = 0;
    std::size_t digits = 0;
    while (i < text.size() && text[i] >= '0' && text[i] <= '9') {
      if (v > (std::numeric_limits<std::int64_t>::max() - 9) / 10)
        throw UserError(origin + ": .npy shape dimension too large");
      v = v * 10 + (text[i++] - '0');
      ++digits;
    }
    if (digits == 0) throw UserError(origin + ": .npy shape '(" + text + ")' is not a tuple of sizes");
    shape.push_back(v);
  }
  return shape;
}

}  // namespace

std::size_t NpyArray::element_size() const {
  for (const auto& d : kDtypes)
    if (dtype == d.name) return d.size;
  return 0;
}

std::int64_t NpyArray::count() const {
  std::int64_t n = 1;
  for (auto d : shape) n *= d;
  return n;
}

NpyArray parse_npy(const unsigned char* bytes, std::size_t size, const std::string& origin) {
  static const unsigned char magic[] = {0x93, 'N', 'U', 'M', 'P', 'Y'};
  if (size < 10 || std::memcmp(bytes, magic, sizeof magic) != 0)
    throw UserError(origin + ": not a .npy file (no \\x93NUMPY magic)");
  const int major = bytes[6];
  std::size_t header_length = 0, offset = 0;
  if (major == 1) {
    header_length = std::size_t(bytes[8]) | std::size_t(bytes[9]) << 8;
    offset = 10;
  } else if (major == 2 || major == 3) {
    if (size < 12) throw UserError(origin + ": truncated .npy file (header)");
    header_length = std::size_t(bytes[8]) | std::size_t(bytes[9]) << 8 | std::size_t(bytes[10]) << 16 |
                    std::size_t(bytes[11]) << 24;
    offset = 12;
  } else {
    throw UserError(origin + ": .npy format version " + std::to_string(major) + " is not supported (1, 2 or 3)");
  }
  if (header_length > size - offset) throw UserError(origin + ": truncated .npy file (header)");
  const std::string header(reinterpret_cast<const char*>(bytes + offset), header_length);
  NpyArray array;
  const std::string descr = header_value(header, "descr", origin);
  for (const auto& d : kDtypes)
    if (descr == d.descr || (d.size == 1 && descr.size() == 3 && descr.substr(1) == std::string(d.descr).substr(1)))
      array.dtype = d.name;
  if (array.dtype.empty())
    throw UserError(origin + ": .npy dtype '" + descr + "' is not supported (little-endian float16/32/64, int8/16/32/64, "
                    "uint8 or bool)");
  if (header_value(header, "fortran_order", origin) != "False")
    throw UserError(origin + ": .npy array in Fortran order; save it C-contiguous (numpy.ascontiguousarray)");
  array.shape = parse_shape(header_value(header, "shape", origin), origin);
  std::int64_t count = 1;
  for (auto d : array.shape) {
    if (d != 0 && count > std::numeric_limits<std::int64_t>::max() / 16 / d)
      throw UserError(origin + ": .npy shape too large");
    count *= d;
  }
  const std::size_t needed = std::size_t(count) * array.element_size();
  const std::size_t available = size - offset - header_length;
  if (available < needed)
    throw UserError(origin + ": truncated .npy file (" + std::to_string(available) + " data bytes, the shape needs " +
                    std::to_string(needed) + ")");
  const unsigned char* data = bytes + offset + header_length;
  array.data.assign(data, data + needed);
  return array;
}

NpyArray read_npy(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) throw UserError(path + ": cannot open");
  const std::vector<unsigned char> bytes((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  return parse_npy(bytes.data(), bytes.size(), path);
}

std::map<std::string, NpyArray> read_npz(const std::string& path) {
  int error = 0;
  std::unique_ptr<zip_t, decltype(&zip_discard)> archive(zip_open(path.c_str(), ZIP_RDONLY, &error), &zip_discard);
  if (!archive) {
    zip_error_t e;
    zip_error_init_with_code(&e, error);
    const std::string why = zip_error_strerror(&e);
    zip_error_fini(&e);
    throw UserError(path + ": not a readable .npz (zip) archive (" + why + ")");
  }
  std::map<std::string, NpyArray> arrays;
  const zip_int64_t members = zip_get_num_entries(archive.get(), 0);
  for (zip_int64_t i = 0; i < members; ++i) {
    zip_stat_t stat;
    if (zip_stat_index(archive.get(), zip_uint64_t(i), 0, &stat) != 0 || !(stat.valid & ZIP_STAT_NAME) ||
        !(stat.valid & ZIP_STAT_SIZE))
      throw UserError(path + ": .npz member " + std::to_string(i) + " is unreadable");
    std::string name = stat.name;
    if (name.size() < 4 || name.compare(name.size() - 4, 4, ".npy") != 0)
      throw UserError(path + ": .npz member '" + name + "' is not a .npy array");
    if (stat.size > (zip_uint64_t(1) << 40)) throw UserError(path + ": .npz member '" + name + "' is too large");
    std::unique_ptr<zip_file_t, decltype(&zip_fclose)> file(zip_fopen_index(archive.get(), zip_uint64_t(i), 0), &zip_fclose);
    if (!file) throw UserError(path + ": .npz member '" + name + "': " + zip_strerror(archive.get()));
    std::vector<unsigned char> bytes(stat.size);
    const zip_int64_t got = bytes.empty() ? 0 : zip_fread(file.get(), bytes.data(), bytes.size());
    if (got < 0 || zip_uint64_t(got) != stat.size)
      throw UserError(path + ": .npz member '" + name + "' is truncated or corrupt (" + zip_file_strerror(file.get()) + ")");
    name.resize(name.size() - 4);
    arrays[name] = parse_npy(bytes.data(), bytes.size(), path + ":" + name + ".npy");
  }
  if (arrays.empty()) throw UserError(path + ": .npz archive holds no arrays");
  return arrays;
}

namespace {
bool starts_with_bytes(const std::string& path, const char* prefix, std::size_t n) {
  std::ifstream in(path, std::ios::binary);
  std::string head(n, '\0');
  return in.read(&head[0], std::streamsize(n)) && std::memcmp(head.data(), prefix, n) == 0;
}
}  // namespace

bool looks_like_npy(const std::string& path) { return starts_with_bytes(path, "\x93NUMPY", 6); }
bool looks_like_zip(const std::string& path) { return starts_with_bytes(path, "PK\x03\x04", 4); }

}  // namespace joulecut
