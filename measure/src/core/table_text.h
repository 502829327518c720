#pragma once
// Internal: text helpers shared by the table reporters (report.cpp, tradeoff.cpp).
#include <cstddef>
#include <cstdio>
#include <ostream>
#include <string>

namespace joulecut::measure::table_text {

// snprintf of up to three numbers.
inline std::string fmt(const char* format, double a, double b = 0, double c = 0) {
  char buffer[96];
  std::snprintf(buffer, sizeof buffer, format, a, b, c);
  return buffer;
}

// Width on a terminal: UTF-8 code points (for "±", "Δ"), not bytes.
inline std::size_t shown_width(const std::string& text) {
  std::size_t shown = 0;
  for (unsigned char ch : text) shown += (ch & 0xC0) != 0x80;
  return shown;
}

inline void pad(std::ostream& out, const std::string& text, std::size_t width, bool right = false) {
  const std::size_t shown = shown_width(text);
  const std::string fill(width > shown ? width - shown : 0, ' ');
  if (right) out << fill << text;
  else out << text << fill;
}

}  // namespace joulecut::measure::table_text
