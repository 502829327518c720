#include <catch2/catch.hpp>

#include <ATen/ATen.h>

#include "joulecut/error.h"
#include "joulecut/model.h"
#include "joulecut/models.h"
#include "joulecut/pass.h"
#include "joulecut/prune.h"
#include "noise_data.h"
#include "temp_dir.h"

using namespace joulecut;
using Catch::Matchers::Contains;

namespace {
at::Tensor weight(const torch::jit::Module& m, const std::string& layer) {
  for (const auto& p : m.named_parameters(true))
    if (p.name == layer + ".weight") return p.value;
  FAIL("no layer " << layer);
  return {};
}
double zeros(const at::Tensor& t) { return (t == 0).sum().item<double>() / double(t.numel()); }
}  // namespace

TEST_CASE("pipelines parse and print back identically", "[pass]") {
  const std::string text = "prune-magnitude<sparsity=0.8,scope=global,exclude=fc3|conv1>,prune-nm<n=1,m=8>,prune-nm";
  const auto passes = parse_pipeline(text);
  REQUIRE(passes.size() == 3);
  CHECK(print_pipeline(passes) == text);
  CHECK(print_pipeline(parse_pipeline(print_pipeline(passes))) == text);
  // Defaults are not printed: the canonical text names only what differs.
  CHECK(parse_pipeline(" prune-magnitude < sparsity = 0.5 > ")[0]->text() == "prune-magnitude");
  CHECK(parse_pipeline("prune-nm<n=1,m=4>")[0]->text() == "prune-nm<n=1>");
}

TEST_CASE("bad pipelines and options are named", "[pass]") {
  CHECK_THROWS_WITH(parse_pipeline("prune-magic"), Contains("unknown pass 'prune-magic'") && Contains("prune-nm"));
  CHECK_THROWS_WITH(parse_pipeline("prune-magnitude<spars=0.5>"), Contains("unknown option 'spars'"));
  CHECK_THROWS_WITH(parse_pipeline("prune-magnitude<sparsity=1>"), Contains("must be in [0, 1)"));
  CHECK_THROWS_WITH(parse_pipeline("prune-magnitude<sparsity=-0.1>"), Contains("must be in [0, 1)"));
  CHECK_THROWS_WITH(parse_pipeline("prune-magnitude<sparsity=lots>"), Contains("not a number"));
  CHECK_THROWS_WITH(parse_pipeline("prune-nm<n=4,m=4>"), Contains("need 0 < n < m"));
  CHECK_THROWS_WITH(parse_pipeline("prune-nm<n=2"), Contains("unbalanced"));
  CHECK_THROWS_WITH(parse_pipeline(""), Contains("empty pipeline"));
  CHECK_THROWS_WITH(parse_pipeline("prune-nm,,prune-nm"), Contains("empty pass"));
}

TEST_CASE("magnitude pruning per layer: exact sparsity, edges kept, input untouched", "[prune]") {
  const auto model = build_reference_model("lenet5", 1);
  const auto before = weight(model, "fc1").clone();
  PassContext context;
  MagnitudePruneOptions options;
  options.sparsity = 0.75;
  const auto result = MagnitudePrunePass(options).run(model, context);
  CHECK(at::equal(weight(model, "fc1"), before));  // clone, then transform
  CHECK(zeros(weight(result.module, "conv1")) == 0);  // first layer excluded by default
  CHECK(zeros(weight(result.module, "fc3")) == 0);    // last layer excluded by default
  for (const char* layer : {"conv2", "fc1", "fc2"}) {
    INFO(layer);
    const auto w = weight(result.module, layer);
    CHECK(zeros(w) == Approx(0.75).margin(1.0 / double(w.numel())));
  }
  // The smallest magnitudes went: every kept weight is at least as large as every pruned one.
  const auto w = weight(result.module, "fc1");
  const auto kept_min = before.abs().masked_select(w != 0).min().item<float>();
  const auto dropped_max = before.abs().masked_select(w == 0).max().item<float>();
  CHECK(kept_min >= dropped_max);
  CHECK(result.report.layers.size() == 3);
  CHECK_THAT(result.report.notes.back(), Contains("no speedup expected: masked zeros"));
  // Idempotent: pruning again to the same sparsity changes nothing.
  const auto again = MagnitudePrunePass(options).run(result.module, context);
  for (const char* layer : {"conv2", "fc1", "fc2"}) CHECK(at::equal(weight(again.module, layer), weight(result.module, layer)));
}

TEST_CASE("magnitude pruning, global scope and layer selection", "[prune]") {
  const auto model = build_reference_model("mlp", 1);
  PassContext context;
  MagnitudePruneOptions options;
  options.sparsity = 0.5;
  options.scope = "global";
  options.layers.include_first_last = true;
  const auto result = MagnitudePrunePass(options).run(model, context);
  double zero_count = 0, total = 0;
  for (const char* layer : {"fc1", "fc2", "fc3"}) {
    const auto w = weight(result.module, layer);
    zero_count += (w == 0).sum().item<double>();
    total += double(w.numel());
  }
  CHECK(zero_count / total == Approx(0.5).margin(1e-3));
  // Layers with larger weights (smaller fan-in) keep more of them under one threshold.
  CHECK(zeros(weight(result.module, "fc1")) > zeros(weight(result.module, "fc3")));

  MagnitudePruneOptions only;
  only.sparsity = 0.5;
  only.layers.include = "fc3";
  const auto selected = MagnitudePrunePass(only).run(model, context);
  CHECK(zeros(weight(selected.module, "fc1")) == 0);
  CHECK(zeros(weight(selected.module, "fc3")) == Approx(0.5));
  only.layers.include = "conv*";
  CHECK_THROWS_WITH(MagnitudePrunePass(only).run(model, context), Contains("'conv*' matches no layer") && Contains("fc1"));
}

TEST_CASE("a model without prunable layers is refused", "[prune]") {
  torch::jit::Module m("Identity");
  m.define("def forward(self, x):\n    return x\n");
  PassContext context;
  CHECK_THROWS_WITH(MagnitudePrunePass().run(m, context), Contains("no prunable layer"));
}

TEST_CASE("N:M keeps the N largest of every M inputs", "[prune]") {
  const auto model = build_reference_model("lenet5", 2);
  PassContext context;
  const auto result = NMPrunePass().run(model, context);  // 2:4
  // conv2's input is 6 x 5 x 5 = 150, not a multiple of 4: skipped and said so.
  bool conv2_skipped = false;
  for (const auto& l : result.report.layers)
    if (l.layer == "conv2") conv2_skipped = l.note.find("not a multiple of m=4") != std::string::npos;
  CHECK(conv2_skipped);
  const auto before = weight(model, "fc1").reshape({-1, 4});
  const auto after = weight(result.module, "fc1").reshape({-1, 4});
  CHECK(at::all((after != 0).sum(1) == 2).item<bool>());
  // Per group, the kept magnitudes are the two largest.
  const auto kept_min = std::get<0>(before.abs().masked_fill(after == 0, INFINITY).min(1));
  const auto dropped_max = std::get<0>(before.abs().masked_fill(after != 0, -1).max(1));
  CHECK(at::all(kept_min >= dropped_max).item<bool>());
}

TEST_CASE("pruned models save, load and run; fine-tuning keeps the zeros", "[prune][train]") {
  TempDir dir;
  const auto model = build_reference_model("mlp", 1);
  auto train = take_first(load_dataset({}, Split::train), 2000);
  PassContext context;
  context.train = &train;
  context.progress = false;
  MagnitudePruneOptions options;
  options.sparsity = 0.9;
  options.finetune_epochs = 1;
  const auto result = MagnitudePrunePass(options).run(model, context);
  CHECK(zeros(weight(result.module, "fc2")) == Approx(0.9).margin(1e-3));
  CHECK_THAT(result.report.notes.front(), Contains("fine-tuned 1 epoch"));
  save_model(result.module, std::nullopt, dir.file("p.pt"));
  auto loaded = load_model(dir.file("p.pt"));
  at::NoGradGuard no_grad;
  const auto x = at::randn({2, 1, 28, 28});
  auto pruned = result.module;
  CHECK(at::allclose(loaded.module.forward({x}).toTensor(), pruned.forward({x}).toTensor()));
  PassContext without_data;
  CHECK_THROWS_WITH(MagnitudePrunePass(options).run(model, without_data), Contains("needs training data"));
}

TEST_CASE("gradual magnitude pruning follows the cubic schedule and ends at the target", "[prune]") {
  at::manual_seed(31);
  const TensorDataset data = noise_dataset(128);
  PassContext context;
  context.progress = false;
  context.train = &data;
  MagnitudePruneOptions o;
  o.sparsity = 0.9;
  o.steps = 2;
  o.finetune_epochs = 3;
  o.layers.include_first_last = true;
  auto model = build_reference_model("mlp", 1);
  const auto result = MagnitudePrunePass(o).run(model, context);
  for (const auto& l : result.report.layers) CHECK(l.after == Approx(0.9).margin(1e-4));
  // 0.9 * (1 - (1 - 1/2)^3) = 78.75% first, with 1 of the 3 epochs; then 90% with 2.
  CHECK_THAT(result.report.notes[0], Contains("step 1/2: sparsity 78.75%, then 1 fine-tuning epoch(s)"));
  CHECK_THAT(result.report.notes[2], Contains("step 2/2: sparsity 90.00%, then 2 fine-tuning epoch(s)"));
  CHECK(parse_pipeline("prune-magnitude<finetune-epochs=4,steps=4>")[0]->text() ==
        "prune-magnitude<finetune-epochs=4,steps=4>");
  CHECK_THROWS_WITH(parse_pipeline("prune-magnitude<steps=3>"), Contains("needs finetune-epochs >= steps"));
  CHECK_THROWS_WITH(parse_pipeline("prune-magnitude<steps=0>"), Contains("steps must be >= 1"));
}
