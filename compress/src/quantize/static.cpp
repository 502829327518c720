// quantize-static: Conv2d/Linear to int8 with calibrated activation ranges, activations int8 from
// layer to layer, on joulecut's oneDNN ops or LibTorch's quantized ops (see quantize.h).
//
// This file holds the pass: its options and run, which strings the steps together (see
// static_internal.h): calibration (static_calibration.cpp), the int8 rewrite
// (static_rewrite.cpp), the accuracy budget (static_budget.cpp), per-layer=auto
// (static_per_layer.cpp), then the report.
#include <ATen/ATen.h>

#include <torch/csrc/jit/api/module.h>

#include <algorithm>
#include <cstdio>
#include <functional>
#include <map>
#include <set>
#include <utility>

#include "graph/attention.h"
#include "graph/quantized_engine.h"
#include "joulecut/error.h"
#include "joulecut/int8_cuda.h"
#include "joulecut/observers.h"
#include "joulecut/quantize.h"
#include "joulecut/text.h"
#include "joulecut/timing.h"
#include "quantize/static_internal.h"
#ifdef JOULECUT_HAVE_ONEDNN
#include "joulecut/int8.h"
#endif

namespace joulecut {
using namespace graph;
using namespace static_quant;
namespace {

// One run on calibration images: errors surface here, not later, and the report can say which
// int8 kernels ran (oneDNN's, or joulecut's for few channels).
void check_int8_runs(torch::jit::Module module, const TensorDataset& train) {
  try {
    at::NoGradGuard no_grad;
    module.forward(train.inputs(0, std::min<std::int64_t>(64, train.size())));
  } catch (const c10::Error& e) {
    JOULECUT_ASSERT(false, std::string("the int8 model does not run: ") + e.what_without_backtrace());
  }
}

std::string summary_text(const StaticQuantizeOptions& options, const Built& built) {
  if (options.backend == "cuda")
    return format("%d of %zu Conv2d/Linear layer(s) int8 on the cuda backend (Linear only), %d ReLU(s) fused; each "
                  "int8 Linear quantizes its fp32 input and returns fp32",
                  built.int8_layers, built.layers.size(), built.fused);
  return format("%d of %zu Conv2d/Linear layer(s) int8 on the %s backend, %d activation(s) fused, %d residual add(s) run "
                "inside convolutions; int8 between layers, %d quantize and %d dequantize op(s) at fp32 boundaries",
                built.int8_layers, built.layers.size(), options.backend.c_str(), built.fused, built.fused_adds,
                built.quantize_ops, built.dequantize_ops);
}

// The notes every report ends with: what else runs int8, how the ranges were calibrated, and
// what the model needs to load.
void add_closing_notes(std::vector<std::string>& notes, const torch::jit::Module& input, const Built& built,
                       const StaticQuantizeOptions& options, const HeldOut& split, const std::string& engine) {
  if (attention::has_attention(input))
    notes.push_back("attention: its Linear layers (the packed Q/K/V projection and the output projection) as "
                    "listed; LayerNorm, softmax and the two attention matrix products stay fp32, activations "
                    "quantized per tensor");
  if (built.scaled > 0)
    notes.push_back("squeeze-and-excitation: " + std::to_string(built.scaled) +
                    " channel scaling(s) run on uint8 (joulecut::int8_scale_channels)");
  notes.push_back(calibration_note(options, split));
  if (built.bias_corrected > 0)
    notes.push_back(format("bias correction: %d of %d int8 layer(s) take back the mean shift of their weights' "
                           "rounding (weight error x the input's mean per channel on the calibration samples)",
                           built.bias_corrected, built.int8_layers));
#ifdef JOULECUT_HAVE_ONEDNN
  if (options.backend == "onednn") notes.push_back("int8 kernels: " + int8_implementations());
#endif
  if (options.backend == "cuda")
    notes.push_back(std::string("backend=cuda: joulecut::int8_linear_dp4a runs the dp4a kernel on CUDA tensors") +
                    (dp4a_kernel_compiled() ? "" : " (not in this build: LibTorch without CUDA)") +
                    " and an exact CPU reference on CPU tensors; measure it on a CUDA device");
  if (options.backend == "torch") notes.push_back("LibTorch quantized engine: " + engine + " (loads in stock PyTorch)");
  else notes.push_back("needs libjoulecut_ops at load time (C++: link it; Python: torch.ops.load_library)");
}

}  // namespace

StaticQuantizePass::StaticQuantizePass(StaticQuantizeOptions options) : options_(std::move(options)) {
  options_table().check(options_);
}

namespace {

// The accuracy budget: points ("0.5") or relative to fp32 ("1%"); "" (the default) is none.
OptionDecl<StaticQuantizeOptions> accuracy_budget_option() {
  OptionDecl<StaticQuantizeOptions> d;
  d.info = {"max-accuracy-drop", OptionType::text, "",
            "accuracy budget in points (0.5), or relative to fp32 (1%); the most sensitive layers stay fp32"};
  d.get = [](const StaticQuantizeOptions& o) {
    return o.max_accuracy_drop < 0 ? std::string() : number_text(o.max_accuracy_drop) + (o.relative_drop ? "%" : "");
  };
  d.set = [](StaticQuantizeOptions& o, const std::string& pass, std::string drop) {
    o.max_accuracy_drop = -1;
    o.relative_drop = false;
    if (drop.empty()) return;  // no budget, as by default
    o.relative_drop = drop.back() == '%';
    if (o.relative_drop) drop.pop_back();
    try {
      std::size_t used = 0;
      o.max_accuracy_drop = std::stod(drop, &used);
      if (used != drop.size() || o.max_accuracy_drop < 0) throw std::invalid_argument(drop);
    } catch (const std::exception&) {
      throw UserError(pass + ": max-accuracy-drop '" + drop +
                      "' is not a number >= 0 (points, e.g. 0.5; or relative to fp32, e.g. 1%)");
    }
  };
  return d;
}

}  // namespace

const OptionTable<StaticQuantizeOptions>& StaticQuantizePass::options_table() {
  using O = StaticQuantizeOptions;
  static const OptionTable<O> table(StaticQuantizePass::kName,
      {choice_option("backend",
                     "onednn: joulecut's int8 runtime; torch: LibTorch's quantized ops (stock PyTorch loads it); cuda: "
                     "joulecut's dp4a kernel for Linear layers on NVIDIA GPUs",
                     &O::backend,
                     {{"onednn", "joulecut's int8 runtime"},
                      {"torch", "LibTorch's quantized ops, loads in stock PyTorch"},
                      {"cuda", "int8 Linear layers on NVIDIA GPUs"}}),
       option("observer", "activation ranges: minmax, percentile, entropy (KL) or mse", &O::observer),
       option("percentile", "with observer=percentile, in (0, 100]", &O::percentile),
       option("samples", "calibration images (the first N of the training split)", &O::samples),
       option("exclude", "keep layers matching these '|'-separated globs in fp32", &O::exclude),
       accuracy_budget_option(),
       option("validation", "images at the end of the training split that the budget is measured on", &O::validation),
       choice_option("metric", "what the budget is on: top1 (accuracy, needs labels) or agreement (top-1 agreement "
                               "with the fp32 model, label-free; the default for data without labels)",
                     &O::metric, {{"top1", "accuracy"}, {"agreement", "with the fp32 model"}}),
       choice_option("per-layer", "all (every layer int8) or auto (onednn: a layer stays fp32 where int8 is slower, "
                                  "timed here at the batch)",
                     &O::per_layer, {{"all", "every layer int8"}, {"auto", "timed"}}),
       option("batch", "with per-layer=auto: the batch size the layers are timed at", &O::batch),
       choice_option("smooth",
                     "SmoothQuant: LayerNorm outputs that Linear layers read scaled per channel into the layers' "
                     "weights (a transformer's outlier channels), alpha chosen per output; auto where it clearly "
                     "lowers the simulated int8 error",
                     &O::smooth, {{"auto", "the default"}, {"off", "never smooth"}}),
       choice_option("bias-correction",
                     "each int8 layer's bias corrected for the mean shift its weights' rounding adds (the "
                     "weight error times the input's mean per channel on the calibration samples)",
                     &O::bias_correction, {{"on", "the default"}, {"off", "biases as they are"}}),
       choice_option("guard",
                     "the fidelity guard: the int8 model judged against fp32 on held-out training samples (never "
                     "the calibration ones), the most harmful layers returned to fp32 until it holds",
                     &O::guard, {{"on", "the default"}, {"off", "no check against fp32"}}),
       choice_option("guard-metric",
                     "what the guard judges: agreement (top-1 agreement with fp32, for class scores), cosine (of "
                     "every output to fp32's), or auto (agreement on labelled data, cosine otherwise)",
                     &O::guard_metric, {{"auto", ""}, {"agreement", ""}, {"cosine", ""}}),
       option("min-cosine", "the guard on cosine: the mean cosine to fp32 it keeps, in (0, 1]", &O::min_cosine),
       option("max-agreement-drop", "the guard on agreement: points of top-1 agreement with fp32 it may lose",
              &O::max_agreement_drop)});
  return table;
}

StaticQuantizeOptions StaticQuantizePass::parse(const PassOptionMap& map) {
  const StaticQuantizeOptions o = options_table().parse(map);
  make_observer(o.observer, o.percentile);  // validates both
  if (map.count("percentile") && o.observer != "percentile")
    throw pass_error(StaticQuantizePass::kName, "percentile applies to observer=percentile only");
  if (o.samples < 1) throw pass_error(StaticQuantizePass::kName, "samples must be >= 1");
  if (o.validation < 1) throw pass_error(StaticQuantizePass::kName, "validation must be >= 1");
  if (o.per_layer == "auto" && o.backend != "onednn")
    throw pass_error(StaticQuantizePass::kName, "per-layer=auto times joulecut's int8 ops: it needs backend=onednn");
  if (o.batch < 1) throw pass_error(StaticQuantizePass::kName, "batch must be >= 1");
  if (!(o.min_cosine > 0 && o.min_cosine <= 1))
    throw pass_error(StaticQuantizePass::kName, "min-cosine must be in (0, 1]");
  if (!(o.max_agreement_drop >= 0 && o.max_agreement_drop <= 100))
    throw pass_error(StaticQuantizePass::kName, "max-agreement-drop must be in [0, 100] points");
  return o;
}

std::string StaticQuantizePass::options_text() const { return options_table().print(options_); }

PassResult StaticQuantizePass::run(const torch::jit::Module& input, PassContext& context) const {
  if (!context.train)
    throw pass_error(StaticQuantizePass::kName,
                     "calibration needs training data (" + option_ref("DataSource::data") + ")");
  const TensorDataset& train = *context.train;
#ifndef JOULECUT_HAVE_ONEDNN
  if (options_.backend == "onednn")
    throw pass_error(StaticQuantizePass::kName,
                     "backend=onednn needs libjoulecut_ops built with oneDNN (libdnnl-dev); use "
                     "backend=torch");
#endif
  std::string engine;
  if (options_.backend == "torch") engine = choose_engine(name());
  const HeldOut split = hold_out(options_, train);
  // Smoothed, the model computes what `input` does (checked): every step after works on it, and
  // the guard's fp32 reference is it.
  const Smoothing smoothing = smooth_activations(input, options_, split.calibration, context.progress);
  const torch::jit::Module& model = smoothing.module;
  const CalibratedValues calibration = calibrate_activations(model, options_, split.calibration, context.progress, name());

  PassReport report;
  report.pass = text();
  if (!smoothing.note.empty()) report.notes.push_back(smoothing.note);
  Choice choice;
  choice.built = build_int8(model, options_, calibration, choice.keep);
  const std::vector<LayerChange>& layers = choice.built.layers;
  if (choice.built.int8_layers == 0)
    throw pass_error(
        StaticQuantizePass::kName,
        "no layer could be made int8 (" +
            (layers.empty() ? std::string("none found") : layers.front().layer + ": " + layers.front().note) + ")");
  if (options_.max_accuracy_drop >= 0)
    apply_accuracy_budget(model, options_, calibration, train, context.progress, choice, report.notes);
  apply_fidelity_guard(model, options_, calibration, split.held_out, context.progress, choice, report);
#ifdef JOULECUT_HAVE_ONEDNN
  if (options_.per_layer == "auto") {
    choose_per_layer(model, options_, calibration, train, context.timer(), context.progress, choice, report.notes);
  }
#endif
  note_budget_layers(choice);
  check_int8_runs(choice.built.module, train);
  report.layers = choice.built.layers;
  report.summary = summary_text(options_, choice.built);
  add_closing_notes(report.notes, input, choice.built, options_, split, engine);
  return {choice.built.module, report};
}

}  // namespace joulecut
