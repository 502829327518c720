// convert-precision: bf16 (and fp16) weights and activations, chosen layers kept fp32.
#include <catch2/catch.hpp>

#include <ATen/ATen.h>

#include "joulecut/error.h"
#include "joulecut/models.h"
#include "joulecut/quantize.h"

using namespace joulecut;
using Catch::Matchers::Contains;

namespace {
at::ScalarType weight_dtype(const torch::jit::Module& m, const std::string& layer) {
  for (const auto& p : m.named_parameters(true))
    if (p.name == layer + ".weight") return p.value.scalar_type();
  FAIL("no layer " << layer);
  return at::kFloat;
}
}  // namespace

TEST_CASE("convert-precision runs a model in bf16 with float32 in and out, layers kept fp32 on request", "[quantize][precision]") {
  auto model = build_reference_model("lenet5", 3);
  model.eval();
  PassContext context;
  const auto input = at::randn({4, 1, 28, 28});
  at::NoGradGuard no_grad;
  const at::Tensor reference = model.forward({input}).toTensor();

  const auto result = make_pass("convert-precision", {})->run(model, context);
  CHECK(weight_dtype(result.module, "conv1") == at::kBFloat16);
  CHECK(weight_dtype(result.module, "fc3") == at::kBFloat16);
  CHECK(weight_dtype(model, "conv1") == at::kFloat);  // the input is never changed
  auto converted = result.module;
  const at::Tensor out = converted.forward({input}).toTensor();
  CHECK(out.scalar_type() == at::kFloat);
  // bf16 keeps 8 bits of mantissa: outputs agree to a few percent of their scale.
  const double scale = reference.abs().max().item<double>();
  CHECK((out - reference).abs().max().item<double>() < 0.05 * scale + 1e-3);
  CHECK(out.argmax(1).equal(reference.argmax(1)));
  CHECK_THAT(result.report.summary, Contains("5 of 5 Conv2d/Linear layer(s) in bf16"));

  const auto kept = make_pass("convert-precision", {{"exclude", "conv1|fc3"}})->run(model, context);
  CHECK(weight_dtype(kept.module, "conv1") == at::kFloat);
  CHECK(weight_dtype(kept.module, "fc3") == at::kFloat);
  CHECK(weight_dtype(kept.module, "conv2") == at::kBFloat16);
  auto mixed = kept.module;
  const at::Tensor mixed_out = mixed.forward({input}).toTensor();
  CHECK(mixed_out.scalar_type() == at::kFloat);
  CHECK((mixed_out - reference).abs().max().item<double>() < 0.05 * scale + 1e-3);
  bool reported = false;
  for (const auto& l : kept.report.layers)
    if (l.layer == "conv1") reported = l.after == 32 && l.note == "kept fp32 (exclude)";
  CHECK(reported);
}

TEST_CASE("convert-precision refuses what it cannot do and says what fp16 costs on a CPU", "[quantize][precision]") {
  auto model = build_reference_model("mlp", 1);
  PassContext context;
  CHECK_THROWS_WITH(make_pass("convert-precision", {{"dtype", "int4"}}), Contains("dtype 'int4': choose bf16 or fp16"));
  CHECK_THROWS_WITH(make_pass("convert-precision", {{"exclude", "attn*"}})->run(model, context), Contains("'attn*' matches no layer"));
  const auto fp16 = make_pass("convert-precision", {{"dtype", "fp16"}})->run(model, context);
  CHECK_THAT(fp16.report.summary, Contains("in fp16"));
}

// A traced Hugging Face encoder in miniature: int64 token ids into an embedding, an int64 mask
// the model casts to float32 itself (as a trace bakes `mask.to(float32)` in), then a Linear.
TEST_CASE("convert-precision keeps integer inputs and what reads them, and lowers the model's own float32 casts",
          "[quantize][precision]") {
  torch::jit::Module model("TokenModel");
  at::manual_seed(4);
  model.register_parameter("embedding", at::randn({50, 16}), false);
  torch::jit::Module dense("Dense");
  dense.register_parameter("weight", at::randn({8, 16}) * 0.2, false);
  dense.register_parameter("bias", at::randn({8}) * 0.1, false);
  model.register_module("proj", dense);
  model.define(R"JIT(
def forward(self, ids, mask):
    x = torch.embedding(self.embedding, ids)
    bias = (1.0 - mask.to(6)) * -10000.0
    y = torch.linear(x, self.proj.weight, self.proj.bias)
    return y.sum(-1) + bias
)JIT");
  model.eval();
  const at::Tensor ids = at::randint(0, 50, {3, 7}, at::kLong);
  at::Tensor mask = at::ones({3, 7}, at::kLong);
  mask.narrow(1, 5, 2).zero_();
  at::NoGradGuard no_grad;
  const at::Tensor reference = model.forward({ids, mask}).toTensor();
  PassContext context;
  const auto result = make_pass("convert-precision", {})->run(model, context);
  auto converted = result.module;
  const at::Tensor out = converted.forward({ids, mask}).toTensor();  // before: ids cast to bf16, then embedding failed
  CHECK(out.scalar_type() == at::kFloat);
  const at::Tensor kept = reference.narrow(1, 0, 5);  // the unmasked tokens
  const double scale = kept.abs().max().item<double>();
  CHECK((out.narrow(1, 0, 5) - kept).abs().max().item<double>() < 0.03 * scale + 0.05);
  CHECK(out.narrow(1, 5, 2).max().item<double>() < -9000);  // the masked ones, as the mask says
  bool noted = false;
  for (const auto& n : result.report.notes) noted = noted || n.find("now made in bf16") != std::string::npos;
  CHECK(noted);
}
