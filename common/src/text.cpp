#include "joulecut/text.h"

#include <cstdio>

namespace joulecut {

std::string human_count(double v) {
  char buffer[32];
  if (v >= 1e9) std::snprintf(buffer, sizeof buffer, "%.2fG", v / 1e9);
  else if (v >= 1e6) std::snprintf(buffer, sizeof buffer, "%.2fM", v / 1e6);
  else if (v >= 1e3) std::snprintf(buffer, sizeof buffer, "%.1fk", v / 1e3);
  else std::snprintf(buffer, sizeof buffer, "%.0f", v);
  return buffer;
}

std::string human_bytes(double v) {
  char buffer[32];
  if (v >= 1 << 20) std::snprintf(buffer, sizeof buffer, "%.2f MiB", v / (1 << 20));
  else if (v >= 1 << 10) std::snprintf(buffer, sizeof buffer, "%.1f KiB", v / (1 << 10));
  else std::snprintf(buffer, sizeof buffer, "%.0f B", v);
  return buffer;
}

}  // namespace joulecut
