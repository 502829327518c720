// Training throughput: joulecut's loop (plain cross-entropy, and distillation) against a plain
// LibTorch loop over the same module, data and optimizer, timed in the same run, interleaved
// (three rounds, the order rotated each round) so machine noise hits all three alike. The distillation
// figure includes the teacher's one pass over the data. scripts/bench-distill runs it.
#include <ATen/ATen.h>
#include <ATen/Parallel.h>
#include <torch/optim/sgd.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <vector>

#include "joulecut/threads.h"
#include "joulecut/distill.h"
#include "joulecut/evaluate.h"
#include "joulecut/models.h"
#include "joulecut/platform.h"
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

int main(int, char** argv) {
  restart_with_better_openblas_kernels(argv);  // OpenBLAS reads OPENBLAS_CORETYPE only when it loads
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
  // One untimed round warms the thread pool, allocator and JIT; then three rounds, each starting
  // with a different loop, so neither order nor drift favours one of them.
  const auto run = [&](int which) {
    const auto start = std::chrono::steady_clock::now();
    if (which == 0) return plain_loop(build_reference_model("lenet5", 1), data, epochs, loop.batch);
    torch::jit::Module module = build_reference_model("lenet5", 1);
    if (which == 1) train_loop(module, data, nullptr, loop);
    else distill(teacher, module, data, nullptr, distill_options);
    return seconds_since(start);
  };
  for (int which = 0; which < 3; ++which) run(which);
  double seconds[3] = {0, 0, 0};
  for (int round = 0; round < 3; ++round)
    for (int k = 0; k < 3; ++k) seconds[(round + k) % 3] += run((round + k) % 3);
  const double plain = seconds[0], ours = seconds[1], distilled = seconds[2];
  const double steps = 3.0 * epochs * double(data.size() / loop.batch);
  std::printf("LeNet-5, batch 64, %d threads, %d steps per loop (3 rounds after a warm-up, order rotated)\n", at::get_num_threads(),
              int(steps / 3));
  std::printf("plain LibTorch loop:      %.1f steps/s\n", steps / plain);
  std::printf("joulecut train_loop:      %.1f steps/s (ours/plain %.3f)\n", steps / ours, plain / ours);
  std::printf("joulecut distill (T=4):   %.1f steps/s, teacher pass included (distill/plain %.3f)\n", steps / distilled,
              plain / distilled);
}
