// fold-batchnorm: the folded model computes what the original computes in eval mode.
#include <catch2/catch.hpp>

#include <ATen/ATen.h>

#include "joulecut/error.h"
#include "joulecut/model.h"
#include "joulecut/models.h"
#include "joulecut/quantize.h"
#include "temp_dir.h"

using namespace joulecut;
using Catch::Matchers::Contains;

namespace {
int count_ops(torch::jit::Module& m, const std::string& op) {
  int n = 0;
  for (const auto* node : m.get_method("forward").graph()->nodes()) n += node->kind().toQualString() == op;
  return n;
}
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
