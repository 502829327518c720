#include <catch2/catch.hpp>

#include <ATen/ATen.h>

#include <limits>

#include "joulecut/calibrate.h"
#include "joulecut/error.h"
#include "joulecut/model.h"
#include "joulecut/models.h"
#include "noise_data.h"

using namespace joulecut;
using Catch::Matchers::Contains;


TEST_CASE("calibration observes every layer's input and output over all batches", "[quantize]") {
  at::manual_seed(51);
  const auto data = noise_dataset(300);
  CalibrationOptions options;
  options.samples = 250;  // three batches of 100, the last one partial
  options.progress = false;
  const auto lenet = calibrate(build_reference_model("lenet5", 1), data, options);
  REQUIRE(lenet.layers.size() == 5);
  CHECK(lenet.samples == 250);
  const std::vector<std::string> names = {"conv1", "conv2", "fc1", "fc2", "fc3"};
  for (std::size_t i = 0; i < names.size(); ++i) CHECK(lenet.layers[i].layer == names[i]);
  // minmax over the first 250 images exactly; later layers see ReLU outputs (zero point 0).
  const at::Tensor seen = data.images.narrow(0, 0, 250);
  CHECK(lenet.layers[0].input.min == Approx(seen.min().item<float>()));
  CHECK(lenet.layers[0].input.max == Approx(seen.max().item<float>()));
  CHECK(lenet.layers[3].input.min == 0.0f);
  CHECK(lenet.layers[3].input.zero_point == 0);
  CHECK(lenet.layers[4].output.min < 0.0f);  // logits are signed

  options.observer = "percentile";
  options.percentile = 99.0;
  const auto clipped = calibrate(build_reference_model("lenet5", 1), data, options);
  CHECK(clipped.layers[0].input.max < lenet.layers[0].input.max);

  auto resnet = build_reference_model("resnet8", 1);
  resnet.eval();
  options.observer = "entropy";
  options.samples = 250;
  options.batch = 50;
  // 7 3x3 convs, 2 shortcut convs and fc, however many batches run: the graph executor's
  // optimized plan (after two runs) must not show up as extra, unnamed layers.
  const auto r8 = calibrate(resnet, data, options);
  CHECK(r8.layers.size() == 10);
  for (const auto& l : r8.layers) CHECK(l.layer.rfind("op#", 0) == std::string::npos);
  // A shortcut convolution reads the block's input, like the block's first convolution.
  CHECK(r8.layers[5].layer == "layer2.shortcut_conv");
  CHECK(r8.layers[5].input.max == r8.layers[3].input.max);
}

TEST_CASE("bad calibration settings are named", "[quantize]") {
  const auto model = build_reference_model("mlp", 1);
  CalibrationOptions options;
  options.progress = false;
  options.observer = "max";
  CHECK_THROWS_WITH(calibrate(model, noise_dataset(4), options), Contains("unknown observer 'max'"));
  options.observer = "percentile";
  options.percentile = 0;
  CHECK_THROWS_WITH(calibrate(model, noise_dataset(4), options), Contains("must be in (0, 100]"));
  options.observer = "minmax";
  CHECK_THROWS_WITH(calibrate(model, noise_dataset(0), options), Contains("calibration set is empty"));
  auto broken = noise_dataset(8);
  broken.images[3][0][5][5] = std::numeric_limits<float>::quiet_NaN();
  CHECK_THROWS_WITH(calibrate(model, broken, options), Contains("NaN or infinity"));
  torch::jit::Module identity("Identity");
  identity.define("def forward(self, x):\n    return x\n");
  CHECK_THROWS_WITH(calibrate(identity, noise_dataset(4), options), Contains("ran no Conv2d or Linear layer"));
}
