#pragma once
// Internal to prune-channel: the module rewritten to the channels each group keeps, once they
// are chosen. Both steps read the groups' layout from the Analyzer that found them.
#include <ATen/ATen.h>
#include <torch/script.h>

#include <map>

#include "prune/channel_graph.h"

namespace joulecut::channel_detail {

// Every parameter a kept group slices loses the group's other channels, in its own range (a
// parameter sliced by several groups, a convolution after a concatenation, loses each group's
// channels). `kept`: group root -> kept channel indices, ascending. Precondition: under no_grad.
void slice_parameters(torch::jit::Module& module, const Analyzer& analyzer, const std::map<int, Space>& groups,
                      const std::map<int, at::Tensor>& kept);

// Group counts and reshape sizes follow the new widths; the rewritten graph becomes `module`'s
// forward.
void patch_channel_counts(torch::jit::Module& module, Analyzer& analyzer, const std::map<int, at::Tensor>& kept);

}  // namespace joulecut::channel_detail
