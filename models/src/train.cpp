#include <ATen/ATen.h>
#include <ATen/Parallel.h>
#include <torch/optim/sgd.h>

#include <nlohmann/json.hpp>

#include <chrono>
#include <cmath>
#include <cstdio>
#include <map>
#include <numeric>
#include <random>

#include "joulecut/error.h"
#include "joulecut/evaluate.h"
#include "joulecut/models.h"
#include "joulecut/platform.h"
#include "joulecut/progress.h"
#include "joulecut/torch_compat.h"
#include "joulecut/version.h"

namespace joulecut {

TrainOptions with_defaults(TrainOptions options) {
  struct Defaults {
    int epochs;
    double learning_rate;
    double weight_decay;
  };
  static const std::map<std::string, Defaults> defaults = {
      {"mlp", {15, 0.05, 1e-4}},
      {"lenet5", {15, 0.05, 5e-4}},
      {"resnet8", {12, 0.1, 5e-4}},
      {"mobilenet", {10, 0.1, 1e-4}},
  };
  const auto it = defaults.find(options.arch);
  if (it == defaults.end()) build_reference_model(options.arch, 0);  // throws the "unknown architecture" error
  if (options.epochs <= 0) options.epochs = it->second.epochs;
  if (options.learning_rate <= 0) options.learning_rate = it->second.learning_rate;
  if (options.weight_decay <= 0) options.weight_decay = it->second.weight_decay;
  if (options.batch <= 0) throw UserError("--batch must be positive");
  return options;
}

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

TrainResult train_reference_model(const TrainOptions& requested, const DataSource& data,
                                  const std::string& command) {
  const TrainOptions options = with_defaults(requested);
  TensorDataset train = load_dataset(data, Split::train);
  const TensorDataset test = load_dataset(data, Split::test, train.spec);
  train = take_first(train, options.train_limit);

  at::manual_seed(options.seed);
  torch::jit::Module module = build_reference_model(options.arch, options.seed);
  std::vector<at::Tensor> parameters;
  for (const auto& p : module.parameters()) parameters.push_back(p);
  torch::optim::SGD sgd(parameters, torch::optim::SGDOptions(options.learning_rate)
                                        .momentum(options.momentum)
                                        .nesterov(options.momentum > 0)
                                        .weight_decay(options.weight_decay));

  const std::int64_t n = train.size();
  const std::int64_t steps_per_epoch = (n + options.batch - 1) / options.batch;
  const double total_steps = double(steps_per_epoch) * options.epochs;
  TrainResult result;
  std::int64_t step = 0;
  for (int epoch = 1; epoch <= options.epochs; ++epoch) {
    module.train();
    const auto start = std::chrono::steady_clock::now();
    const auto order = shuffled(n, options.seed * 1000003ULL + std::uint64_t(epoch));
    const at::Tensor order_tensor = at::tensor(order, at::kLong);
    ProgressBar bar("epoch " + std::to_string(epoch) + "/" + std::to_string(options.epochs), steps_per_epoch,
                    options.progress);
    double loss_sum = 0;
    std::int64_t correct = 0, seen = 0;
    for (std::int64_t s = 0; s < steps_per_epoch; ++s, ++step) {
      // Cosine decay to zero over the whole run.
      const double lr = 0.5 * options.learning_rate * (1 + std::cos(M_PI * double(step) / total_steps));
      for (auto& group : sgd.param_groups()) static_cast<torch::optim::SGDOptions&>(group.options()).lr(lr);
      const auto count = std::min(options.batch, n - s * options.batch);
      const at::Tensor index = order_tensor.narrow(0, s * options.batch, count);
      const at::Tensor x = train.images.index_select(0, index);
      const at::Tensor y = train.labels.index_select(0, index);
      const at::Tensor logits = module.forward({x}).toTensor();
      const at::Tensor loss = at::cross_entropy_loss(logits, y);
      sgd.zero_grad();
      loss.backward();
      sgd.step();
      loss_sum += loss.item<double>() * double(count);
      correct += logits.argmax(1).eq(y).sum().item<std::int64_t>();
      seen += count;
      char status[96];
      std::snprintf(status, sizeof status, "loss %.4f train-acc %.2f%%", loss_sum / double(seen),
                    100.0 * double(correct) / double(seen));
      bar.update(s + 1, status);
    }
    result.epoch_seconds.push_back(std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count());
    const EvalResult eval = evaluate(module, test);
    result.test_accuracy = eval.accuracy.value;
    char status[128];
    std::snprintf(status, sizeof status, "loss %.4f train-acc %.2f%% test-acc %.2f%%", loss_sum / double(seen),
                  100.0 * double(correct) / double(seen), 100.0 * eval.accuracy.value);
    bar.finish(status);
  }
  module.eval();

  nlohmann::json provenance = {
      {"command", command},
      {"arch", options.arch},
      {"seed", options.seed},
      {"epochs", options.epochs},
      {"batch", options.batch},
      {"optimizer", "SGD, Nesterov momentum"},
      {"momentum", options.momentum},
      {"learning_rate", options.learning_rate},
      {"schedule", "cosine to 0, per step"},
      {"weight_decay", options.weight_decay},
      {"train_images", n},
      {"threads", at::get_num_threads()},
      {"test_accuracy", result.test_accuracy},
      {"test_images", test.size()},
      {"epoch_seconds", result.epoch_seconds},
      {"selection", "final epoch (no model selection on the test set)"},
      {"libtorch", compat::torch_version()},
      {"joulecut", std::string(JOULECUT_VERSION) + " (" + JOULECUT_GIT_REVISION + ")"},
      {"blas", blas_info().name},
      {"cpu", cpu_model()},
  };
  result.metadata.arch = options.arch;
  result.metadata.dataset = train.spec;
  result.metadata.provenance_json = provenance.dump();
  result.module = module;
  return result;
}

}  // namespace joulecut
