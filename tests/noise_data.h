#pragma once
// A data set of Gaussian noise images with random labels, for tests that need data but not a
// trained model's accuracy (calibration, sensitivity, fine-tuning mechanics).
#include <ATen/ATen.h>

#include "joulecut/data.h"

inline joulecut::TensorDataset noise_dataset(std::int64_t n) {
  joulecut::TensorDataset d;
  d.description = "noise (test)";
  d.images = at::randn({n, 1, 28, 28});
  d.labels = at::randint(0, 10, {n}, at::kLong);
  return d;
}
