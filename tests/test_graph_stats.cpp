#include <catch2/catch.hpp>

#include <ATen/ATen.h>

#include "joulecut/graph_stats.h"
#include "joulecut/models.h"

// MAC counts checked by hand: a convolution costs (output elements) x (Cin / groups) x kH x kW,
// a linear layer (output elements) x (input features).
TEST_CASE("MACs of LeNet-5 counted layer by layer", "[stats][macs]") {
  auto m = joulecut::build_reference_model("lenet5", 1);
  m.eval();
  const auto stats = joulecut::analyze_model(m, at::zeros({1, 1, 28, 28}));
  REQUIRE(stats.layers.size() == 5);
  CHECK(stats.layers[0].name == "conv1");
  CHECK(stats.layers[0].macs == 6 * 28 * 28 * (1 * 5 * 5));   // 117600
  CHECK(stats.layers[1].macs == 16 * 10 * 10 * (6 * 5 * 5));  // 240000
  CHECK(stats.layers[2].name == "fc1");
  CHECK(stats.layers[2].macs == 400 * 120);
  CHECK(stats.layers[3].macs == 120 * 84);
  CHECK(stats.layers[4].macs == 84 * 10);
  CHECK(stats.macs == 416520);
  CHECK(stats.parameters == 61706);
  CHECK(stats.layer_params == 61706);
  CHECK(stats.layers[0].output_shape == std::vector<std::int64_t>{1, 6, 28, 28});
}

TEST_CASE("MACs scale with the batch and respect groups", "[stats][macs]") {
  auto m = joulecut::build_reference_model("mobilenet", 1);
  m.eval();
  const auto one = joulecut::analyze_model(m, at::zeros({1, 1, 28, 28}));
  const auto four = joulecut::analyze_model(m, at::zeros({4, 1, 28, 28}));
  CHECK(four.macs == 4 * one.macs);
  // block1.dw: depthwise 3x3 over 16 channels at 28x28: each output sums 1 x 3 x 3 inputs.
  const auto dw = std::find_if(one.layers.begin(), one.layers.end(), [](auto& l) { return l.name == "block1.dw"; });
  REQUIRE(dw != one.layers.end());
  CHECK(dw->macs == 16 * 28 * 28 * 9);
  // Linear layers inside aten::linear are not counted twice through aten::matmul.
  auto mlp = joulecut::build_reference_model("mlp", 1);
  const auto mlp_stats = joulecut::analyze_model(mlp, at::zeros({2, 1, 28, 28}));
  CHECK(mlp_stats.layers.size() == 3);
  CHECK(mlp_stats.macs == 2 * (784 * 300 + 300 * 100 + 100 * 10));
}

TEST_CASE("weight sparsity is counted", "[stats][macs]") {
  auto m = joulecut::build_reference_model("mlp", 1);
  {
    at::NoGradGuard no_grad;
    m.attr("fc1").toModule().attr("weight").toTensor().narrow(0, 0, 150).zero_();
  }
  const auto stats = joulecut::analyze_model(m, at::zeros({1, 1, 28, 28}));
  CHECK(stats.layers[0].weight_zeros == 150 * 784);
  CHECK(stats.weight_sparsity() == Approx(150.0 * 784 / (784 * 300 + 300 * 100 + 100 * 10)));
}

TEST_CASE("counts do not change once a model has run", "[stats][macs]") {
  auto m = joulecut::build_reference_model("resnet8", 1);
  m.eval();
  const auto first = joulecut::analyze_model(m, at::zeros({1, 1, 28, 28}));
  {
    at::NoGradGuard no_grad;
    for (int i = 0; i < 3; ++i) m.forward({at::zeros({1, 1, 28, 28})});  // let the executor optimize
  }
  const auto later = joulecut::analyze_model(m, at::zeros({1, 1, 28, 28}));
  CHECK(first.macs == later.macs);
  REQUIRE(later.layers.size() == 10);
  // layer2's 1x1 shortcut: 32 x 14 x 14 outputs, 16 inputs each.
  CHECK(later.layers[5].name == "layer2.shortcut_conv");
  CHECK(later.layers[5].macs == 32 * 14 * 14 * 16);
}
