// Attention written out as plain ops (analysis/attention.h): on transformers made by Python
// PyTorch (scripted, traced, traced under no_grad), every Linear becomes a top-level node that
// passes can read, and the rewritten forward computes what PyTorch's forward computes.
#include <catch2/catch.hpp>

#include <ATen/ATen.h>

#include <sstream>
#include <string>
#include <vector>

#include "graph/attention.h"
#include "joulecut/distill.h"
#include "joulecut/graph_stats.h"
#include "joulecut/prune.h"
#include "joulecut/quantize.h"
#include "graph/layer_selection.h"
#include "graph/module_graph.h"

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
    auto graph = graph::inlined_forward(model, "test", graph::GraphUse::inference);
    CHECK(std::size_t(count_top_level(*graph, "aten::linear")) == f.linears);
    for (const auto* n : graph::all_nodes(graph->block())) {
      INFO(n->kind().toQualString());
      CHECK(n->kind() != c10::Symbol::fromQualString("aten::_native_multi_head_attention"));
      CHECK(n->kind() != c10::Symbol::fromQualString("aten::_transformer_encoder_layer_fwd"));
      if (n->kind() == c10::aten::linear) CHECK(n->owningBlock() == graph->block());
    }
    torch::jit::Module rewritten = model.clone();
    graph::replace_forward(rewritten, graph::inlined_forward(rewritten, "test", graph::GraphUse::inference));
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
    bool says_fp32 = false;
    for (const auto& n : result.report.notes) says_fp32 = says_fp32 || n.find("LayerNorm, softmax") != std::string::npos;
    CHECK(says_fp32);
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

TEST_CASE("prune-heads: whole heads and MLP neurons out, the file runs in the new sizes", "[prune][heads]") {
  at::manual_seed(23);
  for (const char* file : {"python-scripted-vit.pt", "python-traced-nograd-vit.pt", "python-scripted-encoder-post.pt",
                           "python-traced-nograd-encoder-pre.pt", "python-scripted-bert.pt"}) {
    INFO(file);
    torch::jit::Module model = load(file);
    TensorDataset train;
    train.description = "random (train)";
    const auto sample = inputs_for(file, 64);
    train.images = sample[0].toTensor();
    if (sample.size() > 1) train.more_inputs = {sample[1].toTensor()};
    PassContext context;
    context.train = &train;
    context.progress = false;
    for (const char* criterion : {"l2", "activation"}) {
      INFO(criterion);
      HeadPruneOptions options;
      options.ratio = 0.5;
      options.neuron_ratio = 0.5;
      options.importance = criterion;
      options.samples = 64;
      const auto result = HeadPrunePass(options).run(model, context);
      INFO(result.report.summary);
      // Two attentions of 4 heads, two MLP blocks of 64 neurons.
      CHECK_THAT(result.report.summary, Contains("4 of 8 attention heads kept in 2 attention(s), 64 of 128 MLP neurons "
                                                 "kept in 2 block(s)"));
      torch::jit::Module pruned = result.module;
      // Each attention's projections shrink by half; the embedding width stays.
      for (const auto& p : pruned.named_parameters(true)) {
        if (p.name.find("in_proj_weight") != std::string::npos) CHECK(p.value.size(0) == 3 * 16);
        if (p.name.find("out_proj.weight") != std::string::npos) CHECK(p.value.size(1) == 16);
      }
      const auto inputs = inputs_for(file, 3);
      at::NoGradGuard no_grad;
      const at::Tensor before = first_output(model.forward(inputs));
      const at::Tensor after = first_output(pruned.forward(inputs));
      CHECK(after.sizes() == before.sizes());
      CHECK(at::isfinite(after).all().item<bool>());
      // Saved and loaded, the same numbers: nothing but plain ops and parameters.
      std::stringstream saved;
      pruned.save(saved);
      torch::jit::Module loaded = torch::jit::load(saved);
      CHECK(at::allclose(first_output(loaded.forward(inputs)), after));
    }
  }
}

TEST_CASE("prune-heads: keeping every head is exact, and bad ratios are refused", "[prune][heads]") {
  torch::jit::Module model = load("python-scripted-encoder-post.pt");
  PassContext context;
  context.progress = false;
  HeadPruneOptions options;
  options.ratio = 0.1;  // 4 heads: rounds to none removed
  options.neuron_ratio = 0.5;
  const auto result = HeadPrunePass(options).run(model, context);
  CHECK_THAT(result.report.summary, Contains("8 of 8 attention heads"));
  options.ratio = 0.9;  // 4 heads: none left
  options.neuron_ratio = 0;
  CHECK_THROWS_WITH(HeadPrunePass(options).run(model, context), Contains("leaves encoder.layers.0.self_attn with no head"));
  options.ratio = 0;
  CHECK_THROWS_WITH(HeadPrunePass(options), Contains("nothing to prune"));
  options.ratio = 0.5;
  options.importance = "activation";
  CHECK_THROWS_WITH(HeadPrunePass(options).run(model, context), Contains("needs training data"));
  // Channel pruning points a transformer to head pruning.
  CHECK_THROWS_WITH(ChannelPrunePass().run(model, context), Contains("with the prune-heads pass"));
  // A CNN has no attention.
  torch::jit::Module cnn = torch::jit::load(std::string(JOULECUT_FIXTURES) + "/python-scripted-cnn.pt");
  options.importance = "l2";
  CHECK_THROWS_WITH(HeadPrunePass(options).run(cnn, context), Contains("no nn.MultiheadAttention"));
}

TEST_CASE("distillation between transformers: logits and hidden-state hints on tokens", "[distill][attention]") {
  at::manual_seed(24);
  const torch::jit::Module teacher = load("python-scripted-vit.pt");
  TensorDataset train;
  train.description = "random (train)";
  train.images = at::rand({64, 3, 16, 16});
  train.labels = at::randint(0, 10, {64}, at::kLong);
  PassContext context;
  context.train = &train;
  context.progress = false;
  HeadPruneOptions narrow;
  narrow.neuron_ratio = 0.5;
  const torch::jit::Module student = HeadPrunePass(narrow).run(teacher, context).module;  // 2 heads, MLP 32
  DistillOptions o;
  o.loop.epochs = 1;
  o.loop.batch = 32;
  o.loop.learning_rate = 1e-3;
  o.loop.progress = false;
  const std::string block = "encoder.layers.encoder_layer_1.";
  o.hints = {parse_hint(block + "mlp.0:" + block + "mlp.0"), parse_hint(block + "mlp.3:" + block + "mlp.3")};
  const auto result = distill(teacher, student, train, nullptr, o);
  REQUIRE(result.notes.size() >= 2);
  CHECK_THAT(result.notes[0], Contains("projection 32 -> 64"));  // [N, 17, 32] tokens to [N, 17, 64]
  CHECK_THAT(result.notes[1], Contains("same width (32), no projection"));
  torch::jit::Module trained = result.student;
  const at::Tensor x = at::rand({2, 3, 16, 16});
  CHECK(trained.forward({x}).toTensor().sizes() == std::vector<std::int64_t>{2, 10});
  // A student whose sequence is shorter (8x8 patches: 5 tokens) cannot take a token hint.
  const torch::jit::Module short_student = load("python-scripted-vit-patch8.pt");
  o.hints = {parse_hint(block + "mlp.3:encoder.layers.encoder_layer_0.mlp.3")};
  CHECK_THROWS_WITH(distill(teacher, short_student, train, nullptr, o), Contains("sequence has 17 positions and the student's 5"));
}

TEST_CASE("unstructured and N:M pruning with the sparse runtime on transformer Linear layers", "[prune][heads]") {
  at::manual_seed(25);
  torch::jit::Module model = load("python-scripted-encoder-post.pt");
  PassContext context;
  context.progress = false;
  const auto inputs = inputs_for("python-scripted-encoder-post.pt", 3);  // [3, 16] tokens: Linear inputs [3, 16, 32]
  for (const bool nm : {false, true}) {
    INFO((nm ? "2:4" : "90% magnitude"));
    MagnitudePruneOptions magnitude;
    magnitude.sparsity = 0.9;
    magnitude.layers.include_first_last = true;
    NMPruneOptions two_of_four;
    two_of_four.layers.include_first_last = true;
    const PassResult pruned =
        nm ? NMPrunePass(two_of_four).run(model, context) : MagnitudePrunePass(magnitude).run(model, context);
    INFO(pruned.report.summary);
    // Every Linear of the attention and the MLP was reached, in_proj included.
    bool in_proj = false;
    for (const auto& l : pruned.report.layers) in_proj = in_proj || l.layer.find("self_attn") != std::string::npos;
    CHECK(in_proj);
    SparseLoweringOptions lowering;
    lowering.min_sparsity = 0.4;
    lowering.min_speedup = 1e-9;  // lower every sparse layer, whatever the clock says: this checks the results
    const PassResult lowered = LowerSparsePass(lowering).run(pruned.module, context);
    INFO(lowered.report.summary);
    CHECK_THAT(lowered.report.summary, Contains("9 of 9 Linear layer(s) run on joulecut::sparse_linear"));
    torch::jit::Module dense = pruned.module, sparse = lowered.module;
    at::NoGradGuard no_grad;
    CHECK(at::allclose(first_output(sparse.forward(inputs)), first_output(dense.forward(inputs)), 1e-4, 1e-5));
  }
}
