// Structured channel pruning. The forward graph is inlined, then every tensor that carries
// channels is given a layout: which "channel spaces" make up its channel dimension. Ops that
// tie channels together (residual adds, depthwise convolutions, BatchNorm) unite spaces;
// concatenation lays spaces side by side; flatten-to-linear spreads each channel over a run of
// features. Each united set of spaces is a group, pruned as one (as Torch-Pruning's DepGraph
// does, but read from TorchScript, so no knowledge of the model's classes is needed).
#include <ATen/ATen.h>
#include <torch/csrc/jit/ir/ir.h>
#include <torch/csrc/jit/passes/inliner.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <map>
#include <numeric>
#include <optional>
#include <set>
#include <unordered_map>

#include "joulecut/error.h"
#include "joulecut/prune.h"
#include "joulecut/text.h"
#include "graph/attention.h"
#include "prune/channel_graph.h"
#include "prune/channel_rewrite.h"
#include "graph/layer_selection.h"
#include "graph/module_graph.h"
#include "prune/finetune.h"

namespace joulecut {
using namespace graph;
using namespace prune_detail;
using namespace channel_detail;
namespace {

at::Tensor channel_importance(const Space& g, const Analyzer& analyzer, const std::string& criterion,
                              std::string* note) {
  at::Tensor score = at::zeros({g.channels}, at::kDouble);
  auto add_normalized = [&](const at::Tensor& s) {
    const at::Tensor d = s.to(at::kDouble);
    score += d / (d.mean() + 1e-12);  // producers of different scales count alike
  };
  if (criterion == "bn-scale" && !g.bn_scales.empty()) {
    for (const auto& s : g.bn_scales)
      add_normalized(analyzer.tensor(s.param).narrow(0, s.offset, g.channels).abs());
    return score;
  }
  if (criterion == "bn-scale")
    *note = "no BatchNorm in this group: ranked by l1";
  for (const auto& w : g.producer_weights) {
    const at::Tensor flat = analyzer.tensor(w).flatten(1);
    add_normalized(criterion == "l2" ? flat.pow(2).sum(1).sqrt() : flat.abs().sum(1));
  }
  return score;
}

std::int64_t kept_count(std::int64_t channels, double ratio, int round_to) {
  std::int64_t kept = channels - std::int64_t(std::llround(ratio * double(channels)));
  kept = std::max<std::int64_t>(kept, 1);
  if (round_to > 1) kept = (kept + round_to - 1) / round_to * round_to;
  return std::min(kept, channels);
}

// Why a group keeps all its channels ("kept: ..."), or "" when it is pruned: blocked (its first
// blocker goes to `blockers`), or left out by include/exclude.
std::string skip_reason(const Space& g, const LayerSelection& selection, std::vector<std::string>& blockers) {
  if (!g.blocked.empty()) {
    blockers.push_back(g.blocked[0]);
    return "kept: " + join(g.blocked, "; ");
  }
  bool included = selection.include.empty(), excluded = false;
  for (const auto& p : g.producers) {
    included = included || matches_any(p, selection.include);
    excluded = excluded || matches_any(p, selection.exclude);
  }
  if (!included || excluded) return excluded ? "kept: excluded" : "kept: not included";
  return "";
}

// The channels each group keeps, with a report row per group.
struct Selection {
  std::map<int, at::Tensor> kept;  // group root -> kept channel indices (ascending)
  std::vector<std::string> blockers;
  std::int64_t channels_before = 0, channels_after = 0;
};

Selection select_channels(const std::map<int, Space>& groups, const Analyzer& analyzer, const ChannelPruneOptions& options,
                          PassReport& report) {
  Selection out;
  for (const auto& [root, g] : groups) {
    if (g.producers.empty()) continue;
    const std::string layers = join(g.producers, "+");
    out.channels_before += g.channels;
    const std::string skip = skip_reason(g, options.layers, out.blockers);
    if (!skip.empty()) {
      out.channels_after += g.channels;
      report.layers.push_back({layers, "channels", double(g.channels), double(g.channels), skip});
      continue;
    }
    std::string note;
    const std::int64_t k = kept_count(g.channels, options.ratio, options.round_to);
    if (k == g.channels) {
      out.channels_after += g.channels;
      report.layers.push_back({layers, "channels", double(g.channels), double(g.channels),
                               "kept: ratio and rounding remove no channel here"});
      out.blockers.push_back("a ratio (" + number_text(options.ratio) + ") that removes no channel of " + layers);
      continue;
    }
    const at::Tensor score = channel_importance(g, analyzer, options.criterion, &note);
    const at::Tensor order = std::get<1>(score.sort(/*stable=*/true, 0, /*descending=*/true));
    out.kept[root] = std::get<0>(order.narrow(0, 0, k).sort());
    out.channels_after += k;
    report.layers.push_back({layers, "channels", double(g.channels), double(k), note});
  }
  return out;
}

// Why no group can be pruned, for the error (": blocked by ...", and so on).
std::string why_nothing_pruned(std::vector<std::string> blockers, const PassReport& report,
                               const torch::jit::Module& input) {
  std::sort(blockers.begin(), blockers.end());
  blockers.erase(std::unique(blockers.begin(), blockers.end()), blockers.end());
  std::string why;
  if (!blockers.empty()) why = ": blocked by " + join(blockers, "; ");
  else if (report.layers.empty()) why = ": no layer's output channels reach another layer the pass can follow";
  else why = " (include/exclude left none)";
  // Attention mixes features across heads: channel groups do not describe it, prune-heads does.
  if (attention::has_attention(input))
    why += "; for transformers, prune attention heads and MLP neurons with " + option_ref("pass:prune-heads");
  return why;
}

}  // namespace

std::vector<ChannelGroup> channel_groups(const torch::jit::Module& module) {
  Analyzer analyzer(module);
  std::vector<ChannelGroup> out;
  for (auto& [root, g] : analyzer.groups()) {
    if (g.producers.empty()) continue;
    ChannelGroup group;
    group.producers = g.producers;
    group.channels = g.channels;
    group.blocked_by = join(g.blocked, "; ");
    for (const auto& s : g.slices) group.members.push_back(s.param + "[" + std::to_string(s.dim) + "]");
    out.push_back(group);
  }
  return out;
}

ChannelPrunePass::ChannelPrunePass(ChannelPruneOptions options) : options_(std::move(options)) {
  if (!(options_.ratio >= 0 && options_.ratio < 1))
    throw pass_error(ChannelPrunePass::kName, "ratio=" + number_text(options_.ratio) + " must be in [0, 1)");
  // The table's choices refuse other criteria in pipeline text; options built in C++ are checked
  // here, in the words this pass has always used for them.
  if (options_.criterion != "l1" && options_.criterion != "l2" && options_.criterion != "bn-scale")
    throw pass_error(ChannelPrunePass::kName, "criterion='" + options_.criterion + "' must be l1, l2 or bn-scale");
  if (options_.round_to < 1) throw pass_error(ChannelPrunePass::kName, "round-to must be >= 1");
  if (options_.layers.include_first_last)
    throw pass_error(ChannelPrunePass::kName, "first-last does not apply (inputs and outputs are never pruned)");
  check_finetune(kName, options_.finetune_epochs);
}

const OptionTable<ChannelPruneOptions>& ChannelPrunePass::options_table() {
  using O = ChannelPruneOptions;
  static const OptionTable<O> table(ChannelPrunePass::kName,
      rows<O>({{option("ratio", "fraction of each group's channels removed, in [0, 1)", &O::ratio),
                choice_option("criterion", "l1 or l2 (filter norms), or bn-scale (|gamma| of the group's BatchNorms)",
                              &O::criterion, {{"l1", "filter norms"}, {"l2", "filter norms"}, {"bn-scale", "|gamma| of the group's BatchNorms"}}),
                option("round-to", "round kept channels up to a multiple of this (8: SIMD-friendly)", &O::round_to)},
               selection_options<O>(),
               finetune_options<O>()}));
  return table;
}

ChannelPruneOptions ChannelPrunePass::parse(const PassOptionMap& map) { return options_table().parse(map); }

std::string ChannelPrunePass::options_text() const { return options_table().print(options_); }

PassResult ChannelPrunePass::run(const torch::jit::Module& input, PassContext& context) const {
  torch::jit::Module module = clone_for_transform(input);
  prunable_layers(module, name());  // throws when there is nothing to prune at all
  Analyzer analyzer(module);
  auto groups = analyzer.groups();

  std::vector<std::string> producers;
  for (const auto& [root, g] : groups) producers.insert(producers.end(), g.producers.begin(), g.producers.end());
  check_patterns(options_.layers, producers, name());

  PassReport report;
  report.pass = text();
  at::NoGradGuard no_grad;
  const std::int64_t parameters_before = count_parameters(module);
  const Selection selection = select_channels(groups, analyzer, options_, report);
  if (selection.kept.empty())
    throw pass_error(ChannelPrunePass::kName,
                     "no channel group can be pruned" + why_nothing_pruned(selection.blockers, report, input));
  slice_parameters(module, analyzer, groups, selection.kept);
  patch_channel_counts(module, analyzer, selection.kept);

  const std::int64_t parameters_after = count_parameters(module);
  report.summary = format("%lld of %lld channels kept in %zu pruned group(s); parameters %lld -> %lld (%.1f%%)",
                          (long long)selection.channels_after, (long long)selection.channels_before, selection.kept.size(),
                          (long long)parameters_before, (long long)parameters_after,
                          100.0 * double(parameters_after) / double(parameters_before));
  finetune(module, options_.finetune_epochs, options_.finetune_lr, context, report, name(), "structured (no masks)");
  report.notes.push_back("layers are physically smaller: dense kernels do less work");
  module.eval();
  return {module, report};
}

}  // namespace joulecut
