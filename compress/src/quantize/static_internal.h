#pragma once
// Internal to quantize-static: the steps StaticQuantizePass::run (static.cpp) strings together,
// each in a file named for what it does:
//   static_smoothing.cpp    SmoothQuant: LayerNorm outputs scaled per channel into the next weights
//   static_calibration.cpp  checking the model and calibrating the activation ranges
//   static_rewrite.cpp      the rewrite of a fresh clone to int8 (the Rewriter)
//   static_bias_correction.cpp  each int8 layer's bias corrected for its weights' rounding
//   static_budget.cpp       the accuracy budget: layers returned to fp32 until the drop fits
//   static_guard.cpp        the fidelity guard: int8 judged against fp32 on held-out samples
//   static_per_layer.cpp    per-layer=auto: each layer timed in fp32 and int8, the faster kept
// Values are numbered as static_graph.h numbers them, so that the ranges calibrated on one copy
// name the same values in every rewrite.
#include <torch/script.h>

#include <cstddef>
#include <cstdint>
#include <functional>
#include <map>
#include <optional>
#include <set>
#include <string>
#include <utility>
#include <vector>

#include "joulecut/data.h"
#include "joulecut/observers.h"
#include "joulecut/pass.h"
#include "joulecut/quantize.h"
#include "quantize/static_graph.h"

namespace joulecut::static_quant {

// A rewrite's result: the int8 model, a report row per layer, and the counts the summary gives.
struct Built {
  torch::jit::Module module;
  std::vector<LayerChange> layers;
  int int8_layers = 0, quantize_ops = 0, dequantize_ops = 0, fused = 0, fused_adds = 0, scaled = 0;
  int bias_corrected = 0;  // int8 layers whose bias took their weights' rounding back
};

// What the pass has chosen so far.
struct Choice {
  Built built;
  std::set<std::string> keep;                       // layers kept fp32 (the budget's, then per-layer=auto's)
  std::map<std::string, std::string> budget_notes;  // layers the accuracy budget keeps fp32, and why
};

// static_calibration.cpp. Checks that the pass can run on `input` (its exclude patterns match
// layers, no BatchNorm follows a layer) and returns the calibrated range of each observed value.
CalibratedValues calibrate_activations(const torch::jit::Module& input, const StaticQuantizeOptions& options,
                                                   const TensorDataset& train, bool progress, const std::string& pass);
// The report's note on how the ranges were calibrated.
struct HeldOut;
std::string calibration_note(const StaticQuantizeOptions& options, const HeldOut& split);

// static_smoothing.cpp. SmoothQuant (options.smooth): each LayerNorm output that int8-able Linear
// layers read divided per channel by s before them, their weights multiplied by s, alpha chosen
// per output by simulated int8 error on `calibration`. `module` is `input` itself when nothing is
// smoothed, else a clone whose fp32 outputs were checked to match; `note` says what was done.
struct Smoothing {
  torch::jit::Module module;
  std::string note;
};
Smoothing smooth_activations(const torch::jit::Module& input, const StaticQuantizeOptions& options,
                             const TensorDataset& calibration, bool progress);

// static_rewrite.cpp. A fresh clone of `input` with every layer int8 that can be, but those in
// `keep_fp32` and those options.exclude names; the input is never changed.
Built build_int8(const torch::jit::Module& input, const StaticQuantizeOptions& options,
                 const CalibratedValues& calibration, const std::set<std::string>& keep_fp32);

// static_bias_correction.cpp. The bias that gives an int8 layer fp32's mean output: `bias` (none:
// zeros) + (W - Wq)·E[x], Wq the weight as the int8 backends round it, E[x] the layer input's
// per-channel mean over the calibration samples. nullopt when the mean does not fit the weight.
std::optional<at::Tensor> corrected_bias(const at::Tensor& weight, const c10::optional<at::Tensor>& bias,
                                         const at::Tensor& input_mean, std::int64_t groups);

// static_budget.cpp. With options.max_accuracy_drop >= 0: measures the int8 model on the last
// `validation` training images and returns, greedily, the layer whose fp32 return buys the most
// to fp32 until the drop is within budget. Updates `choice` and adds its notes to `notes`;
// throws UserError when no int8 layer fits the budget.
void apply_accuracy_budget(const torch::jit::Module& input, const StaticQuantizeOptions& options,
                           const CalibratedValues& calibration, const TensorDataset& train, bool progress,
                           Choice& choice, std::vector<std::string>& notes);
// The note of each layer the budget keeps fp32 put first in its report row (before "; ...").
void note_budget_layers(Choice& choice);

// static_guard.cpp. The training data split for the fidelity guard: calibration on the first
// samples, the guard on the last ones (options.validation, or a quarter of a small set); with
// guard=off, calibration on all of it. Throws UserError when there is nothing to hold out.
struct HeldOut {
  TensorDataset calibration, held_out;
};
HeldOut hold_out(const StaticQuantizeOptions& options, const TensorDataset& train);
// The guard (options.guard): `choice` judged on `held_out`; when it misses the limit, the fewest
// most harmful layers go back to fp32 until it holds. Updates `choice` and adds its notes to the
// report; when no set of fp32 layers that leaves one int8 meets it, keeps the candidate closest
// to the limit and adds a warning naming the most harmful layers.
void apply_fidelity_guard(const torch::jit::Module& input, const StaticQuantizeOptions& options,
                          const CalibratedValues& calibration, const TensorDataset& held_out, bool progress,
                          Choice& choice, PassReport& report);

#ifdef JOULECUT_HAVE_ONEDNN
// static_per_layer.cpp. per-layer=auto: each int8 layer timed in place against its fp32 op at
// options.batch; those slower in int8 go back to fp32 when the whole model then runs faster.
// Updates `choice`, its layers' notes, and adds its notes to `notes`.
void choose_per_layer(const torch::jit::Module& input, const StaticQuantizeOptions& options,
                      const CalibratedValues& calibration, const TensorDataset& train,
                      const TimingService& timer, bool progress, Choice& choice, std::vector<std::string>& notes);
#endif

}  // namespace joulecut::static_quant
