// compress quantize: static int8 (BatchNorm folded, ReLU fused, activations calibrated) or
// dynamic int8, then the model measured before and after. The flags come from the passes'
// option tables.
#include <algorithm>

#include "joulecut/error.h"
#include "joulecut/model.h"
#include "joulecut/quantize.h"
#include "options.h"

namespace joulecut::cli {
namespace {

struct QuantizeCliOptions {
  std::string model, output;
  PassOptionMap given;  // quantize-static's options as given
  bool dynamic = false;
  DataSource data;
  AfterMeasurement measurement{"1,64"};
  bool no_progress = false;
};

void run_quantize(QuantizeCliOptions o, const Invocation& invocation) {
  apply_threads(invocation.threads);
  // The CUDA int8 kernel is the backend for a GPU: --device cuda picks it, and a cuda file is
  // measured on the GPU (on a CPU it would time the exact reference, not the kernel).
  const bool on_gpu = o.measurement.device.rfind("cuda", 0) == 0;
  const bool cuda_backend = o.given.count("backend") && o.given.at("backend") == "cuda";
  if (o.dynamic && (on_gpu || cuda_backend))
    throw UserError("--dynamic runs on the CPU (LibTorch's quantized ops); for a GPU, static int8 with --device cuda");
  if (on_gpu && !o.given.count("backend")) o.given["backend"] = "cuda";
  if (on_gpu && o.given["backend"] != "cuda")
    throw UserError("--device " + o.measurement.device + ": the " + o.given["backend"] +
                    " backend runs on the CPU; the int8 backend for GPUs is --backend cuda");
  if (cuda_backend && !on_gpu) o.measurement.device = "cuda";
  check_output(o.model, o.output);
  std::vector<std::unique_ptr<Pass>> passes;
  if (o.dynamic) {
    const auto backend = o.given.find("backend");
    if (backend == o.given.end() || backend->second != "torch")
      throw UserError("--dynamic runs on LibTorch's quantized::linear_dynamic: add --backend torch (the onednn backend "
                      "is static int8)");
    PassOptionMap given = o.given;
    given.erase("backend");
    for (const auto& [key, value] : given)
      if (key != "exclude")
        throw UserError("--" + key + " applies to static int8, not --dynamic (activations are quantized per batch)");
    passes.push_back(make_pass(DynamicQuantizePass::kName, given));
  } else {
    // No slower model from `compress quantize`: on joulecut's runtime, layers are int8 only where
    // that is faster here, timed at the largest --batch (the pass's own default is every layer).
    const bool onednn = !o.given.count("backend") || o.given.at("backend") == "onednn";
    if (onednn && !o.given.count("per-layer")) o.given["per-layer"] = "auto";
    if (o.given.count("per-layer") && o.given.at("per-layer") == "auto") {
      const auto batches = parse_batches(o.measurement.batches);
      o.given["batch"] = std::to_string(*std::max_element(batches.begin(), batches.end()));
    }
    // Options go through the pass's own parser, so the CLI and pipelines check them the same way.
    auto quantize = make_pass(StaticQuantizePass::kName, o.given);
    const auto preparation = needed_preparation(load_model(o.model).module);
    if (preparation.batchnorm) passes.push_back(make_pass(FoldBatchNormPass::kName, {}));
    if (preparation.relu) passes.push_back(make_pass(FuseReluPass::kName, {}));
    passes.push_back(std::move(quantize));
  }
  apply_and_measure(passes, {o.model, o.output, 1, !o.no_progress, o.measurement, o.data}, invocation.command_line);
}

}  // namespace

Command make_quantize_command(CLI::App& app) {
  auto o = std::make_shared<QuantizeCliOptions>();
  auto* cmd = app.add_subcommand("quantize", "Quantize a model to int8, then measure before and after");
  cmd->footer(
      "Static int8 (default): BatchNorm folded, ReLU fused, activations calibrated on the first --samples training\n"
      "images and kept int8 from layer to layer. --backend onednn runs joulecut's int8 runtime (the file needs\n"
      "libjoulecut_ops to load); --backend torch runs LibTorch's quantized ops (stock PyTorch loads the file).\n"
      "--dynamic quantizes Linear layers only, activations per batch, on the torch backend.\n"
      "--device cuda (or --backend cuda) makes Linear layers int8 on joulecut's dp4a CUDA kernel, measured on the GPU;\n"
      "with --no-measure the file can be made on a machine without one.\n"
      "On the onednn backend --per-layer auto (the default here) keeps a layer fp32 where its int8 op is slower,\n"
      "timed on this machine at the largest --batch; --per-layer all makes every layer int8.\n"
      "Example: compress quantize models/trained/lenet5.pt -o lenet5-int8.pt --observer mse --max-accuracy-drop 0.5");
  cmd->add_option("model", o->model, "TorchScript file (never modified)")->required();
  cmd->add_option("-o,--output", o->output, "Quantized TorchScript file (written atomically)")->required();
  add_pass_flags(cmd, {{StaticQuantizePass::kName}, {}, {{"per-layer", "auto (onednn)"}}, {"batch"}}, o->given);
  cmd->add_option("--calib", o->data.data, "Calibration data set (same forms as --data)");
  cmd->add_flag("--dynamic", o->dynamic, "Dynamic int8 Linear layers (needs --backend torch)");
  add_after_measurement(cmd, o->measurement);
  add_progress_flag(cmd, o->no_progress);
  add_data_options(cmd, o->data);
  return {cmd, [o](const Invocation& invocation) { run_quantize(*o, invocation); }};
}

}  // namespace joulecut::cli
