#include "joulecut/progress.h"

#include <unistd.h>

#include <cstdio>

#include "joulecut/text.h"

namespace joulecut {

std::string format_duration(double seconds) {
  if (seconds < 0) seconds = 0;
  const auto s = static_cast<long>(seconds + 0.5);
  if (s >= 3600) return format("%ldh%02ldm", s / 3600, (s / 60) % 60);
  if (s >= 60) return format("%ldm%02lds", s / 60, s % 60);
  return format("%.1fs", seconds);
}

ProgressBar::ProgressBar(std::string label, std::int64_t total, bool enabled)
    : label_(std::move(label)),
      total_(total > 0 ? total : 1),
      enabled_(enabled),
      tty_(isatty(STDERR_FILENO) == 1),
      start_(std::chrono::steady_clock::now()),
      last_draw_(start_) {}

void ProgressBar::update(std::int64_t done, const std::string& status) {
  if (!enabled_ || !tty_) return;
  const auto now = std::chrono::steady_clock::now();
  if (done < total_ && now - last_draw_ < std::chrono::milliseconds(100)) return;
  last_draw_ = now;
  const double elapsed = std::chrono::duration<double>(now - start_).count();
  const double fraction = double(done) / double(total_);
  const double left = fraction > 0 ? elapsed * (1 - fraction) / fraction : 0;
  constexpr int width = 30;
  const int filled = int(fraction * width);
  std::string bar(filled, '=');
  if (filled < width) bar += '>' + std::string(width - filled - 1, ' ');
  std::fprintf(stderr, "\r%s [%s] %3d%% %s  %s left   ", label_.c_str(), bar.c_str(), int(fraction * 100),
               status.c_str(), format_duration(left).c_str());
  std::fflush(stderr);
}

void ProgressBar::finish(const std::string& status) {
  if (!enabled_) return;
  const double elapsed = std::chrono::duration<double>(std::chrono::steady_clock::now() - start_).count();
  std::fprintf(stderr, "%s%s %s (%s)%s\n", tty_ ? "\r" : "", label_.c_str(), status.c_str(),
               format_duration(elapsed).c_str(), tty_ ? "                              " : "");
  std::fflush(stderr);
}

}  // namespace joulecut
