#include "joulecut/text.h"

#include <cstdarg>
#include <cstdio>

namespace joulecut {

std::string human_count(double v) {
  if (v >= 1e9) return format("%.2fG", v / 1e9);
  if (v >= 1e6) return format("%.2fM", v / 1e6);
  if (v >= 1e3) return format("%.1fk", v / 1e3);
  return format("%.0f", v);
}

std::string human_bytes(double v) {
  if (v >= 1 << 20) return format("%.2f MiB", v / (1 << 20));
  if (v >= 1 << 10) return format("%.1f KiB", v / (1 << 10));
  return format("%.0f B", v);
}

std::string short_number(double v) { return format("%g", v); }

std::string format(const char* pattern, ...) {
  va_list args;
  va_start(args, pattern);
  va_list again;
  va_copy(again, args);
  const int length = std::vsnprintf(nullptr, 0, pattern, args);
  va_end(args);
  std::string out(length > 0 ? std::size_t(length) : 0, '\0');
  if (length > 0) std::vsnprintf(out.data(), out.size() + 1, pattern, again);
  va_end(again);
  return out;
}

std::string join(const std::vector<std::string>& parts, const std::string& separator) {
  std::string out;
  for (std::size_t i = 0; i < parts.size(); ++i) out += (i ? separator : "") + parts[i];
  return out;
}

// The length of the valid UTF-8 sequence (2 to 4 bytes) that starts at text[i], or 0.
static std::size_t utf8_sequence(const std::string& text, std::size_t i) {
  const auto byte = [&](std::size_t k) { return static_cast<unsigned char>(text[k]); };
  const unsigned char lead = byte(i);
  const std::size_t length = lead >= 0xF0 && lead <= 0xF4 ? 4 : lead >= 0xE0 ? 3 : lead >= 0xC2 && lead < 0xE0 ? 2 : 0;
  if (length == 0 || i + length > text.size()) return 0;
  for (std::size_t k = 1; k < length; ++k)
    if ((byte(i + k) & 0xC0) != 0x80) return 0;
  return length;
}

std::string printable(const std::string& text) {
  std::string out;
  for (std::size_t i = 0; i < text.size();) {
    const unsigned char c = static_cast<unsigned char>(text[i]);
    if (c >= 0x20 && c < 0x7F) {
      out += text[i++];
    } else if (const std::size_t n = c >= 0x80 ? utf8_sequence(text, i) : 0) {
      out.append(text, i, n);
      i += n;
    } else {
      out += format("\\x%02X", c);
      ++i;
    }
  }
  return out;
}

}  // namespace joulecut
