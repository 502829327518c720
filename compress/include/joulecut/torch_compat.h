#pragma once
// The one place where LibTorch versions differ (Debian's 1.13 CPU build here, 2.x with
// CUDA on GPU machines). Everything else in joulecut calls these instead of #if-ing.
#include <torch/script.h>
#include <torch/cuda.h>
#include <torch/version.h>

#include <cctype>
#include <string>

namespace joulecut::compat {

inline std::string torch_version() { return TORCH_VERSION; }

inline constexpr bool kTorch2 = TORCH_VERSION_MAJOR >= 2;

// Unboxed-value exception text without the C++ backtrace that c10 appends.
inline std::string what_without_backtrace(const c10::Error& e) { return e.what_without_backtrace(); }

// When a TorchScript file fails to load because it needs a newer LibTorch (an op such as
// aten::scaled_dot_product_attention, in every PyTorch 2.x transformer, or a newer file format),
// what it lacks and the fix; "" for any other failure.
inline std::string newer_file_hint(const std::string& why) {
  const std::string fix = "; build against LibTorch 2.x: scripts/setup --torch pypi";
  for (const std::string marker : {"Unknown builtin op: ", "Unknown type name '"}) {
    const auto at = why.find(marker);
    if (at == std::string::npos) continue;
    std::string what;  // "aten::scaled_dot_product_attention": letters, digits, '_' and ':'
    for (std::size_t i = at + marker.size(); i < why.size(); ++i) {
      const char c = why[i];
      if (!(std::isalnum(static_cast<unsigned char>(c)) || c == '_' || c == ':' || c == '.')) break;
      what += c;
    }
    while (!what.empty() && (what.back() == '.' || what.back() == ':')) what.pop_back();
    return "uses " + what + ", which LibTorch " + torch_version() + " does not have (a file from a newer PyTorch)" + fix;
  }
  if (why.find("file version") != std::string::npos || why.find("supports file versions") != std::string::npos)
    return "written in a newer TorchScript file format than LibTorch " + torch_version() + " reads" + fix;
  return "";
}

inline std::int64_t cuda_device_count() { return std::int64_t(torch::cuda::device_count()); }

// Waits for queued device work, so time and energy windows close on finished work.
inline void synchronize(const c10::Device& device) {
  if (device.is_cuda()) torch::cuda::synchronize(device.index());
}

}  // namespace joulecut::compat
