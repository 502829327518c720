// Loads a TorchScript model through joulecut's API and prints its size and cost.
#include <ATen/ATen.h>

#include <cstdio>

#include "joulecut/error.h"
#include "joulecut/graph_stats.h"
#include "joulecut/model.h"

int main(int argc, char** argv) {
  if (argc != 2) {
    std::fprintf(stderr, "usage: consumer MODEL.pt\n");
    return 2;
  }
  try {
    auto loaded = joulecut::load_model(argv[1]);
    const auto spec = loaded.metadata ? loaded.metadata->dataset : joulecut::fashion_mnist_spec();
    loaded.module.eval();
    const auto stats = joulecut::analyze_model(loaded.module, at::zeros({1, spec.channels, spec.height, spec.width}));
    std::printf("%s: %lld parameters, %lld MACs per inference, %zu layers\n", argv[1], (long long)stats.parameters,
                (long long)stats.macs, stats.layers.size());
  } catch (const joulecut::UserError& e) {
    std::fprintf(stderr, "consumer: %s\n", e.what());
    return 1;
  }
  return 0;
}
