#pragma once
// Quantization family. So far: graph preparation (BatchNorm folding), which int8 needs first
// and which also helps fp32 models that are not frozen and optimized.
#include <functional>
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
  // Its options, declared once (pass_options.h).
  static const OptionTable<FoldBatchNormOptions>& options_table();
  static FoldBatchNormOptions parse(const PassOptionMap& options);
  static constexpr const char* kName = "fold-batchnorm";  // the registry's name (passes.def)
  std::string name() const override { return kName; }
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
  // Its options, declared once (pass_options.h).
  static const OptionTable<DynamicQuantizeOptions>& options_table();
  static DynamicQuantizeOptions parse(const PassOptionMap& options);
  static constexpr const char* kName = "quantize-dynamic";  // the registry's name (passes.def)
  std::string name() const override { return kName; }
  std::string options_text() const override;
  // Throws UserError when the model has no float32 Linear layer to quantize.
  PassResult run(const torch::jit::Module& module, PassContext& context) const override;

 private:
  DynamicQuantizeOptions options_;
};

// Static int8 post-training quantization: Conv2d and Linear layers with per-channel symmetric
// int8 weights, activations uint8 per tensor with ranges calibrated on the first `samples`
// training images. Activations stay int8 from layer to layer through max/adaptive-average
// pooling, flatten, ReLU and residual adds; ReLU after a layer or an add is fused into it;
// quantize/dequantize ops sit only where int8 meets fp32. Run fold-batchnorm first (a
// BatchNorm between a layer and its ReLU stops the fusion and costs a dequantize).
//
// Backends: "onednn" runs joulecut's own ops (joulecut/int8.h, libjoulecut_ops); "torch" runs
// LibTorch's quantized::* ops with packed params, so stock PyTorch loads the file.
//
// Accuracy budget: with max_accuracy_drop >= 0 the pass measures top-1 accuracy on the last
// `validation` training images (never the test set) and keeps, greedily, the layer whose fp32
// return buys the most accuracy in fp32 until the drop is within budget; the report says what
// each kept layer cost.
struct StaticQuantizeOptions {
  std::string backend = "onednn";  // onednn | torch
  std::string observer = "minmax";  // minmax | percentile | entropy | mse
  double percentile = 99.99;
  int samples = 1000;       // calibration images (the first N of the training split)
  std::string exclude;      // '|'-separated globs on layer names kept in fp32
  double max_accuracy_drop = -1;  // < 0: no budget
  bool relative_drop = false;     // the drop is a percentage of the fp32 accuracy, not points
  int validation = 2000;          // images at the end of the training split for the budget
  std::string metric = "top1";    // top1 | agreement: the budget on top-1 agreement with fp32 (label-free)
  // all: every layer that can be int8 is; auto (onednn backend): a layer stays fp32 where, timed
  // in place at `batch` on this machine, its int8 op (with the quantize and dequantize it brings)
  // is slower than its fp32 op; the model is then timed whole, and the faster of the two int8
  // models kept.
  std::string per_layer = "all";
  // The fidelity guard (on by default): the int8 model judged against fp32 on held-out training
  // samples (the last ones, never the calibration ones), layers returned to fp32, the most
  // harmful first, until it holds. Class scores on labelled data: top-1 agreement with fp32 at
  // most max_agreement_drop points below 100; other outputs: mean cosine >= min_cosine.
  std::string guard = "on";            // on | off
  // SmoothQuant: each LayerNorm output that Linear layers read divided per channel by s on the
  // int8 path, their weights multiplied by s (the fp32 model unchanged), alpha chosen per output by
  // the simulated int8 error; auto keeps it where it clearly lowers that error, off never smooths.
  std::string smooth = "auto";         // auto | off
  std::string guard_metric = "auto";   // auto | agreement | cosine
  // Bias correction: each int8 layer's bias plus (W - Wq)·E[x], the mean shift its weights'
  // rounding would add (E[x]: its input's per-channel mean on the calibration samples).
  std::string bias_correction = "on";  // on | off
  double min_cosine = 0.99;
  double max_agreement_drop = 1.0;
  std::int64_t batch = 64;  // per-layer=auto times through PassContext::timer() ("layer NAME: fp32 vs
                            // int8", "model: fp32 vs all int8", "model: all int8 vs per layer")
};

class StaticQuantizePass final : public Pass {
 public:
  explicit StaticQuantizePass(StaticQuantizeOptions options = {});
  // Its options, declared once (pass_options.h).
  static const OptionTable<StaticQuantizeOptions>& options_table();
  static StaticQuantizeOptions parse(const PassOptionMap& options);
  static constexpr const char* kName = "quantize-static";  // the registry's name (passes.def)
  std::string name() const override { return kName; }
  std::string options_text() const override;
  // Needs context.train (calibration, validation). Throws UserError for a model with no
  // quantizable Conv2d/Linear layer, an unknown backend or observer, a bad percentile, a
  // calibration set the model does not accept, or a budget no int8 layer fits.
  bool needs_training_data() const override { return true; }  // calibration
  PassResult run(const torch::jit::Module& module, PassContext& context) const override;
  const StaticQuantizeOptions& options() const { return options_; }

 private:
  StaticQuantizeOptions options_;
};

// What graph preparation a model needs before static int8: BatchNorms to fold, and ReLUs after
// a Conv2d/Linear (possibly through a BatchNorm that folding removes) to fuse.
struct GraphPreparation {
  bool batchnorm = false;
  bool relu = false;
};
GraphPreparation needed_preparation(const torch::jit::Module& module);

// Makes ReLU after a Conv2d/Linear (the layer's only user) in-place: the same numbers without a
// second activation tensor; the pair is what the int8 backends then execute as one op.
struct FuseReluOptions {};

class FuseReluPass final : public Pass {
 public:
  explicit FuseReluPass(FuseReluOptions options = {});
  // Its options, declared once (pass_options.h).
  static const OptionTable<FuseReluOptions>& options_table();
  static FuseReluOptions parse(const PassOptionMap& options);
  static constexpr const char* kName = "fuse-relu";  // the registry's name (passes.def)
  std::string name() const override { return kName; }
  std::string options_text() const override { return ""; }
  // Throws UserError when no Conv2d/Linear is followed by a ReLU.
  PassResult run(const torch::jit::Module& module, PassContext& context) const override;
};

// Lower precision without integers: the model's floating weights and activations in bfloat16 (or
// float16), Conv2d/Linear layers matching `exclude` kept in float32 (their input cast up and
// their output cast back). The input is cast down where the model reads it, the output up where
// it returns it, so callers still pass and receive float32. bf16 runs on oneDNN's native kernels
// on CPUs with AVX-512 BF16 (LibTorch 2.x); fp16 is for GPUs: on a CPU without native fp16
// arithmetic it is emulated, and the report says so rather than promise a saving.
// Precondition: forward takes float32 tensors and returns a tensor (or a tuple of them).
struct ConvertPrecisionOptions {
  std::string dtype = "bf16";  // bf16 | fp16
  std::string exclude;         // '|'-separated globs on layer names kept in fp32
};

class ConvertPrecisionPass final : public Pass {
 public:
  explicit ConvertPrecisionPass(ConvertPrecisionOptions options = {});
  // Its options, declared once (pass_options.h).
  static const OptionTable<ConvertPrecisionOptions>& options_table();
  static ConvertPrecisionOptions parse(const PassOptionMap& options);
  static constexpr const char* kName = "convert-precision";  // the registry's name (passes.def)
  std::string name() const override { return kName; }
  std::string options_text() const override;
  // Throws UserError when the model has no floating Conv2d/Linear layer, or does not run in
  // the lower precision (checked on a zero input of the model's shape).
  PassResult run(const torch::jit::Module& module, PassContext& context) const override;

 private:
  ConvertPrecisionOptions options_;
};

}  // namespace joulecut
