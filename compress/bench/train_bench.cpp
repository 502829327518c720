// Training throughput: joulecut's loop (plain cross-entropy, and distillation) against a plain
// LibTorch loop over the same module, data and optimizer, timed in the same run, interleaved
// (plain, ours, distill, three rounds) so machine noise hits all three alike. The distillation
// figure includes the teacher's one pass over the data. scripts/bench-distill runs it.
#include <ATen/ATen.h>
#include <ATen/Parallel.h>
#include <torch/optim/sgd.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <vector>

#include "joulecut/distill.h"
#include "joulecut/evaluate.h"
#include "joulecut/models.h"
#include "joulecut/train_loop.h"

using namespace joulecut;

namespace {

double seconds_since(std::chrono::steady_clock::time_point start) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
}

// What a user would write with LibTorch alone: same order of work per step.
double plain_loop(torch::jit::Module module, const TensorDataset& data, int epochs, std::int64_t batch) {
  std::vector<at::Tensor> parameters;
  for (auto p : module.parameters()) parameters.push_back(p.requires_grad_(true));
  torch::optim::SGD sgd(parameters, torch::optim::SGDOptions(0.01).momentum(0.9).nesterov(true));
  module.train();
  const auto start = std::chrono::steady_clock::now();
  for (int e = 0; e < epochs; ++e) {
    const at::Tensor order = at::randperm(data.size());
    for (std::int64_t s = 0; s < data.size(); s += batch) {
      const at::Tensor index = order.narrow(0, s, std::min(batch, data.size() - s));
      const at::Tensor logits = module.forward({data.images.index_select(0, index)}).toTensor();
      const at::Tensor loss = at::cross_entropy_loss(logits, data.labels.index_select(0, index));
      sgd.zero_grad();
      loss.backward();
      sgd.step();
    }
  }
  return seconds_since(start);
}

}  // namespace

int main() {
  configure_threads(0);
  at::manual_seed(1);
  TensorDataset data;
  data.description = "noise";
  data.images = at::randn({6400, 1, 28, 28});
  data.labels = at::randint(0, 10, {6400}, at::kLong);
  const int epochs = 3;
  LoopOptions loop;
  loop.epochs = epochs;
  loop.batch = 64;
  loop.learning_rate = 0.01;
  loop.progress = false;
  DistillOptions distill_options;
  distill_options.loop = loop;
  const torch::jit::Module teacher = build_reference_model("lenet5", 2);
  double plain = 0, ours = 0, distilled = 0;
  for (int round = 0; round < 3; ++round) {
    plain += plain_loop(build_reference_model("lenet5", 1), data, epochs, loop.batch);
    torch::jit::Module module = build_reference_model("lenet5", 1);
    auto start = std::chrono::steady_clock::now();
    train_loop(module, data, nullptr, loop);
    ours += seconds_since(start);
    start = std::chrono::steady_clock::now();
    distill(teacher, build_reference_model("lenet5", 1), data, nullptr, distill_options);
    distilled += seconds_since(start);
  }
  const double steps = 3.0 * epochs * double(data.size() / loop.batch);
  std::printf("LeNet-5, batch 64, %d threads, %d steps per loop (3 rounds, interleaved)\n", at::get_num_threads(),
              int(steps / 3));
  std::printf("plain LibTorch loop:      %.1f steps/s\n", steps / plain);
  std::printf("joulecut train_loop:      %.1f steps/s (ours/plain %.3f)\n", steps / ours, plain / ours);
  std::printf("joulecut distill (T=4):   %.1f steps/s, teacher pass included (distill/plain %.3f)\n", steps / distilled,
              plain / distilled);
}
