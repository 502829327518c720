// The CUDA int8 Linear op (joulecut::int8_linear_dp4a) on the CPU, where it is the exact reference
// the GPU kernel is tested against (tests/gpu), and quantize-static's cuda backend that emits it.
#include <catch2/catch.hpp>

#include <ATen/ATen.h>
#include <ATen/core/dispatch/Dispatcher.h>

#include <sstream>

#include "joulecut/error.h"
#include "joulecut/graph_stats.h"
#include "joulecut/int8_cuda.h"
#include "joulecut/models.h"
#include "joulecut/quantize.h"
#include "noise_data.h"
#include "count_ops.h"

using namespace joulecut;
using Catch::Matchers::Contains;

namespace {

at::Tensor call_op(const at::Tensor& x, const Dp4aWeight& w, const c10::IValue& bias, double input_scale, bool relu) {
  std::vector<c10::IValue> stack{x, w.weight, w.scale, bias, input_scale, relu};
  c10::Dispatcher::singleton().findSchemaOrThrow("joulecut::int8_linear_dp4a", "").callBoxed(&stack);
  return stack.at(0).toTensor();
}

// The arithmetic written out, in double: what the kernel computes, exactly up to float rounding.
at::Tensor reference(const at::Tensor& x, const Dp4aWeight& w, const at::Tensor& bias, double input_scale, bool relu) {
  const std::int64_t in = x.size(-1);
  const at::Tensor q = at::clamp(at::round(x.reshape({-1, in}) / input_scale), -127, 127).to(at::kDouble);
  const at::Tensor wq = w.weight.narrow(1, 0, in).to(at::kDouble);
  at::Tensor y = at::mm(q, wq.t()) * input_scale * w.scale.to(at::kDouble);
  if (bias.defined()) y = y + bias.to(at::kDouble);
  if (relu) y = at::relu(y);
  std::vector<std::int64_t> shape(x.sizes().begin(), x.sizes().end());
  shape.back() = w.weight.size(0);
  return y.to(at::kFloat).reshape(shape);
}

}  // namespace

TEST_CASE("pack_dp4a_weight pads inputs to a multiple of 4 and scales each output channel", "[quantize][cuda-int8]") {
  at::manual_seed(1);
  at::Tensor w = at::randn({5, 7});
  w[2].zero_();
  const Dp4aWeight packed = pack_dp4a_weight(w);
  REQUIRE(packed.weight.sizes() == at::IntArrayRef({5, 8}));
  CHECK(packed.weight.scalar_type() == at::kChar);
  CHECK(packed.weight.select(1, 7).eq(0).all().item<bool>());  // the padding column
  CHECK(packed.scale[2].item<float>() == 1.0f);                 // an all-zero row keeps a usable scale
  CHECK(packed.weight.abs().max().item<int>() == 127);          // each nonzero row reaches the full range
  const at::Tensor restored = packed.weight.narrow(1, 0, 7).to(at::kFloat) * packed.scale.unsqueeze(1);
  CHECK(((restored - w).abs() <= packed.scale.unsqueeze(1) / 2 + 1e-6).all().item<bool>());
  CHECK_THROWS_WITH(pack_dp4a_weight(at::randn({3, 2, 2})), Contains("2-D"));
}

TEST_CASE("int8_linear_dp4a on CPU tensors: the exact reference, 2-D and 3-D input, ReLU, no bias", "[quantize][cuda-int8]") {
  at::manual_seed(2);
  for (const std::int64_t in : {4, 7, 84}) {
    const at::Tensor w = at::randn({10, in});
    const at::Tensor bias = at::randn({10});
    const Dp4aWeight packed = pack_dp4a_weight(w);
    for (const auto& shape : std::vector<std::vector<std::int64_t>>{{3, in}, {2, 5, in}}) {
      const at::Tensor x = at::randn(shape) * 2;
      const double input_scale = x.abs().max().item<double>() / 127;
      for (const bool relu : {false, true}) {
        INFO("in " << in << ", " << shape.size() << "-D, relu " << relu);
        const at::Tensor got = call_op(x, packed, bias, input_scale, relu);
        CHECK(at::allclose(got, reference(x, packed, bias, input_scale, relu), 1e-5, 1e-5));
        const at::Tensor fp32 = relu ? at::relu(at::linear(x, w, bias)) : at::linear(x, w, bias);
        CHECK(((got - fp32).norm() / fp32.norm()).item<double>() < 0.05);  // int8 keeps the signal
      }
      const at::Tensor no_bias = call_op(x, packed, c10::IValue(), input_scale, false);
      CHECK(at::allclose(no_bias, reference(x, packed, at::Tensor(), input_scale, false), 1e-5, 1e-5));
    }
  }
}

TEST_CASE("int8_linear_dp4a rejects what it cannot run, naming the argument", "[quantize][cuda-int8]") {
  const Dp4aWeight packed = pack_dp4a_weight(at::randn({6, 8}));
  const at::Tensor x = at::randn({2, 8});
  CHECK_THROWS_WITH(call_op(x.to(at::kDouble), packed, c10::IValue(), 0.1, false), Contains("x must be float32"));
  CHECK_THROWS_WITH(call_op(at::randn({2, 12}), packed, c10::IValue(), 0.1, false), Contains("x has 12 features"));
  CHECK_THROWS_WITH(call_op(x, {packed.weight, at::ones({5})}, c10::IValue(), 0.1, false), Contains("weight_scale"));
  CHECK_THROWS_WITH(call_op(x, {packed.weight.to(at::kFloat), packed.scale}, c10::IValue(), 0.1, false),
                    Contains("weight must be int8"));
  CHECK_THROWS_WITH(call_op(x, packed, at::ones({3}), 0.1, false), Contains("bias must be float32 [6]"));
  CHECK_THROWS_WITH(call_op(x, packed, c10::IValue(), 0.0, false), Contains("input_scale must be > 0"));
  if (!dp4a_kernel_compiled()) SUCCEED("this build has the CPU reference only");
}

TEST_CASE("quantize-static backend=cuda: Linear layers on the dp4a op, convolutions fp32 and said so", "[quantize][cuda-int8]") {
  at::manual_seed(3);
  const TensorDataset train = noise_dataset(200);
  const at::Tensor x = at::randn({32, 1, 28, 28});
  for (const char* arch : {"mlp", "lenet5"}) {
    INFO(arch);
    torch::jit::Module model = build_reference_model(arch, 3);
    model.eval();
    PassContext context;
    context.train = &train;
    context.progress = false;
    const at::Tensor expected = model.forward({x}).toTensor();
    StaticQuantizeOptions options;
    options.backend = "cuda";
    options.samples = 200;
    options.guard = "off";  // every Linear layer on the op: random weights on noise have near ties
    const auto result = StaticQuantizePass(options).run(model, context);
    int linear = 0, conv = 0;
    for (const auto& l : result.report.layers) {
      const bool is_conv = l.layer.find("conv") != std::string::npos;
      conv += is_conv;
      linear += !is_conv;
      if (is_conv) {
        CHECK(l.after == 32);
        CHECK_THAT(l.note, Contains("Linear layers only"));
      } else {
        CHECK(l.after == 8);
        CHECK_THAT(l.note, Contains("dp4a"));
      }
    }
    CHECK(linear > 0);
    const int expected_conv = std::string(arch) == "mlp" ? 0 : 2;
    CHECK(conv == expected_conv);
    CHECK_THAT(result.report.summary, Contains(std::to_string(linear) + " of " + std::to_string(linear + conv)));
    torch::jit::Module q = result.module;
    CHECK(count_ops(q, "joulecut::int8_linear_dp4a") == linear);
    CHECK(count_ops(q, "aten::linear") == 0);
    const at::Tensor got = q.forward({x}).toTensor();
    CHECK(((got - expected).norm() / expected.norm()).item<double>() < 0.1);
    CHECK(got.argmax(1).eq(expected.argmax(1)).to(at::kFloat).mean().item<double>() >= 0.85);
    std::stringstream file;
    q.save(file);
    torch::jit::Module loaded = torch::jit::load(file);
    CHECK(at::equal(loaded.forward({x}).toTensor(), got));
    // The statistics see the int8 layers: same MACs as fp32, int8 weights among the dtypes.
    const auto before = analyze_model(model, x.narrow(0, 0, 1));
    const auto after = analyze_model(q, x.narrow(0, 0, 1));
    CHECK(after.macs == before.macs);
    CHECK(after.layers.size() == before.layers.size());
    CHECK(std::find(after.dtypes.begin(), after.dtypes.end(), "Char") != after.dtypes.end());
    CHECK(after.parameter_bytes < before.parameter_bytes);
  }
}
