// Structured channel pruning: dependency groups read from the graph, physical shrinking, and
// equivalence: channels that are provably dead (zero filters, zero BatchNorm scale) are the ones
// removed, so the pruned model must compute exactly what the original did.
#include <catch2/catch.hpp>

#include <ATen/ATen.h>

#include <algorithm>

#include "joulecut/error.h"
#include "joulecut/model.h"
#include "joulecut/models.h"
#include "joulecut/prune.h"
#include "temp_dir.h"

using namespace joulecut;
using Catch::Matchers::Contains;
using torch::jit::Module;

namespace {

Module leaf(const std::string& type) {
  Module m(type);
  m.register_attribute("training", c10::BoolType::get(), false);
  return m;
}

Module conv(std::int64_t in, std::int64_t out, std::int64_t kernel, std::int64_t groups = 1) {
  Module m = leaf("Conv");
  m.register_parameter("weight", at::randn({out, in / groups, kernel, kernel}), false);
  m.register_parameter("bias", at::randn({out}) * 0.1, false);
  const std::string pad = std::to_string(kernel / 2);
  m.define("def forward(self, x):\n    return torch.conv2d(x, self.weight, self.bias, [1, 1], [" + pad + ", " + pad +
           "], [1, 1], " + std::to_string(groups) + ")\n");
  return m;
}

Module batchnorm(std::int64_t c) {
  Module m = leaf("BatchNorm");
  m.register_parameter("weight", at::rand({c}) + 0.5, false);
  m.register_parameter("bias", at::randn({c}) * 0.1, false);
  m.register_buffer("running_mean", at::randn({c}) * 0.1);
  m.register_buffer("running_var", at::rand({c}) + 0.5);
  m.define(R"(
def forward(self, x):
    return torch.batch_norm(x, self.weight, self.bias, self.running_mean, self.running_var, self.training, 0.1, 1e-05, False)
)");
  return m;
}

Module linear(std::int64_t in, std::int64_t out) {
  Module m = leaf("Linear");
  m.register_parameter("weight", at::randn({out, in}) * 0.1, false);
  m.register_parameter("bias", at::randn({out}) * 0.1, false);
  m.define("def forward(self, x):\n    return torch.linear(x, self.weight, self.bias)\n");
  return m;
}

// Every dependency the analysis must follow, on 1x8x8 inputs: a residual add (stem + conv_b),
// a depthwise convolution, a concatenation of two branches, a reshape to a constant width
// (8 channels x 4x4 = 128 features) and a linear classifier.
Module branchy() {
  Module m = leaf("Branchy");
  m.register_module("stem", conv(1, 8, 3));
  m.register_module("conv_b", conv(8, 8, 3));
  m.register_module("bn_b", batchnorm(8));
  m.register_module("dw", conv(8, 8, 3, 8));
  m.register_module("pw", conv(8, 12, 1));
  m.register_module("side", conv(8, 4, 1));
  m.register_module("mix", conv(16, 8, 1));
  m.register_module("fc", linear(128, 5));
  m.define(R"(
def forward(self, x):
    a = torch.relu(self.stem.forward(x))
    b = self.bn_b.forward(self.conv_b.forward(a))
    r = torch.relu(b + a)
    d = torch.relu(self.dw.forward(r))
    c = torch.cat([self.pw.forward(d), self.side.forward(r)], 1)
    m = torch.max_pool2d(self.mix.forward(c), [2, 2], [2, 2], [0, 0], [1, 1], False)
    return self.fc.forward(m.view([-1, 128]))
)");
  return m;
}

at::Tensor param(const Module& m, const std::string& name) {
  for (const auto& p : m.named_parameters(true))
    if (p.name == name) return p.value;
  FAIL("no parameter " << name);
  return {};
}

// Makes channels `dead` of a producer's output exactly zero.
void kill(const Module& m, const std::string& layer, std::vector<std::int64_t> dead) {
  at::NoGradGuard no_grad;
  for (auto c : dead) {
    param(m, layer + ".weight")[c].zero_();
    param(m, layer + ".bias")[c].zero_();
  }
}

const ChannelGroup* group_of(const std::vector<ChannelGroup>& groups, const std::string& producer) {
  for (const auto& g : groups)
    if (std::find(g.producers.begin(), g.producers.end(), producer) != g.producers.end()) return &g;
  return nullptr;
}

bool has(const std::vector<std::string>& items, const std::string& item) {
  return std::find(items.begin(), items.end(), item) != items.end();
}

PassResult prune(const Module& m, ChannelPruneOptions options) {
  PassContext context;
  context.progress = false;
  return ChannelPrunePass(options).run(m, context);
}

}  // namespace

TEST_CASE("channel groups follow residual adds, depthwise convolutions, concatenation and reshapes", "[prune]") {
  at::manual_seed(3);
  Module m = branchy();
  const auto groups = channel_groups(m);
  const ChannelGroup* residual = group_of(groups, "stem");
  REQUIRE(residual);
  CHECK(has(residual->producers, "conv_b"));  // the add ties them
  CHECK(residual->channels == 8);
  CHECK(residual->blocked_by.empty());
  for (const char* member : {"bn_b.weight[0]", "bn_b.running_var[0]", "dw.weight[0]", "dw.bias[0]", "pw.weight[1]",
                             "side.weight[1]", "conv_b.weight[1]"})
    CHECK(has(residual->members, member));
  const ChannelGroup* pw = group_of(groups, "pw");
  REQUIRE(pw);
  CHECK(pw->producers.size() == 1);  // concatenation keeps branches separate
  CHECK(has(pw->members, "mix.weight[1]"));
  const ChannelGroup* mix = group_of(groups, "mix");
  REQUIRE(mix);
  CHECK(has(mix->members, "fc.weight[1]"));
  const ChannelGroup* fc = group_of(groups, "fc");
  REQUIRE(fc);
  CHECK_THAT(fc->blocked_by, Contains("the model's output"));
}

TEST_CASE("removing dead channels leaves the function unchanged", "[prune]") {
  at::manual_seed(4);
  Module m = branchy();
  // Dead channels in every prunable group; bn-scale ranks the residual group (zero gammas),
  // l1 the others (zero filters).
  kill(m, "stem", {2, 5});
  {
    at::NoGradGuard no_grad;
    for (std::int64_t c : {2, 5}) {
      param(m, "bn_b.weight")[c].zero_();
      param(m, "bn_b.bias")[c].zero_();
      param(m, "dw.bias")[c].zero_();
    }
  }
  kill(m, "pw", {0, 7, 11});
  kill(m, "side", {1});
  kill(m, "mix", {1, 6});
  const at::Tensor x = at::randn({3, 1, 8, 8});
  const at::Tensor expected = m.forward({x}).toTensor();

  ChannelPruneOptions options;
  options.ratio = 0.25;
  options.criterion = "bn-scale";
  auto result = prune(m, options);
  Module pruned = result.module;
  CHECK(param(pruned, "stem.weight").sizes() == at::IntArrayRef({6, 1, 3, 3}));
  CHECK(param(pruned, "conv_b.weight").sizes() == at::IntArrayRef({6, 6, 3, 3}));
  CHECK(param(pruned, "dw.weight").sizes() == at::IntArrayRef({6, 1, 3, 3}));
  CHECK(param(pruned, "pw.weight").sizes() == at::IntArrayRef({9, 6, 1, 1}));
  CHECK(param(pruned, "side.weight").sizes() == at::IntArrayRef({3, 6, 1, 1}));
  CHECK(param(pruned, "mix.weight").sizes() == at::IntArrayRef({6, 12, 1, 1}));
  CHECK(param(pruned, "fc.weight").sizes() == at::IntArrayRef({5, 96}));
  const at::Tensor got = pruned.forward({x}).toTensor();
  REQUIRE(got.sizes() == expected.sizes());
  // Relative to the output's scale (up to ~200 here): removing channels reorders float sums, so
  // an element that cancels to near 0 differs by rounding of the large terms (4.6e-5 on AMD EPYC).
  const float tolerance = 1e-6f * expected.abs().max().item<float>();
  CHECK((got - expected).abs().max().item<float>() <= tolerance);
  // Clone, then transform: the input is untouched.
  CHECK(param(m, "stem.weight").size(0) == 8);
  CHECK(at::allclose(m.forward({x}).toTensor(), expected));

  // The file loads back and computes the same.
  TempDir dir;
  save_model(pruned, std::nullopt, dir.file("pruned.pt"));
  auto loaded = load_model(dir.file("pruned.pt")).module;
  CHECK((loaded.forward({x}).toTensor() - expected).abs().max().item<float>() <= tolerance);
}

TEST_CASE("pruning one group leaves the other paths exactly as they were", "[prune]") {
  at::manual_seed(5);
  Module m = branchy();
  kill(m, "side", {0, 3});
  const at::Tensor x = at::randn({2, 1, 8, 8});
  ChannelPruneOptions options;
  options.layers.include = "side";
  auto result = prune(m, options);
  CHECK(param(result.module, "side.weight").size(0) == 2);
  for (const char* untouched : {"stem.weight", "conv_b.weight", "dw.weight", "pw.weight", "fc.weight"})
    CHECK(at::equal(param(result.module, untouched), param(m, untouched)));
  // mix loses exactly side's two input columns (12 + 0, 12 + 3).
  const at::Tensor mix = param(m, "mix.weight");
  CHECK(at::equal(param(result.module, "mix.weight"),
                  at::cat({mix.narrow(1, 0, 12), mix.narrow(1, 13, 2)}, 1)));
  CHECK(at::allclose(result.module.forward({x}).toTensor(), m.forward({x}).toTensor(), 1e-5, 1e-5));
}

TEST_CASE("kept channels round up to a multiple", "[prune]") {
  at::manual_seed(6);
  ChannelPruneOptions options;
  options.ratio = 0.6;
  options.round_to = 8;
  const auto result = prune(branchy(), options);
  // pw: 12 channels, 60% removed leaves 5, rounded up to 8; stem's group: 8 stays 8.
  CHECK(param(result.module, "pw.weight").size(0) == 8);
  CHECK(param(result.module, "stem.weight").size(0) == 8);
}

TEST_CASE("channel pruning runs on every reference CNN and on Python's ResNet-18", "[prune]") {
  const at::Tensor x = at::randn({2, 1, 28, 28});
  std::vector<Module> models;
  for (const auto& arch : reference_architectures()) {
    if (arch == "vit") {  // attention mixes features across heads: prune-heads is its pass
      CHECK_THROWS_WITH(prune(build_reference_model(arch, 1), {}), Contains("the prune-heads pass"));
      continue;
    }
    models.push_back(build_reference_model(arch, 1));
    models.back().eval();
  }
  for (const char* file : {"python-scripted-resnet18-w8.pt", "python-traced-resnet18-w8.pt"})
    models.push_back(load_model(std::string(JOULECUT_FIXTURES) + "/" + file).module);
  for (auto& m : models) {
    const auto groups = channel_groups(m);
    auto result = prune(m, {});
    std::int64_t before = 0, after = 0;
    for (const auto& p : m.parameters()) before += p.numel();
    for (const auto& p : result.module.parameters()) after += p.numel();
    INFO(result.report.summary);
    CHECK(after < before * 0.6);
    CHECK(result.module.forward({x}).toTensor().sizes() == at::IntArrayRef({2, 10}));
    // Still trainable, like its input.
    for (const auto& p : result.module.parameters()) CHECK(p.requires_grad());
  }
  // torchvision's ResNet-18: each stage's convolutions, downsample and the next block's
  // output are one group, the stem joins stage 1, and each block's inner conv is its own.
  const auto groups = channel_groups(models[models.size() - 2]);
  const ChannelGroup* stage2 = group_of(groups, "layer2.0.conv2");
  REQUIRE(stage2);
  CHECK(has(stage2->producers, "layer2.0.downsample.0"));
  CHECK(has(stage2->producers, "layer2.1.conv2"));
  CHECK(has(stage2->members, "layer3.0.conv1.weight[1]"));
  CHECK(has(group_of(groups, "conv1")->producers, "layer1.1.conv2"));
  CHECK(group_of(groups, "layer3.1.conv1")->producers.size() == 1);
}

TEST_CASE("a network channel pruning can't handle gets an error naming the op", "[prune]") {
  // The committed Python CNN has a grouped convolution (groups=2) and one output layer.
  const auto m = load_model(std::string(JOULECUT_FIXTURES) + "/python-scripted-cnn.pt").module;
  CHECK_THROWS_WITH(prune(m, {}), Contains("no channel group can be pruned") &&
                                      Contains("grouped convolution features.4 with groups=2"));
  Module odd = leaf("Odd");
  odd.register_module("a", conv(1, 4, 3));
  odd.register_module("b", conv(4, 4, 3));
  odd.define(R"(
def forward(self, x):
    return self.b.forward(torch.transpose(self.a.forward(x), 2, 3))
)");
  CHECK_THROWS_WITH(prune(odd, {}), Contains("aten::transpose after a"));
}

TEST_CASE("bad channel-pruning options are named", "[prune]") {
  ChannelPruneOptions o;
  o.ratio = 1;
  CHECK_THROWS_WITH(ChannelPrunePass(o), Contains("ratio=1 must be in [0, 1)"));
  o.ratio = 0.5;
  o.criterion = "random";
  CHECK_THROWS_WITH(ChannelPrunePass(o), Contains("criterion='random'"));
  o.criterion = "l1";
  o.layers.include = "nothing*";
  CHECK_THROWS_WITH(prune(branchy(), o), Contains("layer pattern 'nothing*' matches no layer"));
  CHECK_THROWS_WITH(parse_pipeline("prune-channel<ratio=0.3,round-to=0>"), Contains("round-to must be >= 1"));
  CHECK(parse_pipeline("prune-channel<ratio=0.3,criterion=bn-scale,round-to=8>")[0]->text() ==
        "prune-channel<ratio=0.3,criterion=bn-scale,round-to=8>");
}

TEST_CASE("channels that can't be located are blocked, not guessed", "[prune]") {
  // Concatenated with the model's input, whose width is unknown here: offsets are unknown.
  Module concat = leaf("ConcatInput");
  concat.register_module("a", conv(1, 4, 3));
  concat.register_module("b", conv(5, 4, 3));
  concat.register_module("fc", linear(4, 2));
  concat.define(R"(
def forward(self, x):
    y = self.b.forward(torch.cat([x, self.a.forward(x)], 1))
    return self.fc.forward(torch.flatten(torch.adaptive_avg_pool2d(y, [1, 1]), 1))
)");
  const auto groups = channel_groups(concat);
  CHECK_THAT(group_of(groups, "a")->blocked_by, Contains("unknown width"));
  CHECK(group_of(groups, "b")->blocked_by.empty());
  // Values computed inside a loop can't be followed either.
  Module loop = leaf("Loop");
  loop.register_module("a", conv(1, 4, 3));
  loop.register_module("b", conv(4, 4, 3));
  loop.register_module("c", conv(4, 2, 3));
  loop.define(R"(
def forward(self, x):
    h = self.a.forward(x)
    y = h
    for i in range(2):
        y = self.b.forward(h)
    return self.c.forward(y)
)");
  CHECK_THAT(group_of(channel_groups(loop), "b")->blocked_by, Contains("prim::Loop"));
  // A ratio too small to remove a channel is said, not done silently.
  ChannelPruneOptions tiny;
  tiny.ratio = 0.01;
  CHECK_THROWS_WITH(prune(branchy(), tiny), Contains("removes no channel"));
}
