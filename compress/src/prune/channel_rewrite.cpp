// prune-channel's rewrite: parameters sliced to the kept channels, and the graph's channel
// counts (group counts, reshape sizes) patched to match.
#include "prune/channel_rewrite.h"

#include <torch/csrc/jit/ir/ir.h>

#include <string>
#include <utility>
#include <vector>

#include "graph/module_graph.h"

namespace joulecut::channel_detail {

void slice_parameters(torch::jit::Module& module, const Analyzer& analyzer, const std::map<int, Space>& groups,
                      const std::map<int, at::Tensor>& kept) {
  // Keep-masks per (parameter, dimension), so a parameter sliced by several groups (a
  // convolution after a concatenation) loses each group's channels in its own range.
  std::map<std::pair<std::string, std::int64_t>, at::Tensor> masks;
  for (const auto& [root, indices] : kept) {
    const Space& g = groups.at(root);
    const at::Tensor removed = at::ones({g.channels}, at::kBool).index_fill_(0, indices, false);
    for (const auto& s : g.slices) {
      const at::Tensor& t = analyzer.tensor(s.param);
      auto& mask = masks[{s.param, s.dim}];
      if (!mask.defined()) mask = at::ones({t.size(s.dim)}, at::kBool);
      const at::Tensor spread = removed.repeat_interleave(s.factor);
      mask.narrow(0, s.offset * s.factor, g.channels * s.factor).masked_fill_(spread, false);
    }
  }
  std::map<std::string, at::Tensor> replaced;
  for (const auto& [key, mask] : masks) {
    const auto& [param, dim] = key;
    at::Tensor current = replaced.count(param) ? replaced[param] : analyzer.tensor(param);
    replaced[param] = current.index_select(dim, mask.nonzero().flatten());
  }
  for (const auto& [param, value] : replaced) {
    auto [owner, attribute] = graph::owner_of(module, param);
    const bool grad = analyzer.tensor(param).requires_grad();
    owner.setattr(attribute, value.contiguous().detach().requires_grad_(grad));
  }
}

void patch_channel_counts(torch::jit::Module& module, Analyzer& analyzer, const std::map<int, at::Tensor>& kept) {
  auto kept_channels = [&](const std::vector<Segment>& segments) {
    std::int64_t total = 0;
    for (const auto& s : segments) {
      const auto it = kept.find(analyzer.find(s.space));
      total += it == kept.end() ? s.channels : it->second.numel();
    }
    return total;
  };
  auto forward = analyzer.graph();
  for (const auto& p : analyzer.patches()) {
    const std::int64_t value = kept_channels(p.segments) * p.factor;
    torch::jit::WithInsertPoint guard(p.node);
    Value* constant;
    if (p.list_index < 0) {
      constant = forward->insertConstant(value);
    } else {
      auto list = torch::jit::toIValue(p.node->input(p.input))->toIntVector();
      list[p.list_index] = value;
      constant = forward->insertConstant(list);
    }
    p.node->replaceInput(p.input, constant);
  }
  graph::replace_forward(module, forward);
}

}  // namespace joulecut::channel_detail
