#pragma once
// joulecut's reference architectures, built directly as TorchScript modules in C++ (no
// Python), and their deterministic training on Fashion-MNIST.
#include <torch/script.h>

#include <cstdint>
#include <string>
#include <vector>

#include "joulecut/data.h"
#include "joulecut/model.h"

namespace joulecut {

// "mlp" (LeNet-300-100), "lenet5", "resnet8" (residual CNN with BatchNorm and skip
// connections), "mobilenet" (depthwise-separable CNN).
const std::vector<std::string>& reference_architectures();
std::string describe_architecture(const std::string& arch);

// Builds an untrained model with weights initialised from `seed`, for 1x28x28 inputs and
// 10 classes. Throws UserError for an unknown name.
torch::jit::Module build_reference_model(const std::string& arch, std::uint64_t seed);

struct TrainOptions {
  std::string arch;
  int epochs = 0;            // 0: the architecture's default
  std::int64_t batch = 64;
  double learning_rate = 0;  // 0: the architecture's default; cosine-decayed to 0
  double momentum = 0.9;     // SGD, Nesterov
  std::string optimizer;     // sgd | adam; "": the architecture's default
  double weight_decay = 0;   // 0: the architecture's default
  std::uint64_t seed = 1;
  std::int64_t train_limit = 0;  // use only the first N training images (0: all)
  bool progress = true;
};

// Fills zero fields with the architecture's defaults (the settings of the committed models).
TrainOptions with_defaults(TrainOptions options);

struct TrainResult {
  torch::jit::Module module;  // eval mode
  ModelMetadata metadata;     // dataset spec and provenance (options, seed, threads, accuracy)
  double test_accuracy = 0;
  std::vector<double> epoch_seconds;
};

// Trains deterministically for a given seed and thread count (set threads first, see
// configure_threads). `command` is recorded in the provenance so the file can be regenerated.
TrainResult train_reference_model(const TrainOptions& options, const DataSource& data, const std::string& command);

}  // namespace joulecut
