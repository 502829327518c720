// Writes the model fixtures the CLI tests need into the directory given.
#include <ATen/ATen.h>
#include <torch/script.h>

#include <cstdio>
#include <string>

#include "joulecut/model.h"

int main(int argc, char** argv) {
  if (argc != 2) {
    std::fprintf(stderr, "usage: make_fixtures DIR\n");
    return 2;
  }
  const std::string dir = argv[1];
  // A model for 3x32x32 inputs (CIFAR-shaped): Fashion-MNIST's 1x28x28 does not fit it.
  torch::jit::Module wrong("CifarLinear");
  wrong.register_parameter("weight", at::randn({10, 3 * 32 * 32}), false);
  wrong.define("def forward(self, x):\n    return torch.linear(torch.flatten(x, 1), self.weight)\n");
  joulecut::save_model(wrong, std::nullopt, dir + "/wrong-input.pt");
  // A model returning a tuple, not class scores.
  torch::jit::Module tuple("Tuple");
  tuple.define("def forward(self, x):\n    return (x, x)\n");
  joulecut::save_model(tuple, std::nullopt, dir + "/tuple-output.pt");
  // Convolutions only (two layers, so one is prunable with first/last): no Linear layer.
  torch::jit::Module conv("ConvOnly");
  torch::jit::Module inner("Conv");
  inner.register_parameter("weight", at::randn({4, 1, 3, 3}), false);
  conv.register_module("conv1", inner);
  torch::jit::Module inner2("Conv2");
  inner2.register_parameter("weight", at::randn({10, 4, 3, 3}), false);
  conv.register_module("conv2", inner2);
  conv.define(
      "def forward(self, x):\n"
      "    x = torch.conv2d(x, self.conv1.weight)\n"
      "    return torch.mean(torch.conv2d(x, self.conv2.weight), [2, 3])\n");
  joulecut::save_model(conv, std::nullopt, dir + "/conv-only.pt");
  return 0;
}
