// lower-sparse: Linear layers whose weights are mostly zero run on joulecut::sparse_linear,
// chosen layer by layer by timing both kernels here, at the batch size that matters.
#include <ATen/ATen.h>
#include <ATen/CPUGeneratorImpl.h>
#include <torch/csrc/jit/ir/ir.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <functional>

#include "io/root_attributes.h"
#include "prune/common.h"
#include "joulecut/error.h"
#include "joulecut/prune.h"
#include "joulecut/sparse.h"

namespace joulecut {
using namespace prune_detail;
namespace {

using torch::jit::Node;
using torch::jit::Value;

std::string format(const char* fmt, double a, double b = 0, double c = 0) {
  char text[200];
  std::snprintf(text, sizeof text, fmt, a, b, c);
  return text;
}

}  // namespace

LowerSparsePass::LowerSparsePass(SparseLoweringOptions options) : options_(std::move(options)) {
  if (!(options_.min_sparsity >= 0 && options_.min_sparsity < 1))
    throw UserError("lower-sparse: min-sparsity=" + number_text(options_.min_sparsity) + " must be in [0, 1)");
  if (options_.batch < 1) throw UserError("lower-sparse: batch must be >= 1");
  if (!(options_.min_speedup > 0)) throw UserError("lower-sparse: min-speedup must be > 0");
}

const OptionTable<SparseLoweringOptions>& LowerSparsePass::options_table() {
  using O = SparseLoweringOptions;
  static const OptionTable<O> table(
      "lower-sparse", {option("min-sparsity", "layers with fewer zeros are not timed", &O::min_sparsity),
                       option("batch", "the batch size the choice is timed at", &O::batch),
                       option("min-speedup", "lower a layer only where sparse is at least this much faster", &O::min_speedup),
                       option("include", "only layers matching these '|'-separated globs", &O::include),
                       option("exclude", "skip layers matching these '|'-separated globs", &O::exclude)});
  return table;
}

SparseLoweringOptions LowerSparsePass::parse(const PassOptionMap& map) { return options_table().parse(map); }

std::string LowerSparsePass::options_text() const { return options_table().print(options_); }

PassResult LowerSparsePass::run(const torch::jit::Module& input, PassContext& context) const {
  torch::jit::Module module = clone_for_transform(input);
  auto graph = inlined_forward(module, name(), GraphUse::inference);
  Value* self = graph->inputs()[0];
  std::map<std::string, at::Tensor> tensors;
  for (const auto& p : module.named_parameters(true)) tensors[p.name] = p.value;

  struct Candidate {
    Node* node;
    std::string weight, layer;
  };
  std::vector<Candidate> candidates;
  std::map<std::string, int> weight_uses;
  for (Node* n : nodes_of_kind(graph->block(), c10::aten::linear)) {
    const auto weight = attribute_path(n->input(1), self);
    if (!weight || !tensors.count(*weight) || tensors[*weight].dim() != 2) continue;
    candidates.push_back({n, *weight, weight->substr(0, weight->rfind('.'))});
  }
  count_reads(graph->block(), self, weight_uses);  // every read: a tied weight must stay dense
  if (candidates.empty())
    throw UserError("lower-sparse: the model has no Linear layer with a weight read from the module (aten::linear); "
                    "the sparse runtime covers Linear layers only");
  std::vector<std::string> names;
  for (const auto& c : candidates) names.push_back(c.layer);
  check_patterns({options_.include, options_.exclude, false}, names, name());

  PassReport report;
  report.pass = text();
  at::NoGradGuard no_grad;
  at::Generator gen = at::make_generator<at::CPUGeneratorImpl>(context.seed);
  int lowered = 0;
  for (const auto& c : candidates) {
    const at::Tensor w = tensors[c.weight];
    const double sparsity = zero_fraction(w);
    LayerChange change{c.layer, "latency_us", 0, 0, ""};
    if ((!options_.include.empty() && !matches_any(c.layer, options_.include)) || matches_any(c.layer, options_.exclude)) {
      change.note = "dense: not selected";
    } else if (sparsity < options_.min_sparsity) {
      change.note = format("dense: %.1f%% zeros, below min-sparsity", 100 * sparsity);
    } else if (weight_uses[c.weight] > 1) {
      change.note = "dense: weight shared by several calls";
    } else if (w.scalar_type() != at::kFloat) {
      change.note = "dense: not float32";
    } else {
      Value* bias_value = c.node->input(2);
      const auto bias_path = attribute_path(bias_value, self);
      c10::optional<at::Tensor> bias;
      if (bias_path && tensors.count(*bias_path)) bias = tensors[*bias_path];
      const bool bias_known = bias_value->type()->kind() == c10::TypeKind::NoneType || bias.has_value();
      const CsrWeight csr = to_csr(w);
      const at::Tensor x = at::randn({options_.batch, w.size(1)}, gen);
      const at::Tensor dense_out = at::linear(x, w, bias ? *bias : at::Tensor());
      const at::Tensor sparse_out = sparse_linear(x, csr.values, csr.columns, csr.row_offsets, bias, w.size(1));
      JOULECUT_ASSERT(at::allclose(dense_out, sparse_out, 1e-4, 1e-4), "sparse_linear disagrees with linear");
      const auto [dense_us, sparse_us] = interleaved_median_us([&] { at::linear(x, w, bias ? *bias : at::Tensor()); },
                                                      [&] { sparse_linear(x, csr.values, csr.columns, csr.row_offsets, bias, w.size(1)); });
      change.before = dense_us;
      const double speedup = dense_us / sparse_us;
      if (!bias_known || sparse_us * options_.min_speedup > dense_us) {
        change.after = dense_us;
        change.note = bias_known ? format("dense: %.1f%% zeros, sparse %.2fx (below min-speedup)", 100 * sparsity, speedup)
                                 : "dense: bias not read from the module";
      } else {
        change.after = sparse_us;
        change.note = format("sparse: %.1f%% zeros, %.2fx faster", 100 * sparsity, speedup);
        module.register_buffer(root_attribute_name(kCsrValues, c.layer), csr.values);
        module.register_buffer(root_attribute_name(kCsrColumns, c.layer), csr.columns);
        module.register_buffer(root_attribute_name(kCsrRowOffsets, c.layer), csr.row_offsets);
        torch::jit::WithInsertPoint guard(c.node);
        Value* values = graph->insertGetAttr(self, root_attribute_name(kCsrValues, c.layer));
        Value* columns = graph->insertGetAttr(self, root_attribute_name(kCsrColumns, c.layer));
        Value* rows = graph->insertGetAttr(self, root_attribute_name(kCsrRowOffsets, c.layer));
        Value* out = graph->insert(c10::Symbol::fromQualString("joulecut::sparse_linear"),
                                   {c.node->input(0), values, columns, rows, bias_value, w.size(1)});
        c.node->output()->replaceAllUsesWith(out);
        c.node->destroy();
        // The CSR buffers hold the weight now; the dense copy would only inflate the file.
        auto [owner, attribute] = owner_of(module, c.weight);
        owner.setattr(attribute, at::empty({0}));
        ++lowered;
      }
    }
    report.layers.push_back(change);
  }
  char summary[200];
  std::snprintf(summary, sizeof summary, "%d of %zu Linear layer(s) run on joulecut::sparse_linear (%s), chosen at batch %lld",
                lowered, candidates.size(), sparse_kernel_name(), (long long)options_.batch);
  report.summary = summary;
  if (lowered > 0) {
    replace_forward(module, graph);
    report.notes.push_back(
        "the output needs joulecut's op library: C++ programs link joulecut_ops; Python calls "
        "torch.ops.load_library(\"libjoulecut_ops.so\") before torch.jit.load");
  } else {
    report.notes.push_back("no layer lowered: no speedup expected here (masked zeros stay dense)");
  }
  module.eval();
  return {module, report};
}

}  // namespace joulecut
