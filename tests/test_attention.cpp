// Attention written out as plain ops (analysis/attention.h): on transformers made by Python
// PyTorch (scripted, traced, traced under no_grad), every Linear becomes a top-level node that
// passes can read, and the rewritten forward computes what PyTorch's forward computes.
#include <catch2/catch.hpp>

#include <ATen/ATen.h>

#include <string>
#include <vector>

#include "analysis/attention.h"
#include "joulecut/graph_stats.h"
#include "joulecut/quantize.h"
#include "prune/common.h"

using namespace joulecut;
using Catch::Matchers::Contains;

namespace {

struct Fixture {
  std::string file;
  std::size_t linears;  // nn.Linear modules plus packed attention projections
};

const std::vector<Fixture> kFixtures = {
    {"python-scripted-vit.pt", 9},          {"python-traced-vit.pt", 9},
    {"python-traced-nograd-vit.pt", 9},     {"python-scripted-encoder-post.pt", 9},
    {"python-traced-nograd-encoder-post.pt", 9}, {"python-scripted-encoder-pre.pt", 9},
    {"python-traced-nograd-encoder-pre.pt", 9},  {"python-scripted-bert.pt", 10},
};

torch::jit::Module load(const std::string& file) {
  torch::jit::Module m = torch::jit::load(std::string(JOULECUT_FIXTURES) + "/" + file);
  m.eval();
  return m;
}

std::vector<c10::IValue> inputs_for(const std::string& file, std::int64_t batch) {
  if (file.find("vit") != std::string::npos) return {at::rand({batch, 3, 16, 16})};
  const at::Tensor tokens = at::randint(0, 100, {batch, 16}, at::kLong);
  if (file.find("bert") == std::string::npos) return {tokens};
  at::Tensor mask = at::ones({batch, 16}, at::kLong);
  mask.narrow(1, 12, 4).zero_();  // the last four tokens are padding
  return {tokens, mask};
}

at::Tensor first_output(const c10::IValue& v) { return v.isTuple() ? v.toTuple()->elements()[0].toTensor() : v.toTensor(); }

int count_top_level(const torch::jit::Graph& graph, const char* op) {
  int n = 0;
  for (const auto* node : graph.nodes()) n += node->kind().toQualString() == std::string(op);
  return n;
}

}  // namespace

TEST_CASE("attention: written out as plain ops, every Linear at the top level, same outputs", "[attention]") {
  at::manual_seed(21);
  for (const auto& f : kFixtures) {
    INFO(f.file);
    torch::jit::Module model = load(f.file);
    CHECK(attention::has_attention(model));
    const auto inputs = inputs_for(f.file, 5);
    at::NoGradGuard no_grad;
    const at::Tensor expected = first_output(model.forward(inputs));
    auto graph = prune_detail::inlined_forward(model, "test", prune_detail::GraphUse::inference);
    CHECK(std::size_t(count_top_level(*graph, "aten::linear")) == f.linears);
    for (const auto* n : prune_detail::all_nodes(graph->block())) {
      INFO(n->kind().toQualString());
      CHECK(n->kind() != c10::Symbol::fromQualString("aten::_native_multi_head_attention"));
      CHECK(n->kind() != c10::Symbol::fromQualString("aten::_transformer_encoder_layer_fwd"));
      if (n->kind() == c10::aten::linear) CHECK(n->owningBlock() == graph->block());
    }
    torch::jit::Module rewritten = model.clone();
    prune_detail::replace_forward(rewritten, prune_detail::inlined_forward(rewritten, "test", prune_detail::GraphUse::inference));
    const at::Tensor got = first_output(rewritten.forward(inputs));
    REQUIRE(got.sizes() == expected.sizes());
    CHECK(at::allclose(got, expected, 1e-4, 1e-5));
  }
}

TEST_CASE("attention: MACs count the attention's products, whichever kernel PyTorch runs", "[attention]") {
  // Width 32, 4 heads of 8, 16 tokens: the scores and the mixing are 4 x 16 x 16 x 8 MACs each.
  const std::int64_t products = 2 * 4 * 16 * 16 * 8;
  std::int64_t scripted = 0;
  for (const char* file : {"python-scripted-encoder-post.pt", "python-traced-nograd-encoder-post.pt"}) {
    INFO(file);
    torch::jit::Module model = load(file);
    const auto stats = analyze_model(model, std::vector<at::Tensor>{at::randint(0, 100, {1, 16}, at::kLong)});
    int activation_products = 0;
    for (const auto& l : stats.layers)
      if (l.name.rfind("activation product", 0) == 0) {
        ++activation_products;
        CHECK(l.params == 0);
        CHECK(l.weight_shape.empty());
      }
    CHECK(activation_products == 4);  // two per layer
    // Per layer: Q/K/V 16 x 96 x 32, output 16 x 32 x 32, MLP 2 x 16 x 64 x 32; the head 4 x 32.
    const std::int64_t linears = 2 * (16 * 96 * 32 + 16 * 32 * 32 + 2 * 16 * 64 * 32) + 4 * 32;
    CHECK(stats.macs == linears + 2 * products);
    if (scripted == 0) scripted = stats.macs;
    else CHECK(stats.macs == scripted);
    // int8: the same work, each Linear counted once with its real output shape.
    TensorDataset train;
    train.description = "random (train)";
    train.images = at::randint(0, 100, {32, 16}, at::kLong);
    PassContext context;
    context.train = &train;
    context.progress = false;
    StaticQuantizeOptions options;
    options.samples = 32;
    torch::jit::Module q = StaticQuantizePass(options).run(model, context).module;
    const auto int8 = analyze_model(q, std::vector<at::Tensor>{at::randint(0, 100, {1, 16}, at::kLong)});
    CHECK(int8.macs == stats.macs);
    for (const auto& l : int8.layers) {
      INFO(l.name);
      if (!l.weight_shape.empty()) CHECK(l.output_shape.back() == l.weight_shape.front());
    }
  }
}

TEST_CASE("quantize-static: every Linear of a transformer int8, attention projections included", "[quantize][attention]") {
  at::manual_seed(22);
  for (const auto& f : kFixtures) {
    INFO(f.file);
    torch::jit::Module model = load(f.file);
    TensorDataset train;
    train.description = "random (train)";
    const auto sample = inputs_for(f.file, 128);
    train.images = sample[0].toTensor();
    if (sample.size() > 1) {
      train.more_inputs = {sample[1].toTensor()};
      train.input_names = {"input_ids", "attention_mask"};
    }
    PassContext context;
    context.train = &train;
    context.progress = false;
    StaticQuantizeOptions options;
    options.samples = 128;
    const auto result = StaticQuantizePass(options).run(model, context);
    INFO(result.report.summary);
    const std::size_t layers = f.linears + (f.file.find("vit") != std::string::npos ? 1 : 0);  // ViT's patch conv
    const std::string all = std::to_string(layers);
    CHECK_THAT(result.report.summary, Contains(all + " of " + all + " Conv2d/Linear layer(s) int8"));
    const auto inputs = inputs_for(f.file, 16);
    at::NoGradGuard no_grad;
    const at::Tensor expected = first_output(model.forward(inputs));
    torch::jit::Module q = result.module;
    const at::Tensor got = first_output(q.forward(inputs));
    const double cosine = at::cosine_similarity(got.flatten(1), expected.flatten(1), 1).min().item<double>();
    INFO("lowest cosine similarity " << cosine);
    CHECK(cosine >= 0.99);
  }
}
