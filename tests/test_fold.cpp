// fold-batchnorm: the folded model computes what the original computes in eval mode.
#include <catch2/catch.hpp>

#include <ATen/ATen.h>

#include <algorithm>

#include "joulecut/error.h"
#include "joulecut/graph_stats.h"
#include "joulecut/model.h"
#include "joulecut/models.h"
#include "joulecut/quantize.h"
#include "temp_dir.h"
#include "count_ops.h"

using namespace joulecut;
using Catch::Matchers::Contains;

namespace {
// Trained-looking statistics, so folding has something to fold.
void randomize_batchnorms(torch::jit::Module& m) {
  at::NoGradGuard no_grad;
  for (const auto& b : m.named_buffers(true)) {
    if (b.name.find("running_mean") != std::string::npos) b.value.uniform_(-0.3, 0.3);
    if (b.name.find("running_var") != std::string::npos) b.value.uniform_(0.5, 2.0);
  }
  for (const auto& p : m.named_parameters(true))
    if (p.name.find("bn") != std::string::npos && p.value.dim() == 1) p.value.uniform_(0.5, 1.5);
}
PassResult fold(const torch::jit::Module& m) {
  PassContext context;
  context.progress = false;
  return FoldBatchNormPass().run(m, context);
}
}  // namespace

TEST_CASE("folding BatchNorm leaves eval-mode outputs unchanged", "[quantize]") {
  at::manual_seed(41);
  std::vector<torch::jit::Module> models;
  for (const char* arch : {"resnet8", "mobilenet"}) {
    models.push_back(build_reference_model(arch, 1));
    randomize_batchnorms(models.back());
  }
  for (const char* file : {"python-scripted-resnet18-w8.pt", "python-traced-resnet18-w8.pt", "python-scripted-cnn.pt"})
    models.push_back(load_model(std::string(JOULECUT_FIXTURES) + "/" + file).module);
  const at::Tensor x = at::randn({3, 1, 28, 28});
  TempDir dir;
  for (auto& m : models) {
    m.eval();
    const at::Tensor expected = m.forward({x}).toTensor();
    auto result = fold(m);
    INFO(result.report.summary);
    CHECK_THAT(result.report.summary, !Contains(" 0 of"));
    for (const auto& l : result.report.layers) CHECK(l.note == "folded");
    CHECK(count_ops(result.module, "aten::batch_norm") == 0);
    CHECK(at::allclose(result.module.forward({x}).toTensor(), expected, 1e-4, 1e-4));
    CHECK(at::allclose(m.forward({x}).toTensor(), expected));  // the input is untouched
    save_model(result.module, std::nullopt, dir.file("folded.pt"));
    CHECK(at::allclose(load_model(dir.file("folded.pt")).module.forward({x}).toTensor(), expected, 1e-4, 1e-4));
  }
}

TEST_CASE("a BatchNorm that does not follow a layer is kept, and says why", "[quantize]") {
  torch::jit::Module m("AddThenNorm");
  m.register_attribute("training", c10::BoolType::get(), false);
  m.register_parameter("weight", at::randn({4, 1, 3, 3}), false);
  m.register_parameter("bn_weight", at::ones({4}), false);
  m.register_buffer("bn_mean", at::zeros({4}));
  m.register_buffer("bn_var", at::ones({4}));
  m.define(R"(
def forward(self, x):
    y = torch.conv2d(x, self.weight)
    return torch.batch_norm(y + 1.0, self.bn_weight, None, self.bn_mean, self.bn_var, False, 0.1, 1e-05, False)
)");
  auto result = fold(m);
  CHECK_THAT(result.report.summary, Contains("0 of 1"));
  CHECK_THAT(result.report.layers[0].note, Contains("kept: follows aten::add"));
  torch::jit::Module plain("NoNorm");
  plain.define("def forward(self, x):\n    return x\n");
  CHECK_THROWS_WITH(fold(plain), Contains("no BatchNorm"));
  CHECK_THROWS_WITH(parse_pipeline("fold-batchnorm<eps=1>"), Contains("unknown option 'eps'"));
  CHECK(parse_pipeline("fold-batchnorm,prune-channel")[0]->text() == "fold-batchnorm");
}

TEST_CASE("dynamic int8 Linear layers stay close to fp32 and count their MACs", "[quantize]") {
  at::manual_seed(61);
  auto mlp = build_reference_model("mlp", 1);
  mlp.eval();
  PassContext context;
  context.progress = false;
  auto result = DynamicQuantizePass().run(mlp, context);
  CHECK_THAT(result.report.summary, Contains("3 of 3 Linear layer(s) run on quantized::linear_dynamic"));
  CHECK(count_ops(result.module, "quantized::linear_dynamic") == 3);
  const at::Tensor x = at::randn({64, 1, 28, 28});
  const at::Tensor expected = mlp.forward({x}).toTensor();
  const at::Tensor got = result.module.forward({x}).toTensor();
  // int8 weights and activations: close, not equal.
  CHECK((got - expected).abs().max().item<double>() < 0.05 * expected.abs().max().item<double>());
  CHECK(got.argmax(1).eq(expected.argmax(1)).to(at::kFloat).mean().item<double>() > 0.95);
  TempDir dir;
  save_model(result.module, std::nullopt, dir.file("dynamic.pt"));
  auto loaded = load_model(dir.file("dynamic.pt")).module;
  CHECK(at::allclose(loaded.forward({x}).toTensor(), got));
  const auto stats = analyze_model(loaded, at::zeros({2, 1, 28, 28}));
  CHECK(stats.macs == 2 * (784 * 300 + 300 * 100 + 100 * 10));
  CHECK(stats.parameters == 784 * 300 + 300 * 100 + 100 * 10 + 300 + 100 + 10);  // packed weights and biases, once
  CHECK(std::find(stats.dtypes.begin(), stats.dtypes.end(), "QInt8") != stats.dtypes.end());

  DynamicQuantizeOptions keep_last;
  keep_last.exclude = "fc3";
  auto partial = DynamicQuantizePass(keep_last).run(mlp, context);
  CHECK(count_ops(partial.module, "quantized::linear_dynamic") == 2);
  CHECK(count_ops(partial.module, "aten::linear") == 1);
  torch::jit::Module conv("ConvOnly");
  conv.register_parameter("weight", at::randn({4, 1, 3, 3}), false);
  conv.define("def forward(self, x):\n    return torch.conv2d(x, self.weight)\n");
  CHECK_THROWS_WITH(DynamicQuantizePass().run(conv, context), Contains("no float32 Linear layer"));
}
