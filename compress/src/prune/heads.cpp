// prune-heads: whole attention heads and MLP hidden neurons out of transformers (see prune.h).
//
// The forward graph is inlined with attention written out in plain ops (analysis/attention.h),
// so each attention is one aten::linear on `in_proj_weight` and one on `out_proj.weight`, and an
// MLP block is aten::linear -> elementwise activation -> aten::linear. A pruned feature is the
// same index range in the producer's rows and the consumer's columns; the graph computes the
// head count from the projection's rows, so it follows the new widths with no constant patched.
#include <ATen/ATen.h>
#include <torch/csrc/jit/ir/ir.h>
#include <torch/csrc/jit/passes/dead_code_elimination.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <map>
#include <optional>
#include <set>

#include "graph/attention.h"
#include "joulecut/error.h"
#include "joulecut/model.h"
#include "joulecut/progress.h"
#include "joulecut/prune.h"
#include "joulecut/text.h"
#include "graph/layer_selection.h"
#include "graph/module_graph.h"
#include "prune/finetune.h"

namespace joulecut {
using namespace graph;
using namespace prune_detail;
namespace {

using torch::jit::Graph;
using torch::jit::Node;
using torch::jit::Value;

// Features that pass through unchanged per position between the two Linear layers of an MLP.
bool is_elementwise(const Node* n) {
  static const std::set<std::string> ops = {"aten::relu",     "aten::relu_",      "aten::gelu",    "aten::silu",
                                            "aten::silu_",    "aten::hardtanh",   "aten::hardtanh_", "aten::hardswish",
                                            "aten::hardswish_", "aten::dropout",  "aten::dropout_", "aten::sigmoid",
                                            "aten::tanh"};
  return ops.count(n->kind().toQualString()) > 0;
}

// A pair of layers whose shared features are pruned together: the producer's output rows and
// the consumer's input columns.
struct FeatureGroup {
  std::string name;                  // the attention module, or the MLP's first layer
  bool attention = false;
  std::string producer_weight;       // [features (x3 for Q, K, V), in]
  std::optional<std::string> producer_bias;
  std::string consumer_weight;       // [out, features]
  std::int64_t units = 0, unit_size = 1;  // heads of head_dim, or neurons of 1
  Value* consumer_input = nullptr;   // what importance=activation observes
};

struct Analysis {
  std::shared_ptr<Graph> graph;
  std::vector<FeatureGroup> groups;
  std::vector<std::string> skipped;  // MLP-like pairs left alone, with why
};

Analysis analyze(const torch::jit::Module& module, const std::string& pass) {
  if (!module.find_method("forward")) throw UserError(pass + ": the model has no forward method");
  Analysis a;
  a.graph = module.get_method("forward").graph()->copy();
  std::vector<attention::AttentionSite> sites;
  attention::canonical_inline(a.graph, module, &sites);
  specialize_constant_attributes(a.graph, module, GraphUse::training);
  Value* self = a.graph->inputs()[0];
  std::map<std::string, at::Tensor> tensors;
  for (const auto& p : module.named_parameters(true)) tensors[p.name] = p.value;
  std::map<std::string, int> reads;
  count_reads(a.graph->block(), self, reads);
  std::map<std::string, Node*> linear_by_weight;
  for (Node* n : a.graph->nodes())
    if (n->kind() == c10::aten::linear)
      if (const auto w = attribute_path(n->input(1), self)) linear_by_weight[*w] = n;
  auto bias_of = [&](Node* linear) -> std::optional<std::string> {
    if (linear->input(2)->type()->kind() == c10::TypeKind::NoneType) return std::nullopt;
    return attribute_path(linear->input(2), self);
  };

  for (const auto& site : sites) {
    FeatureGroup g;
    g.name = site.path;
    g.attention = true;
    g.producer_weight = site.path + ".in_proj_weight";
    g.consumer_weight = site.path + ".out_proj.weight";
    g.units = site.heads;
    g.unit_size = site.head_dim;
    if (!linear_by_weight.count(g.producer_weight) || !linear_by_weight.count(g.consumer_weight) ||
        reads[g.producer_weight] != 1 || reads[g.consumer_weight] != 1)
      continue;  // the same module called twice: its weights are shared
    g.producer_bias = bias_of(linear_by_weight[g.producer_weight]);
    g.consumer_input = linear_by_weight[g.consumer_weight]->input(0);
    a.groups.push_back(g);
  }
  std::set<std::string> in_attention;
  for (const auto& g : a.groups) in_attention.insert(g.consumer_weight);

  for (const auto& [weight, first] : linear_by_weight) {
    if (weight.size() >= 15 && weight.compare(weight.size() - 15, 15, ".in_proj_weight") == 0) continue;
    Value* v = first->output();
    while (v->uses().size() == 1 && is_elementwise(v->uses()[0].user) && v->uses()[0].offset == 0)
      v = v->uses()[0].user->output();
    if (v->uses().size() != 1 || v == first->output()) continue;  // no activation between: not an MLP block
    Node* second = v->uses()[0].user;
    if (second->kind() != c10::aten::linear || v->uses()[0].offset != 0) continue;
    const auto second_weight = attribute_path(second->input(1), self);
    const std::string name = weight.substr(0, weight.rfind('.'));
    if (!second_weight || in_attention.count(*second_weight)) continue;
    if (reads[weight] != 1 || reads[*second_weight] != 1) {
      a.skipped.push_back(name + ": weights shared by several readers");
      continue;
    }
    FeatureGroup g;
    g.name = name;
    g.producer_weight = weight;
    g.producer_bias = bias_of(first);
    g.consumer_weight = *second_weight;
    g.units = tensors.count(weight) ? tensors[weight].size(0) : 0;
    g.consumer_input = second->input(0);
    if (g.units > 0) a.groups.push_back(g);
  }
  return a;
}

// Rows of the producer that belong to unit `u` (a head spans head_dim rows in each of Q, K, V).
std::vector<std::int64_t> producer_rows(const FeatureGroup& g, const std::vector<std::int64_t>& units) {
  std::vector<std::int64_t> rows;
  const std::int64_t chunks = g.attention ? 3 : 1, width = g.units * g.unit_size;
  for (std::int64_t c = 0; c < chunks; ++c)
    for (std::int64_t u : units)
      for (std::int64_t k = 0; k < g.unit_size; ++k) rows.push_back(c * width + u * g.unit_size + k);
  return rows;
}

std::vector<std::int64_t> consumer_columns(const FeatureGroup& g, const std::vector<std::int64_t>& units) {
  std::vector<std::int64_t> columns;
  for (std::int64_t u : units)
    for (std::int64_t k = 0; k < g.unit_size; ++k) columns.push_back(u * g.unit_size + k);
  return columns;
}

at::Tensor index_tensor(const std::vector<std::int64_t>& v) { return at::tensor(v, at::kLong); }

// Per unit: the producer rows' and consumer columns' L2 norms, multiplied (a unit matters when it
// both computes something and is read with weight).
at::Tensor weight_importance(const FeatureGroup& g, const std::map<std::string, at::Tensor>& tensors) {
  const at::Tensor producer = tensors.at(g.producer_weight).detach().to(at::kDouble);
  const at::Tensor consumer = tensors.at(g.consumer_weight).detach().to(at::kDouble);
  at::Tensor score = at::zeros({g.units}, at::kDouble);
  for (std::int64_t u = 0; u < g.units; ++u) {
    const at::Tensor rows = producer.index_select(0, index_tensor(producer_rows(g, {u})));
    const at::Tensor columns = consumer.index_select(1, index_tensor(consumer_columns(g, {u})));
    score[u] = rows.norm().item<double>() * columns.norm().item<double>();
  }
  return score;
}

// Per unit: the mean |consumer input| over the calibration samples, times the consumer columns'
// norm: how much the unit adds to the next layer's output.
// Precondition: `module` is the one `a` was read from (the method added runs on its type); the
// method is removed again before returning.
std::map<std::string, at::Tensor> activation_importance(torch::jit::Module& module, const Analysis& a,
                                                        const TensorDataset& data, std::int64_t samples, bool progress) {
  auto graph = a.graph->copy();
  // Values are matched by position: the copy numbers its nodes as the analysis graph does.
  std::map<Value*, std::size_t> position;
  {
    std::size_t i = 0;
    for (Node* n : a.graph->nodes())
      for (Value* v : n->outputs()) position[v] = i++;
  }
  std::vector<Value*> copy_values;
  for (Node* n : graph->nodes())
    for (Value* v : n->outputs()) copy_values.push_back(v);
  std::vector<Value*> observed;
  for (const auto& g : a.groups) observed.push_back(copy_values.at(position.at(g.consumer_input)));
  add_method_returning(module, graph, observed, "joulecut_head_importance");
  struct RemoveMethod {
    torch::jit::Module& module;
    ~RemoveMethod() { remove_method(module, "joulecut_head_importance"); }
  } remove{module};
  auto method = module.get_method("joulecut_head_importance");

  std::vector<at::Tensor> sums(a.groups.size());
  std::int64_t rows = 0;
  const std::int64_t total = std::min<std::int64_t>(samples, data.size()), batch = 64;
  ProgressBar bar("prune-heads: activations", total, progress);
  at::NoGradGuard no_grad;
  for (std::int64_t start = 0; start < total; start += batch) {
    const std::int64_t count = std::min(batch, total - start);
    c10::IValue result;
    try {
      result = method(data.inputs(start, count));
    } catch (const std::exception& e) {
      throw pass_error(HeadPrunePass::kName,
                       "the model does not run on the training samples (" + torch_error_summary(e) + ")");
    }
    const auto elements = result.toTuple()->elements();
    for (std::size_t k = 0; k < elements.size(); ++k) {
      const at::Tensor t = elements[k].toTensor().detach().to(at::kDouble);
      const at::Tensor flat = t.reshape({-1, t.size(-1)}).abs();
      if (k == 0) rows += flat.size(0);
      sums[k] = sums[k].defined() ? sums[k] + flat.sum(0) : flat.sum(0);
    }
    bar.update(start + count, std::to_string(start + count) + " samples");
  }
  bar.finish(std::to_string(total) + " samples");
  std::map<std::string, at::Tensor> tensors;
  for (const auto& p : module.named_parameters(true)) tensors[p.name] = p.value;
  std::map<std::string, at::Tensor> out;
  for (std::size_t k = 0; k < a.groups.size(); ++k) {
    const auto& g = a.groups[k];
    const at::Tensor mean = sums[k] / double(std::max<std::int64_t>(rows, 1));
    const at::Tensor consumer = tensors.at(g.consumer_weight).detach().to(at::kDouble);
    at::Tensor score = at::zeros({g.units}, at::kDouble);
    for (std::int64_t u = 0; u < g.units; ++u) {
      const auto columns = index_tensor(consumer_columns(g, {u}));
      score[u] = mean.index_select(0, columns).sum().item<double>() * consumer.index_select(1, columns).norm().item<double>();
    }
    out[g.name] = score;
  }
  return out;
}

void replace_tensor(torch::jit::Module& module, const std::string& path, const at::Tensor& value) {
  auto [owner, attribute] = owner_of(module, path);
  const bool grad = owner.attr(attribute).toTensor().requires_grad();
  owner.setattr(attribute, value.contiguous().detach().requires_grad_(grad));
}

}  // namespace

HeadPrunePass::HeadPrunePass(HeadPruneOptions options) : options_(std::move(options)) {
  if (!(options_.ratio >= 0 && options_.ratio < 1))
    throw pass_error(HeadPrunePass::kName, "ratio=" + number_text(options_.ratio) + " must be in [0, 1)");
  if (!(options_.neuron_ratio >= 0 && options_.neuron_ratio < 1))
    throw pass_error(HeadPrunePass::kName, "neuron-ratio=" + number_text(options_.neuron_ratio) + " must be in [0, 1)");
  if (options_.ratio == 0 && options_.neuron_ratio == 0)
    throw pass_error(HeadPrunePass::kName, "ratio and neuron-ratio are both 0: nothing to prune");
  options_table().check(options_);
  if (options_.samples < 1) throw pass_error(HeadPrunePass::kName, "samples must be >= 1");
  check_finetune(kName, options_.finetune_epochs);
}

const OptionTable<HeadPruneOptions>& HeadPrunePass::options_table() {
  using O = HeadPruneOptions;
  static const OptionTable<O> table(HeadPrunePass::kName,
      rows<O>({{option("ratio", "fraction of each attention's heads removed, in [0, 1)", &O::ratio),
                option("neuron-ratio", "fraction of each MLP block's hidden neurons removed, in [0, 1)", &O::neuron_ratio),
                choice_option("importance", "l2 (weight norms) or activation (mean |activation| on training samples)",
                              &O::importance, {{"l2", "weight norms"}, {"activation", "mean |activation| on training samples"}}),
                option("samples", "with importance=activation: the first N training samples", &O::samples)},
               finetune_options<O>()}));
  return table;
}

HeadPruneOptions HeadPrunePass::parse(const PassOptionMap& map) { return options_table().parse(map); }

std::string HeadPrunePass::options_text() const { return options_table().print(options_); }

PassResult HeadPrunePass::run(const torch::jit::Module& input, PassContext& context) const {
  torch::jit::Module module = clone_for_transform(input);
  module.eval();
  Analysis analysis = analyze(module, name());
  std::map<std::string, at::Tensor> tensors;
  for (const auto& p : module.named_parameters(true)) tensors[p.name] = p.value;
  int attentions = 0, mlps = 0;
  for (const auto& g : analysis.groups) (g.attention ? attentions : mlps)++;
  if (options_.ratio > 0 && attentions == 0 && (options_.neuron_ratio == 0 || mlps == 0))
    throw pass_error(HeadPrunePass::kName,
                     "the model has no nn.MultiheadAttention this pass can read (torch.nn's attention, "
                     "self-attention, in evaluation mode)" +
                         std::string(mlps > 0 ? "; it has MLP blocks: use ratio=0 with neuron-ratio" : ""));
  if (options_.neuron_ratio > 0 && mlps == 0 && options_.ratio == 0)
    throw pass_error(HeadPrunePass::kName,
                     "the model has no MLP block (Linear -> activation -> Linear) to prune neurons from");

  std::map<std::string, at::Tensor> activation_scores;
  if (options_.importance == "activation") {
    if (!context.train)
      throw pass_error(HeadPrunePass::kName,
                       "importance=activation needs training data (" + option_ref("DataSource::data") + ")");
    activation_scores = activation_importance(module, analysis, *context.train, options_.samples, context.progress);
  }

  PassReport report;
  report.pass = text();
  at::NoGradGuard no_grad;
  const std::int64_t parameters_before = count_parameters(module);
  std::int64_t heads_before = 0, heads_after = 0, neurons_before = 0, neurons_after = 0;
  struct Plan {
    const FeatureGroup* group;
    std::vector<std::int64_t> kept;
  };
  std::vector<Plan> plans;
  for (const auto& g : analysis.groups) {
    const double ratio = g.attention ? options_.ratio : options_.neuron_ratio;
    const std::int64_t kept = g.units - std::int64_t(std::llround(ratio * double(g.units)));
    (g.attention ? heads_before : neurons_before) += g.units;
    const char* what = g.attention ? "heads" : "neurons";
    if (kept < 1)
      throw pass_error(HeadPrunePass::kName, std::string(g.attention ? "ratio=" : "neuron-ratio=") +
                                                 number_text(ratio) + " leaves " + g.name + " with no " +
                                                 (g.attention ? "head" : "neuron") + " (it has " +
                                                 std::to_string(g.units) + "); use a ratio below " +
                                                 number_text(1.0 - 0.5 / double(g.units)));
    (g.attention ? heads_after : neurons_after) += kept;
    if (kept == g.units) {
      report.layers.push_back({g.name, what, double(g.units), double(g.units),
                               ratio == 0 ? "kept: ratio 0" : "kept: the ratio removes none"});
      continue;
    }
    const at::Tensor score =
        options_.importance == "activation" ? activation_scores.at(g.name) : weight_importance(g, tensors);
    const at::Tensor order = std::get<1>(score.sort(/*stable=*/true, 0, /*descending=*/true));
    at::Tensor chosen = std::get<0>(order.narrow(0, 0, kept).sort());
    std::vector<std::int64_t> units(chosen.data_ptr<std::int64_t>(), chosen.data_ptr<std::int64_t>() + kept);
    std::string kept_text;
    if (g.attention)
      for (std::int64_t u : units) kept_text += (kept_text.empty() ? "kept heads " : ", ") + std::to_string(u);
    report.layers.push_back({g.name, what, double(g.units), double(kept), kept_text});
    plans.push_back({&g, units});
  }
  if (plans.empty())
    throw pass_error(HeadPrunePass::kName, "the ratios remove nothing (each layer keeps all its units)");

  for (const auto& [g, units] : plans) {
    const at::Tensor rows = index_tensor(producer_rows(*g, units));
    replace_tensor(module, g->producer_weight, tensors.at(g->producer_weight).index_select(0, rows));
    if (g->producer_bias) replace_tensor(module, *g->producer_bias, tensors.at(*g->producer_bias).index_select(0, rows));
    const at::Tensor columns = index_tensor(consumer_columns(*g, units));
    replace_tensor(module, g->consumer_weight, tensors.at(g->consumer_weight).index_select(1, columns));
    if (g->attention) {
      auto [attention, unused] = owner_of(module, g->producer_weight);
      if (attention.hasattr("num_heads")) attention.setattr("num_heads", std::int64_t(units.size()));
    }
  }
  replace_forward(module, analysis.graph);

  const std::int64_t parameters_after = count_parameters(module);
  report.summary = format("%lld of %lld attention heads kept in %d attention(s), %lld of %lld MLP neurons kept in %d block(s); "
                          "parameters %lld -> %lld (%.1f%%)",
                          (long long)heads_after, (long long)heads_before, attentions, (long long)neurons_after,
                          (long long)neurons_before, mlps, (long long)parameters_before, (long long)parameters_after,
                          100.0 * double(parameters_after) / double(parameters_before));
  for (const auto& s : analysis.skipped) report.notes.push_back("MLP left whole: " + s);
  report.notes.push_back("importance: " + std::string(options_.importance == "l2"
                                                          ? "L2 norm of each unit's producer rows times its consumer columns"
                                                          : "mean |activation| into the consumer times its column norm, on " +
                                                                std::to_string(std::min<std::int64_t>(
                                                                    options_.samples, context.train->size())) +
                                                                " training samples"));
  report.notes.push_back("forward is attention written out in plain ops (loads in stock LibTorch and PyTorch); the "
                         "submodules' own forward methods still expect the unpruned sizes");
  finetune(module, options_.finetune_epochs, options_.finetune_lr, context, report, name(), "structured (no masks)");
  module.eval();
  return {module, report};
}

}  // namespace joulecut
