// GPU test of joulecut::int8_linear_dp4a: the op on CUDA tensors (the dp4a kernel) against the
// same op on CPU tensors (the exact reference), and a quantize-static backend=cuda model moved to
// the GPU against itself on the CPU. Exits 77 (CTest: skipped) where no CUDA device is visible.
#include <ATen/ATen.h>
#include <torch/cuda.h>
#include <torch/script.h>

#include <algorithm>
#include <array>
#include <cstdio>
#include <vector>

#include "joulecut/int8_cuda.h"
#include "joulecut/models.h"
#include "joulecut/quantize.h"

int main() {
  if (!joulecut::dp4a_kernel_compiled()) {
    std::printf("SKIPPED: this build has no CUDA kernel in the op (LibTorch without CUDA)\n");
    return 77;
  }
  if (!torch::cuda::is_available()) {
    std::printf("SKIPPED: no CUDA device\n");
    return 77;
  }
  at::manual_seed(1);
  int failures = 0;
  const auto check = [&](bool ok, const char* what, double detail) {
    std::printf("%s %s (%g)\n", ok ? "ok  " : "FAIL", what, detail);
    failures += !ok;
  };
  for (const auto& [rows, out, in] : std::vector<std::array<std::int64_t, 3>>{{1, 10, 84}, {64, 300, 784}, {37, 129, 6}, {1024, 512, 1024}}) {
    const at::Tensor w = at::randn({out, in}), bias = at::randn({out}), x = at::randn({rows, in});
    const joulecut::Dp4aWeight packed = joulecut::pack_dp4a_weight(w);
    const double scale = x.abs().max().item<double>() / 127;
    for (const bool relu : {false, true}) {
      const at::Tensor cpu = joulecut::int8_linear_dp4a(x, packed.weight, packed.scale, bias, scale, relu);
      const at::Tensor gpu = joulecut::int8_linear_dp4a(x.cuda(), packed.weight.cuda(), packed.scale.cuda(), bias.cuda(),
                                                        scale, relu).cpu();
      const double err = (gpu - cpu).abs().max().item<double>();
      char what[96];
      std::snprintf(what, sizeof what, "op %lldx%lldx%lld relu=%d matches the CPU reference", (long long)rows,
                    (long long)out, (long long)in, int(relu));
      check(err <= 1e-4 * std::max(1.0, cpu.abs().max().item<double>()), what, err);
    }
  }
  // A quantized model, moved whole to the GPU.
  auto model = joulecut::build_reference_model("lenet5", 3);
  model.eval();
  joulecut::TensorDataset train;
  train.images = at::randn({200, 1, 28, 28});
  train.labels = at::randint(0, 10, {200}, at::kLong);
  joulecut::PassContext context;
  context.train = &train;
  context.progress = false;
  joulecut::StaticQuantizeOptions options;
  options.backend = "cuda";
  options.samples = 200;
  auto q = joulecut::StaticQuantizePass(options).run(model, context).module;
  const at::Tensor x = at::randn({64, 1, 28, 28});
  const at::Tensor cpu = q.forward({x}).toTensor();
  q.to(at::Device("cuda"));
  const at::Tensor gpu = q.forward({x.cuda()}).toTensor().cpu();
  const double err = (gpu - cpu).abs().max().item<double>();
  check(err <= 1e-3 * std::max(1.0, cpu.abs().max().item<double>()), "lenet5 quantized for cuda: GPU matches CPU", err);
  return failures == 0 ? 0 : 1;
}
