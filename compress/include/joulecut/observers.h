#pragma once
// Calibration observers for int8 quantization: they watch activations on calibration data and
// choose the range that maps to 8 bits. Torch-free: they see plain float buffers.
//
// Activations are quantized per tensor, affine, to uint8: q = round(x / scale) + zero_point,
// clamped to [0, 255]. Weights are quantized per output channel, symmetric, to int8 in
// [-127, 127] (zero_point 0).
#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

namespace joulecut {

struct QuantRange {
  float min = 0;  // the clipping range chosen; always contains 0, so 0 is exact
  float max = 0;
  float scale = 1;
  std::int32_t zero_point = 0;
};

// uint8 affine parameters for a clipping range [min, max] (widened to contain 0).
QuantRange affine_uint8(float min, float max);

class Observer {
 public:
  virtual ~Observer() = default;
  // Call once per calibration batch. Non-finite values are a user error (UserError).
  virtual void observe(const float* data, std::size_t count) = 0;
  // Precondition: observe() was called with at least one value.
  virtual QuantRange range() const = 0;
  virtual std::string name() const = 0;
};

// "minmax", "percentile" (keeps `percentile` % of the values inside: clips the tails at
// (100 - p) and p), "entropy" (TensorRT-style: the clip that minimises the KL divergence between
// the histogram and its 8-bit quantization) or "mse" (the clip that minimises the expected
// squared quantization error). Throws UserError for an unknown name or a percentile outside
// (0, 100].
std::unique_ptr<Observer> make_observer(const std::string& name, double percentile = 99.99);

// Per-output-channel symmetric int8 scales for a weight [rows, cols] (row-major): max|w| / 127
// per row (1 for an all-zero row).
std::vector<float> symmetric_int8_scales(const float* weight, std::int64_t rows, std::int64_t cols);

}  // namespace joulecut
