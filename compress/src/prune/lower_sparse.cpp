// lower-sparse: Linear layers whose weights are mostly zero run on joulecut::sparse_linear,
// chosen layer by layer by timing both kernels here, at the batch size that matters.
#include <ATen/ATen.h>
#include <ATen/CPUGeneratorImpl.h>
#include <torch/csrc/jit/ir/ir.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <functional>

#include "graph/root_attributes.h"
#include "graph/layer_selection.h"
#include "graph/module_graph.h"
#include "prune/finetune.h"
#include "joulecut/error.h"
#include "joulecut/prune.h"
#include "joulecut/sparse.h"
#include "joulecut/text.h"

namespace joulecut {
using namespace graph;
using namespace prune_detail;
namespace {

using torch::jit::Node;
using torch::jit::Value;

// A Linear layer whose weight is read from the module.
struct Candidate {
  Node* node;
  std::string weight, layer;
};

// The forward's aten::linear calls with a 2-D weight parameter of the module.
std::vector<Candidate> linear_candidates(const std::shared_ptr<torch::jit::Graph>& graph,
                                         std::map<std::string, at::Tensor>& tensors) {
  Value* self = graph->inputs()[0];
  std::vector<Candidate> candidates;
  for (Node* n : nodes_of_kind(graph->block(), c10::aten::linear)) {
    const auto weight = attribute_path(n->input(1), self);
    if (!weight || !tensors.count(*weight) || tensors[*weight].dim() != 2) continue;
    candidates.push_back({n, *weight, weight->substr(0, weight->rfind('.'))});
  }
  return candidates;
}

// Why the candidate stays dense without being timed ("dense: ..."); "" when it is timed.
std::string untimed_reason(const Candidate& c, const at::Tensor& w, double sparsity, const SparseLoweringOptions& options,
                           std::map<std::string, int>& weight_uses) {
  if ((!options.include.empty() && !matches_any(c.layer, options.include)) || matches_any(c.layer, options.exclude))
    return "dense: not selected";
  if (sparsity < options.min_sparsity) return format("dense: %.1f%% zeros, below min-sparsity", 100 * sparsity);
  if (weight_uses[c.weight] > 1) return "dense: weight shared by several calls";
  if (w.scalar_type() != at::kFloat) return "dense: not float32";
  return "";
}

// Replaces the candidate's aten::linear with joulecut::sparse_linear on CSR buffers of the module.
void lower_to_sparse(torch::jit::Module& module, const std::shared_ptr<torch::jit::Graph>& graph, const Candidate& c,
                     const CsrWeight& csr, Value* bias_value, std::int64_t in_features) {
  Value* self = graph->inputs()[0];
  module.register_buffer(root_attribute_name(kCsrValues, c.layer), csr.values);
  module.register_buffer(root_attribute_name(kCsrColumns, c.layer), csr.columns);
  module.register_buffer(root_attribute_name(kCsrRowOffsets, c.layer), csr.row_offsets);
  torch::jit::WithInsertPoint guard(c.node);
  Value* values = graph->insertGetAttr(self, root_attribute_name(kCsrValues, c.layer));
  Value* columns = graph->insertGetAttr(self, root_attribute_name(kCsrColumns, c.layer));
  Value* rows = graph->insertGetAttr(self, root_attribute_name(kCsrRowOffsets, c.layer));
  Value* out = graph->insert(c10::Symbol::fromQualString("joulecut::sparse_linear"),
                             {c.node->input(0), values, columns, rows, bias_value, in_features});
  c.node->output()->replaceAllUsesWith(out);
  c.node->destroy();
  // The CSR buffers hold the weight now; the dense copy would only inflate the file.
  auto [owner, attribute] = owner_of(module, c.weight);
  owner.setattr(attribute, at::empty({0}));
}

// Times both kernels on the candidate at options.batch and lowers it where sparse is at least
// min-speedup faster; fills `change` (latencies, note). True when lowered.
bool time_and_lower(torch::jit::Module& module, const std::shared_ptr<torch::jit::Graph>& graph, const Candidate& c,
                    std::map<std::string, at::Tensor>& tensors, double sparsity, const SparseLoweringOptions& options,
                    const PassContext& context, at::Generator& gen, LayerChange& change) {
  Value* self = graph->inputs()[0];
  const at::Tensor w = tensors[c.weight];
  Value* bias_value = c.node->input(2);
  const auto bias_path = attribute_path(bias_value, self);
  c10::optional<at::Tensor> bias;
  if (bias_path && tensors.count(*bias_path)) bias = tensors[*bias_path];
  const bool bias_known = bias_value->type()->kind() == c10::TypeKind::NoneType || bias.has_value();
  const CsrWeight csr = to_csr(w);
  const at::Tensor x = at::randn({options.batch, w.size(1)}, gen);
  const at::Tensor dense_out = at::linear(x, w, bias ? *bias : at::Tensor());
  const at::Tensor sparse_out = sparse_linear(x, csr.values, csr.columns, csr.row_offsets, bias, w.size(1));
  JOULECUT_ASSERT(at::allclose(dense_out, sparse_out, 1e-4, 1e-4), "sparse_linear disagrees with linear");
  const PairTiming timing = context.timer().compare(
      "layer " + c.layer + ": dense vs sparse", [&] { at::linear(x, w, bias ? *bias : at::Tensor()); },
      [&] { sparse_linear(x, csr.values, csr.columns, csr.row_offsets, bias, w.size(1)); }, 0.3);
  const double dense_us = timing.a_us, sparse_us = timing.b_us;
  change.before = dense_us;
  const double speedup = dense_us / sparse_us;
  if (!bias_known || sparse_us * options.min_speedup > dense_us) {
    change.after = dense_us;
    change.note = bias_known ? format("dense: %.1f%% zeros, sparse %.2fx (below min-speedup)", 100 * sparsity, speedup)
                             : "dense: bias not read from the module";
    return false;
  }
  change.after = sparse_us;
  change.note = format("sparse: %.1f%% zeros, %.2fx faster", 100 * sparsity, speedup);
  lower_to_sparse(module, graph, c, csr, bias_value, w.size(1));
  return true;
}

}  // namespace

LowerSparsePass::LowerSparsePass(SparseLoweringOptions options) : options_(std::move(options)) {
  if (!(options_.min_sparsity >= 0 && options_.min_sparsity < 1))
    throw pass_error(LowerSparsePass::kName,
                     "min-sparsity=" + number_text(options_.min_sparsity) + " must be in [0, 1)");
  if (options_.batch < 1) throw pass_error(LowerSparsePass::kName, "batch must be >= 1");
  if (!(options_.min_speedup > 0)) throw pass_error(LowerSparsePass::kName, "min-speedup must be > 0");
}

const OptionTable<SparseLoweringOptions>& LowerSparsePass::options_table() {
  using O = SparseLoweringOptions;
  static const OptionTable<O> table(LowerSparsePass::kName, {option("min-sparsity", "layers with fewer zeros are not timed", &O::min_sparsity),
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
  const std::vector<Candidate> candidates = linear_candidates(graph, tensors);
  std::map<std::string, int> weight_uses;
  count_reads(graph->block(), self, weight_uses);  // every read: a tied weight must stay dense
  if (candidates.empty())
    throw pass_error(LowerSparsePass::kName,
                     "the model has no Linear layer with a weight read from the module (aten::linear); "
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
    change.note = untimed_reason(c, w, sparsity, options_, weight_uses);
    if (change.note.empty() && time_and_lower(module, graph, c, tensors, sparsity, options_, context, gen, change))
      ++lowered;
    report.layers.push_back(change);
  }
  report.summary = format("%d of %zu Linear layer(s) run on joulecut::sparse_linear (%s), chosen at batch %lld", lowered,
                          candidates.size(), sparse_kernel_name(), (long long)options_.batch);
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
