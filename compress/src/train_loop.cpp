#include "joulecut/train_loop.h"

#include <ATen/ATen.h>
#include <torch/optim/sgd.h>

#include <chrono>
#include <cmath>
#include <cstdio>
#include <numeric>
#include <random>

#include "joulecut/error.h"
#include "joulecut/evaluate.h"
#include "joulecut/progress.h"

namespace joulecut {
namespace {

// Fisher-Yates with a fixed engine, so the order is the same with every standard library.
std::vector<std::int64_t> shuffled(std::int64_t n, std::uint64_t seed) {
  std::vector<std::int64_t> order(n);
  std::iota(order.begin(), order.end(), 0);
  std::mt19937_64 engine(seed);
  for (std::int64_t i = n - 1; i > 0; --i) {
    const auto j = std::int64_t(engine() % std::uint64_t(i + 1));
    std::swap(order[i], order[j]);
  }
  return order;
}

}  // namespace

LoopResult train_loop(torch::jit::Module& module, const TensorDataset& train, const TensorDataset* test,
                      const LoopOptions& options, const std::function<void()>& after_step) {
  if (options.epochs <= 0) throw UserError("training needs at least one epoch");
  if (options.batch <= 0) throw UserError("--batch must be positive");
  std::vector<at::Tensor> parameters;
  for (auto p : module.parameters()) {
    // Module::clone() copies parameters with autograd history; the optimizer needs leaves.
    if (!p.is_leaf()) p.detach_();
    p.requires_grad_(true);
    parameters.push_back(p);
  }
  if (parameters.empty())
    throw UserError("the model has no trainable parameters (a frozen module cannot be trained)");
  torch::optim::SGD sgd(parameters, torch::optim::SGDOptions(options.learning_rate)
                                        .momentum(options.momentum)
                                        .nesterov(options.momentum > 0)
                                        .weight_decay(options.weight_decay));
  const std::int64_t n = train.size();
  const std::int64_t steps_per_epoch = (n + options.batch - 1) / options.batch;
  const double total_steps = double(steps_per_epoch) * options.epochs;
  LoopResult result;
  std::int64_t step = 0;
  for (int epoch = 1; epoch <= options.epochs; ++epoch) {
    module.train();
    const auto start = std::chrono::steady_clock::now();
    const at::Tensor order = at::tensor(shuffled(n, options.seed * 1000003ULL + std::uint64_t(epoch)), at::kLong);
    ProgressBar bar("epoch " + std::to_string(epoch) + "/" + std::to_string(options.epochs), steps_per_epoch,
                    options.progress);
    double loss_sum = 0;
    std::int64_t correct = 0, seen = 0;
    for (std::int64_t s = 0; s < steps_per_epoch; ++s, ++step) {
      // Cosine decay to zero over the whole run.
      const double lr = 0.5 * options.learning_rate * (1 + std::cos(M_PI * double(step) / total_steps));
      for (auto& group : sgd.param_groups()) static_cast<torch::optim::SGDOptions&>(group.options()).lr(lr);
      const auto count = std::min(options.batch, n - s * options.batch);
      const at::Tensor index = order.narrow(0, s * options.batch, count);
      const at::Tensor x = train.images.index_select(0, index);
      const at::Tensor y = train.labels.index_select(0, index);
      const at::Tensor logits = module.forward({x}).toTensor();
      const at::Tensor loss = at::cross_entropy_loss(logits, y);
      sgd.zero_grad();
      loss.backward();
      sgd.step();
      if (after_step) after_step();
      loss_sum += loss.item<double>() * double(count);
      correct += logits.argmax(1).eq(y).sum().item<std::int64_t>();
      seen += count;
      char status[96];
      std::snprintf(status, sizeof status, "loss %.4f train-acc %.2f%%", loss_sum / double(seen),
                    100.0 * double(correct) / double(seen));
      bar.update(s + 1, status);
    }
    result.epoch_seconds.push_back(std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count());
    char status[128];
    int used = std::snprintf(status, sizeof status, "loss %.4f train-acc %.2f%%", loss_sum / double(seen),
                             100.0 * double(correct) / double(seen));
    if (test) {
      result.test_accuracy = evaluate(module, *test).accuracy.value;
      std::snprintf(status + used, sizeof status - std::size_t(used), " test-acc %.2f%%", 100.0 * result.test_accuracy);
    }
    bar.finish(status);
  }
  module.eval();
  return result;
}

}  // namespace joulecut
