#pragma once
// The one place where LibTorch versions differ (Debian's 1.13 CPU build here, 2.x with
// CUDA on GPU machines). Everything else in joulecut calls these instead of #if-ing.
#include <torch/script.h>
#include <torch/cuda.h>
#include <torch/version.h>

#include <string>

namespace joulecut::compat {

inline std::string torch_version() { return TORCH_VERSION; }

inline constexpr bool kTorch2 = TORCH_VERSION_MAJOR >= 2;

// Unboxed-value exception text without the C++ backtrace that c10 appends.
inline std::string what_without_backtrace(const c10::Error& e) { return e.what_without_backtrace(); }

inline std::int64_t cuda_device_count() { return std::int64_t(torch::cuda::device_count()); }

// Waits for queued device work, so time and energy windows close on finished work.
inline void synchronize(const c10::Device& device) {
  if (device.is_cuda()) torch::cuda::synchronize(device.index());
}

}  // namespace joulecut::compat
