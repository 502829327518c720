#include "joulecut/prune.h"

#include <ATen/ATen.h>

#include <cstdio>

#include "graph/layer_selection.h"
#include "graph/module_graph.h"
#include "prune/finetune.h"
#include "joulecut/error.h"
#include "joulecut/text.h"
#include "joulecut/train_loop.h"

namespace joulecut {
using namespace graph;
using namespace prune_detail;
namespace {

// The pruned weights stay zero while fine-tuning: masks are re-applied after every step.
void finetune_with_masks(torch::jit::Module& module, const std::vector<PrunableLayer>& layers, int epochs, double lr,
                         PassContext& context, PassReport& report, const std::string& pass) {
  if (epochs <= 0) return;
  std::vector<at::Tensor> weights;
  for (const auto& l : layers) weights.push_back(l.weight);
  finetune(module, epochs, lr, context, report, pass, "zeros kept by masks", KeepZeros(weights));
}

// Zeroes the smallest weights until each layer (or, `global`, all layers together) reaches
// `sparsity`. Weights already zero count as pruned, so a second call at a higher sparsity
// continues where the first stopped.
void prune_by_magnitude(const std::vector<PrunableLayer>& layers, double sparsity, bool global) {
  double global_threshold = 0;
  if (global) {
    std::vector<at::Tensor> magnitudes;
    for (const auto& l : layers) magnitudes.push_back(l.weight.abs().flatten());
    const at::Tensor all = at::cat(magnitudes);
    const auto k = std::int64_t(sparsity * double(all.numel()));
    global_threshold = k > 0 ? std::get<0>(all.kthvalue(k)).item<double>() : -1;
  }
  for (const auto& l : layers) {
    const at::Tensor magnitude = l.weight.abs().flatten();
    // Rank by magnitude, ties broken by position (stable), so exactly k weights go.
    const auto k = std::int64_t(sparsity * double(magnitude.numel()));
    at::Tensor mask = at::ones_like(magnitude);
    if (global) {
      mask = magnitude.gt(global_threshold).to(magnitude.scalar_type());
    } else if (k > 0) {
      const at::Tensor order = std::get<1>(magnitude.sort(/*stable=*/true, 0, false));
      mask.index_fill_(0, order.narrow(0, 0, k), 0);
    }
    l.weight.mul_(mask.view_as(l.weight));
  }
}

PassResult finish(torch::jit::Module module, PassReport report, const std::vector<PrunableLayer>& layers) {
  std::int64_t zeros = 0, total = 0;
  for (const auto& l : layers) {
    zeros += (l.weight == 0).sum().item<std::int64_t>();
    total += l.weight.numel();
  }
  report.summary = format("%.2f%% of %lld weights in %zu layers are zero", 100.0 * double(zeros) / double(total),
                          (long long)total, layers.size());
  report.notes.push_back(
      "no speedup expected: masked zeros (dense kernels still multiply them; a sparse runtime is needed)");
  module.eval();
  return {module, report};
}

}  // namespace

// ---- prune-magnitude ----------------------------------------------------------------------

MagnitudePrunePass::MagnitudePrunePass(MagnitudePruneOptions options) : options_(std::move(options)) {
  if (!(options_.sparsity >= 0 && options_.sparsity < 1))
    throw pass_error(MagnitudePrunePass::kName, "sparsity=" + number_text(options_.sparsity) + " must be in [0, 1)");
  options_table().check(options_);
  check_finetune(kName, options_.finetune_epochs);
  if (options_.steps < 1) throw pass_error(MagnitudePrunePass::kName, "steps must be >= 1");
  if (options_.steps > 1 && options_.finetune_epochs < options_.steps)
    throw pass_error(MagnitudePrunePass::kName,
                     "steps=" + std::to_string(options_.steps) +
                         " needs finetune-epochs >= steps (gradual pruning fine-tunes between steps)");
}

const OptionTable<MagnitudePruneOptions>& MagnitudePrunePass::options_table() {
  using O = MagnitudePruneOptions;
  static const OptionTable<O> table(MagnitudePrunePass::kName,
      rows<O>({{option("sparsity", "fraction of weights zeroed, in [0, 1)", &O::sparsity),
                choice_option("scope", "layer: each layer to the sparsity; global: one threshold for all layers", &O::scope,
                              {{"layer", "each layer to the sparsity"}, {"global", "one threshold for all layers"}})},
               selection_options<O>(),
               finetune_options<O>(),
               {option("steps", "prune gradually in this many steps, fine-tuning between them (cubic schedule)",
                       &O::steps)}}));
  return table;
}

MagnitudePruneOptions MagnitudePrunePass::parse(const PassOptionMap& map) { return options_table().parse(map); }

std::string MagnitudePrunePass::options_text() const { return options_table().print(options_); }

PassResult MagnitudePrunePass::run(const torch::jit::Module& input, PassContext& context) const {
  torch::jit::Module module = clone_for_transform(input);
  const auto layers = select_layers(module, options_.layers, name());
  PassReport report;
  report.pass = text();
  at::NoGradGuard no_grad;
  std::vector<double> before;
  for (const auto& l : layers) before.push_back(zero_fraction(l.weight));
  for (int step = 1; step <= options_.steps; ++step) {
    const double remaining = 1.0 - double(step) / double(options_.steps);
    const double sparsity = options_.sparsity * (1.0 - remaining * remaining * remaining);
    prune_by_magnitude(layers, sparsity, options_.scope == "global");
    // Epochs shared out between steps, the remainder going to the last ones.
    const int epochs = options_.finetune_epochs / options_.steps +
                       (step > options_.steps - options_.finetune_epochs % options_.steps ? 1 : 0);
    if (options_.steps > 1)
      report.notes.push_back(format("step %d/%d: sparsity %.2f%%, then %d fine-tuning epoch(s)", step, options_.steps,
                                    100 * sparsity, epochs));
    finetune_with_masks(module, layers, epochs, options_.finetune_lr, context, report, name());
  }
  for (std::size_t i = 0; i < layers.size(); ++i)
    report.layers.push_back({layers[i].name, "sparsity", before[i], zero_fraction(layers[i].weight), ""});
  return finish(module, report, layers);
}

// ---- prune-nm ---------------------------------------------------------------------------------

NMPrunePass::NMPrunePass(NMPruneOptions options) : options_(std::move(options)) {
  if (options_.m <= 0 || options_.n <= 0 || options_.n >= options_.m)
    throw pass_error(NMPrunePass::kName, "n=" + std::to_string(options_.n) + " m=" + std::to_string(options_.m) +
                                             ": need 0 < n < m (e.g. n=2,m=4)");
  check_finetune(kName, options_.finetune_epochs);
}

const OptionTable<NMPruneOptions>& NMPrunePass::options_table() {
  using O = NMPruneOptions;
  static const OptionTable<O> table(NMPrunePass::kName, rows<O>({{option("n", "weights kept per group", &O::n),
                                                          option("m", "group size along the input dimension", &O::m)},
                                                         selection_options<O>(),
                                                         finetune_options<O>()}));
  return table;
}

NMPruneOptions NMPrunePass::parse(const PassOptionMap& map) { return options_table().parse(map); }

std::string NMPrunePass::options_text() const { return options_table().print(options_); }

PassResult NMPrunePass::run(const torch::jit::Module& input, PassContext& context) const {
  torch::jit::Module module = clone_for_transform(input);
  auto layers = select_layers(module, options_.layers, name());
  PassReport report;
  report.pass = text();
  at::NoGradGuard no_grad;
  std::vector<PrunableLayer> pruned;
  for (const auto& l : layers) {
    const double before = zero_fraction(l.weight);
    // Input dimension: everything but the output channel ([out, in] or [out, in, kh, kw]).
    const std::int64_t in_flat = l.weight.numel() / l.weight.size(0);
    if (in_flat % options_.m != 0) {
      report.layers.push_back({l.name, "sparsity", before, before,
                               "skipped: " + std::to_string(in_flat) + " inputs per output is not a multiple of m=" +
                                   std::to_string(options_.m)});
      continue;
    }
    // Groups of M consecutive inputs: keep the N largest magnitudes (ties: lower index).
    const at::Tensor groups = l.weight.reshape({-1, options_.m});
    const at::Tensor order = std::get<1>(groups.abs().sort(/*stable=*/true, 1, /*descending=*/true));
    at::Tensor mask = at::zeros_like(groups);
    mask.scatter_(1, order.narrow(1, 0, options_.n), 1.0);
    l.weight.mul_(mask.view_as(l.weight));
    report.layers.push_back({l.name, "sparsity", before, zero_fraction(l.weight), ""});
    pruned.push_back(l);
  }
  if (pruned.empty())
    throw pass_error(NMPrunePass::kName,
                     "no selected layer has an input size divisible by m=" + std::to_string(options_.m));
  finetune_with_masks(module, pruned, options_.finetune_epochs, options_.finetune_lr, context, report, name());
  return finish(module, report, pruned);
}

}  // namespace joulecut
