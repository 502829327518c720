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
  return 0;
}
