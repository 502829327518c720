#pragma once
// Calibration for int8: runs calibration images through a model and records, with an
// observer per tensor, the range of every Conv2d/Linear layer's input and output.
#include <torch/script.h>

#include <cstdint>
#include <string>
#include <vector>

#include "joulecut/data.h"
#include "joulecut/observers.h"

namespace joulecut {

struct CalibrationOptions {
  std::string observer = "minmax";  // minmax | percentile | entropy | mse (see observers.h)
  double percentile = 99.99;        // for observer=percentile, in (0, 100]
  std::int64_t samples = 1000;      // first N images of the calibration set (0: all)
  std::int64_t batch = 100;
  bool progress = true;
};

struct LayerCalibration {
  std::string layer;  // parameter path of the weight ("features.0"), or "op#k"
  std::string op;     // "aten::conv2d", "aten::linear"...
  QuantRange input, output;
};

struct Calibration {
  std::string observer;
  std::int64_t samples = 0;
  std::vector<LayerCalibration> layers;  // in execution order
};

// Precondition: `data` matches the model's input. The module is not changed (a clone runs, in
// eval mode, without gradients). Throws UserError for a bad observer or percentile, an empty
// calibration set, or a model without Conv2d/Linear layers.
Calibration calibrate(const torch::jit::Module& module, const TensorDataset& data, const CalibrationOptions& options);

}  // namespace joulecut
