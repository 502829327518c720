#pragma once
// A progress bar for long work (training, calibration, sweeps). On a terminal it redraws
// one line; otherwise (logs, CI) it prints a line only at the end of each stage, so logs
// stay readable. Torch-free.
#include <chrono>
#include <cstdint>
#include <string>

namespace joulecut {

class ProgressBar {
 public:
  // `label` names the stage ("epoch 3/15"); `total` is the number of steps in it.
  ProgressBar(std::string label, std::int64_t total, bool enabled = true);
  // Advances to `done` steps and shows `status` (e.g. "loss 0.412 acc 86.1%").
  void update(std::int64_t done, const std::string& status);
  // Ends the stage with a final status line (always printed, even without a terminal).
  void finish(const std::string& status);

 private:
  std::string label_;
  std::int64_t total_;
  bool enabled_;
  bool tty_;
  std::chrono::steady_clock::time_point start_;
  std::chrono::steady_clock::time_point last_draw_;
};

std::string format_duration(double seconds);

}  // namespace joulecut
