#pragma once
// Top-1 accuracy of a classifier on a labelled data set.
#include <torch/script.h>

#include <cstdint>
#include <string>
#include <vector>

#include "joulecut/data.h"
#include "joulecut/measure/stats.h"

namespace joulecut {

struct EvalOptions {
  std::int64_t batch = 256;
};

struct EvalResult {
  measure::ProportionCI accuracy;
  std::vector<std::vector<std::int64_t>> confusion;  // [true class][predicted class]
  double seconds = 0;
};

// A tensor shape as LibTorch prints it, e.g. "[2, 1, 28, 28]", for error messages.
std::string shape_text(at::IntArrayRef sizes);

// Arranges the data's named inputs as forward()'s arguments, then checks that the model accepts
// them and (labelled data) returns one score per class in the output `data.output` names.
// Throws UserError naming `model_path` with the shapes involved.
void check_model_accepts(torch::jit::Module& module, TensorDataset& data, const std::string& model_path);

// Evaluates in eval mode without gradients. The module is switched to eval mode. Throws
// UserError for data without labels.
EvalResult evaluate(torch::jit::Module& module, const TensorDataset& data, const EvalOptions& options = {});

}  // namespace joulecut
