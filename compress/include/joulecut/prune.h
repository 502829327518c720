#pragma once
// Pruning passes. Prunable layers are the module's parameters named "*.weight" with two or
// more dimensions (Linear and Conv weights), in module order, found by name, so they work on
// models scripted or traced by Python as well as ours.
#include <string>

#include "joulecut/pass.h"

namespace joulecut {

// Which layers a pruning pass touches.
struct LayerSelection {
  std::string include;              // '|'-separated glob patterns on layer names; "" = all
  std::string exclude;              // '|'-separated glob patterns
  bool include_first_last = false;  // the first and last layers are the most sensitive
};

// Unstructured L1-magnitude pruning: zeroes the smallest weights.
struct MagnitudePruneOptions {
  double sparsity = 0.5;        // fraction of weights zeroed, in [0, 1)
  std::string scope = "layer";  // "layer": each layer to `sparsity`; "global": one threshold
  LayerSelection layers;
  int finetune_epochs = 0;      // > 0: fine-tune on context.train with the zeros kept
  double finetune_lr = 0.01;
};

// N:M semi-structured sparsity: in every group of M consecutive weights along the input
// dimension, keep the N largest.
struct NMPruneOptions {
  int n = 2;
  int m = 4;
  LayerSelection layers;
  int finetune_epochs = 0;
  double finetune_lr = 0.01;
};

class MagnitudePrunePass final : public Pass {
 public:
  explicit MagnitudePrunePass(MagnitudePruneOptions options = {});
  static MagnitudePruneOptions parse(const PassOptionMap& options);
  std::string name() const override { return "prune-magnitude"; }
  std::string options_text() const override;
  PassResult run(const torch::jit::Module& module, PassContext& context) const override;

 private:
  MagnitudePruneOptions options_;
};

class NMPrunePass final : public Pass {
 public:
  explicit NMPrunePass(NMPruneOptions options = {});
  static NMPruneOptions parse(const PassOptionMap& options);
  std::string name() const override { return "prune-nm"; }
  std::string options_text() const override;
  PassResult run(const torch::jit::Module& module, PassContext& context) const override;

 private:
  NMPruneOptions options_;
};

}  // namespace joulecut
