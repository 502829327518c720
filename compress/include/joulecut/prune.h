#pragma once
// Pruning passes. Prunable layers are the module's parameters named "*.weight" with two or
// more dimensions (Linear and Conv weights), in module order, found by name, so they work on
// models scripted or traced by Python as well as ours.
#include <cstdint>
#include <string>
#include <vector>

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
  // > 1: gradual pruning (Zhu & Gupta 2017): sparsity rises along s * (1 - (1 - i/steps)^3)
  // over `steps` prunings, the fine-tuning epochs shared out between them (needs
  // finetune-epochs >= steps).
  int steps = 1;
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

// Structured channel pruning: removes whole output channels of Conv2d/Linear layers, with the
// matching BatchNorm entries and the consumers' input channels, so layers physically shrink.
// Channels that must go together (residual adds, concatenation, depthwise convolutions,
// flatten-to-linear) are found by analysing the TorchScript graph: see ChannelGroup.
struct ChannelPruneOptions {
  double ratio = 0.5;            // fraction of each group's channels removed, in [0, 1)
  std::string criterion = "l1";  // l1 | l2 (filter norms) | bn-scale (|gamma| of the group's BatchNorms)
  int round_to = 1;              // kept channels rounded up to a multiple of this (8: SIMD-friendly)
  // include/exclude match the layers producing a group's channels: a group is pruned when
  // one of its producers is included and none is excluded. first-last does not apply: the
  // model's inputs and outputs are never pruned.
  LayerSelection layers;
  int finetune_epochs = 0;
  double finetune_lr = 0.01;
};

// One set of channels that must be pruned together.
struct ChannelGroup {
  std::vector<std::string> producers;  // layers whose output channels these are ("layer1.conv1")
  std::vector<std::string> members;    // every parameter sliced with them, "name[dim]"
  std::int64_t channels = 0;
  std::string blocked_by;              // why it can't be pruned ("" when it can)
};

// The channel groups of `module`'s forward graph (inlined). Groups without a producer (the
// model's input) are left out. Throws UserError when the graph can't be read.
std::vector<ChannelGroup> channel_groups(const torch::jit::Module& module);

class ChannelPrunePass final : public Pass {
 public:
  explicit ChannelPrunePass(ChannelPruneOptions options = {});
  // Its options, declared once (pass_options.h).
  static const OptionTable<ChannelPruneOptions>& options_table();
  static ChannelPruneOptions parse(const PassOptionMap& options);
  static constexpr const char* kName = "prune-channel";  // the registry's name (passes.def)
  std::string name() const override { return kName; }
  std::string options_text() const override;
  // The result's forward is the inlined, rewritten graph (group counts of depthwise
  // convolutions and reshape sizes follow the new widths); submodules keep their attributes.
  bool needs_training_data() const override { return options_.finetune_epochs > 0; }
  PassResult run(const torch::jit::Module& module, PassContext& context) const override;

 private:
  ChannelPruneOptions options_;
};

// Sparse execution: replaces each sufficiently sparse Linear layer with joulecut::sparse_linear
// (CSR weight, Eigen kernel; see joulecut/sparse.h) where, timed on this machine at `batch`,
// the sparse kernel beats the dense one by `min_speedup`. Lowered layers keep their bias; their
// dense weight is emptied (the CSR buffers, on the root module, hold it). Run it last: the
// lowered layers can no longer be trained or pruned.
struct SparseLoweringOptions {
  double min_sparsity = 0.5;   // layers with fewer zeros are not timed
  std::int64_t batch = 64;     // the batch size the choice is made for
  double min_speedup = 1.1;    // lower only where sparse is at least this much faster
  std::string include;         // '|'-separated globs on layer names; "" = all
  std::string exclude;
};

class LowerSparsePass final : public Pass {
 public:
  explicit LowerSparsePass(SparseLoweringOptions options = {});
  // Its options, declared once (pass_options.h).
  static const OptionTable<SparseLoweringOptions>& options_table();
  static SparseLoweringOptions parse(const PassOptionMap& options);
  static constexpr const char* kName = "lower-sparse";  // the registry's name (passes.def)
  std::string name() const override { return kName; }
  std::string options_text() const override;
  PassResult run(const torch::jit::Module& module, PassContext& context) const override;

 private:
  SparseLoweringOptions options_;
};

// Structured pruning of transformers: whole attention heads of nn.MultiheadAttention (the
// head's rows of the packed Q, K and V projection and its columns of the output projection) and
// hidden neurons of MLP blocks (Linear -> activation -> Linear: the first layer's rows, the
// second's columns). Importance: l2 (the weights' norms) or activation (on `samples` training
// samples, the mean |input| of the output projection or the second Linear per feature, times
// that layer's column norm). The result's forward is the attention written out in plain ops
// (analysis/attention.h), with the head count following the weights: it loads and runs in
// stock LibTorch and PyTorch; the submodules' own forward methods still expect the old sizes.
struct HeadPruneOptions {
  double ratio = 0.5;            // fraction of each attention's heads removed, in [0, 1)
  double neuron_ratio = 0;       // fraction of each MLP's hidden neurons removed, in [0, 1)
  std::string importance = "l2";  // l2 (weight norms) | activation (calibration samples)
  std::int64_t samples = 256;     // with importance=activation: the first N training samples
  int finetune_epochs = 0;
  double finetune_lr = 0.001;
};

class HeadPrunePass final : public Pass {
 public:
  explicit HeadPrunePass(HeadPruneOptions options = {});
  static const OptionTable<HeadPruneOptions>& options_table();
  static HeadPruneOptions parse(const PassOptionMap& options);
  static constexpr const char* kName = "prune-heads";  // the registry's name (passes.def)
  std::string name() const override { return kName; }
  std::string options_text() const override;
  bool needs_training_data() const override {
    return options_.finetune_epochs > 0 || options_.importance == "activation";
  }
  // Refuses a ratio that leaves an attention without heads or an MLP without neurons.
  PassResult run(const torch::jit::Module& module, PassContext& context) const override;

 private:
  HeadPruneOptions options_;
};

class MagnitudePrunePass final : public Pass {
 public:
  explicit MagnitudePrunePass(MagnitudePruneOptions options = {});
  // Its options, declared once (pass_options.h).
  static const OptionTable<MagnitudePruneOptions>& options_table();
  static MagnitudePruneOptions parse(const PassOptionMap& options);
  static constexpr const char* kName = "prune-magnitude";  // the registry's name (passes.def)
  std::string name() const override { return kName; }
  std::string options_text() const override;
  bool needs_training_data() const override { return options_.finetune_epochs > 0; }
  PassResult run(const torch::jit::Module& module, PassContext& context) const override;

 private:
  MagnitudePruneOptions options_;
};

class NMPrunePass final : public Pass {
 public:
  explicit NMPrunePass(NMPruneOptions options = {});
  // Its options, declared once (pass_options.h).
  static const OptionTable<NMPruneOptions>& options_table();
  static NMPruneOptions parse(const PassOptionMap& options);
  static constexpr const char* kName = "prune-nm";  // the registry's name (passes.def)
  std::string name() const override { return kName; }
  std::string options_text() const override;
  bool needs_training_data() const override { return options_.finetune_epochs > 0; }
  PassResult run(const torch::jit::Module& module, PassContext& context) const override;

 private:
  NMPruneOptions options_;
};

}  // namespace joulecut
