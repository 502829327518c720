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

}  // namespace joulecut
