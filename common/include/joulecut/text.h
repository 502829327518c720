#pragma once
// Text as joulecut writes it: numbers as people read them in tables and summaries, printf-style
// formatting into a string of any length, and joins. Torch-free.
#include <string>
#include <vector>

namespace joulecut {

// 950, 77.8k, 1.25M, 3.10G
std::string human_count(double v);
// 512 B, 339.0 KiB, 1.25 MiB
std::string human_bytes(double v);
// "%g", six significant digits as a std::ostream writes a double: 1, 0.5, 1e-05, 1.23457e+06.
std::string short_number(double v);

// printf into a std::string of whatever length the text needs (no fixed-size buffer to cut it).
std::string format(const char* pattern, ...) __attribute__((format(printf, 1, 2)));

// "a, b, c" for join({"a", "b", "c"}, ", "); "" for none.
std::string join(const std::vector<std::string>& parts, const std::string& separator);

// Text that came from a file, safe to print on one line: bytes outside printable ASCII (control
// characters, newlines, invalid UTF-8 from a corrupt header) as \xNN; valid UTF-8 kept as it is.
std::string printable(const std::string& text);

}  // namespace joulecut
