#pragma once
// The one training loop over TorchScript modules: reference models, fine-tuning after
// pruning (with masks enforced after every step). SGD with Nesterov momentum, cosine
// learning rate per step, shuffling from a seed; deterministic for a seed and thread count.
#include <torch/script.h>

#include <cstdint>
#include <functional>
#include <vector>

#include "joulecut/data.h"

namespace joulecut {

struct LoopOptions {
  int epochs = 1;
  std::int64_t batch = 64;
  double learning_rate = 0.01;
  double momentum = 0.9;
  double weight_decay = 0;
  std::uint64_t seed = 1;
  bool progress = true;
};

struct LoopResult {
  double test_accuracy = 0;  // after the last epoch; 0 without a test set
  std::vector<double> epoch_seconds;
};

// Trains `module` in place. `after_step`, when given, runs after every optimizer step (e.g.
// to re-apply pruning masks). Precondition: the module has trainable parameters.
LoopResult train_loop(torch::jit::Module& module, const TensorDataset& train, const TensorDataset* test,
                      const LoopOptions& options, const std::function<void()>& after_step = {});

}  // namespace joulecut
