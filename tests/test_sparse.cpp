// The sparse runtime: joulecut::sparse_linear against dense Linear, and the lower-sparse pass.
#include <catch2/catch.hpp>

#include <ATen/ATen.h>

#include "joulecut/error.h"
#include "joulecut/graph_stats.h"
#include "joulecut/model.h"
#include "joulecut/models.h"
#include "joulecut/prune.h"
#include "joulecut/sparse.h"
#include "temp_dir.h"

using namespace joulecut;
using Catch::Matchers::Contains;

namespace {
at::Tensor sparse_weight(std::int64_t out, std::int64_t in, double sparsity) {
  return at::randn({out, in}) * at::rand({out, in}).ge(sparsity);
}
bool graph_calls(torch::jit::Module& m, const std::string& op) {
  const auto nodes = m.get_method("forward").graph()->nodes();
  return std::any_of(nodes.begin(), nodes.end(), [&](const torch::jit::Node* n) { return n->kind().toQualString() == op; });
}
}  // namespace

TEST_CASE("sparse_linear computes what linear computes", "[sparse]") {
  at::manual_seed(11);
  for (std::int64_t batch : {1, 3, 8, 64}) {
    const at::Tensor w = sparse_weight(37, 50, 0.8), b = at::randn({37}), x = at::randn({batch, 50});
    const CsrWeight csr = to_csr(w);
    CHECK(csr.values.numel() == (w != 0).sum().item<std::int64_t>());
    CHECK(at::allclose(sparse_linear(x, csr.values, csr.columns, csr.row_offsets, b, 50), at::linear(x, w, b), 1e-5, 1e-5));
    CHECK(at::allclose(sparse_linear(x, csr.values, csr.columns, csr.row_offsets, c10::nullopt, 50), at::linear(x, w), 1e-5,
                       1e-5));
  }
  // Leading dimensions are kept, an all-zero row gives the bias, an empty batch works.
  const at::Tensor w = sparse_weight(6, 10, 0.5).index_fill(0, at::tensor({std::int64_t(2)}), 0), b = at::randn({6});
  const CsrWeight csr = to_csr(w);
  const at::Tensor x = at::randn({2, 3, 10});
  CHECK(at::allclose(sparse_linear(x, csr.values, csr.columns, csr.row_offsets, b, 10), at::linear(x, w, b), 1e-5, 1e-5));
  CHECK(sparse_linear(at::zeros({0, 10}), csr.values, csr.columns, csr.row_offsets, b, 10).sizes() ==
        at::IntArrayRef({0, 6}));
  CHECK_THROWS_WITH(sparse_linear(at::randn({2, 9}), csr.values, csr.columns, csr.row_offsets, b, 10),
                    Contains("does not end in 10 features"));
  CHECK_THROWS_WITH(sparse_linear(at::randn({2, 10}, at::kDouble), csr.values, csr.columns, csr.row_offsets, b, 10),
                    Contains("float32"));
  CHECK_THROWS_WITH(sparse_linear(at::randn({2, 10}), csr.values, csr.columns, csr.row_offsets.narrow(0, 0, 3), b, 10),
                    Contains("row offsets do not match"));
  // A malformed file must not make the kernel read out of bounds.
  const at::Tensor bad_columns = csr.columns.clone().fill_(10);
  CHECK_THROWS_WITH(sparse_linear(at::randn({2, 10}), csr.values, bad_columns, csr.row_offsets, b, 10),
                    Contains("outside [0, 10)"));
}

TEST_CASE("lower-sparse runs sparse layers on joulecut::sparse_linear and computes the same", "[sparse]") {
  at::manual_seed(12);
  auto mlp = build_reference_model("mlp", 1);
  mlp.eval();
  PassContext context;
  context.progress = false;
  MagnitudePruneOptions prune;
  prune.sparsity = 0.9;
  prune.layers.include_first_last = true;
  auto pruned = MagnitudePrunePass(prune).run(mlp, context).module;
  SparseLoweringOptions options;
  options.min_speedup = 1e-9;  // lower every sparse layer, whatever the timing says
  auto result = LowerSparsePass(options).run(pruned, context);
  INFO(result.report.summary);
  CHECK_THAT(result.report.summary, Contains("3 of 3 Linear layer(s)"));
  CHECK(graph_calls(result.module, "joulecut::sparse_linear"));
  CHECK_FALSE(graph_calls(pruned, "joulecut::sparse_linear"));  // clone, then transform
  const at::Tensor x = at::randn({5, 1, 28, 28});
  auto reference = pruned;
  const at::Tensor expected = reference.forward({x}).toTensor();
  CHECK(at::allclose(result.module.forward({x}).toTensor(), expected, 1e-4, 1e-4));
  // The dense copies are gone: the file holds the CSR weights only.
  for (const auto& p : result.module.named_parameters(true))
    if (p.name.find(".weight") != std::string::npos) CHECK(p.value.numel() == 0);
  TempDir dir;
  save_model(result.module, std::nullopt, dir.file("sparse.pt"));
  auto loaded = load_model(dir.file("sparse.pt")).module;
  CHECK(at::allclose(loaded.forward({x}).toTensor(), expected, 1e-4, 1e-4));
  // MACs count stored weights only: 10% of 784*300 + 300*100 + 100*10, per image.
  const auto stats = analyze_model(loaded, at::zeros({2, 1, 28, 28}));
  std::int64_t nonzero = 0;
  for (const auto& p : pruned.named_parameters(true))
    if (p.name.find(".weight") != std::string::npos) nonzero += (p.value != 0).sum().item<std::int64_t>();
  CHECK(stats.macs == 2 * nonzero);
  CHECK(stats.parameters == nonzero + 300 + 100 + 10);  // CSR weights count as parameters
  REQUIRE(stats.layers.size() == 3);
  CHECK(stats.layers[0].name == "fc1");
}

TEST_CASE("lower-sparse says when it lowers nothing, and refuses models without Linear layers", "[sparse]") {
  auto mlp = build_reference_model("mlp", 1);
  PassContext context;
  context.progress = false;
  auto result = LowerSparsePass(SparseLoweringOptions{}).run(mlp, context);  // dense weights: below min-sparsity
  CHECK_THAT(result.report.summary, Contains("0 of 3"));
  CHECK_THAT(result.report.notes.back(), Contains("no layer lowered"));
  CHECK_THAT(result.report.layers[0].note, Contains("below min-sparsity"));
  torch::jit::Module conv("ConvOnly");
  conv.register_parameter("weight", at::randn({4, 1, 3, 3}), false);
  conv.define("def forward(self, x):\n    return torch.conv2d(x, self.weight)\n");
  CHECK_THROWS_WITH(LowerSparsePass(SparseLoweringOptions{}).run(conv, context), Contains("no Linear layer"));
  SparseLoweringOptions bad;
  bad.min_sparsity = 1;
  CHECK_THROWS_WITH(LowerSparsePass(bad), Contains("min-sparsity=1 must be in [0, 1)"));
  CHECK_THROWS_WITH(parse_pipeline("lower-sparse<include=nope>")[0]->run(mlp, context), Contains("matches no layer"));
}
