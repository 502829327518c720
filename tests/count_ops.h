#pragma once
// How many nodes of one kind ("aten::conv2d", "joulecut::int8_linear") a module's forward graph
// holds at its top level: what a rewrite test checks it replaced.
#include <torch/script.h>

#include <string>

inline int count_ops(const torch::jit::Module& m, const std::string& op) {
  int n = 0;
  for (const auto* node : m.get_method("forward").graph()->nodes()) n += node->kind().toQualString() == op;
  return n;
}
