#pragma once
// Quantization family. So far: graph preparation (BatchNorm folding), which int8 needs first
// and which also helps fp32 models that are not frozen and optimized.
#include <string>

#include "joulecut/pass.h"

namespace joulecut {

// Folds each BatchNorm that directly follows a Conv2d (and is that layer's only user) into the
// layer's weight and bias: W' = W * g / sqrt(v + eps), b' = (b - m) * g / sqrt(v + eps) + beta.
// The output computes what the input computes in eval mode; it is for inference (its folded
// layers no longer normalize with batch statistics in train mode). BatchNorms that follow
// anything else (a Linear too: whether its input is 2-D is not known from the graph) stay, and
// the report says why.
struct FoldBatchNormOptions {};

class FoldBatchNormPass final : public Pass {
 public:
  explicit FoldBatchNormPass(FoldBatchNormOptions options = {});
  static FoldBatchNormOptions parse(const PassOptionMap& options);
  std::string name() const override { return "fold-batchnorm"; }
  std::string options_text() const override { return ""; }
  // Throws UserError when the model has no BatchNorm at all.
  PassResult run(const torch::jit::Module& module, PassContext& context) const override;
};

// Dynamic int8 post-training quantization of Linear layers on LibTorch's own quantized ops
// (the portable `torch` backend): weights int8, per output channel, symmetric, packed once;
// activations quantized on the fly per batch (no calibration). Each Linear becomes
// quantized::linear_dynamic, so the file loads in stock LibTorch and Python PyTorch with no
// joulecut library. The packed weights hold the bias; the dense weight is emptied.
struct DynamicQuantizeOptions {
  std::string exclude;  // '|'-separated globs on layer names kept in fp32
};

class DynamicQuantizePass final : public Pass {
 public:
  explicit DynamicQuantizePass(DynamicQuantizeOptions options = {});
  static DynamicQuantizeOptions parse(const PassOptionMap& options);
  std::string name() const override { return "quantize-dynamic"; }
  std::string options_text() const override;
  // Throws UserError when the model has no float32 Linear layer to quantize.
  PassResult run(const torch::jit::Module& module, PassContext& context) const override;

 private:
  DynamicQuantizeOptions options_;
};

}  // namespace joulecut
