#pragma once
// Internal: text helpers shared by the table reporters (report.cpp, tradeoff.cpp). Torch-free.
#include <cstddef>
#include <ostream>
#include <string>

namespace joulecut::measure::table_text {

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

// A CSV text field, the one quoting of every CSV joulecut writes (RFC 4180): always quoted,
// inner quotes doubled, so commas, quotes and newlines in labels stay inside the field.
inline std::string csv_quote(const std::string& text) {
  std::string out = "\"";
  for (char ch : text) {
    if (ch == '"') out += '"';
    out += ch;
  }
  return out + "\"";
}

}  // namespace joulecut::measure::table_text
