// compress calibrate: calibration images run through a model; the int8 range of each
// Conv2d/Linear input and output.
#include <cstdio>

#include "joulecut/calibrate.h"
#include "joulecut/error.h"
#include "joulecut/evaluate.h"
#include "joulecut/model.h"
#include "joulecut/text.h"
#include "options.h"

namespace joulecut::cli {
namespace {

struct CalibrateCliOptions {
  std::string model;
  CalibrationOptions calibration;
  DataSource data;
  bool no_progress = false, percentile_given = false;
};

void run_calibrate(CalibrateCliOptions o, const Invocation& invocation) {
  if (o.percentile_given && o.calibration.observer != "percentile")
    throw UserError("--percentile applies to --observer percentile only");
  apply_threads(invocation.threads);
  o.calibration.progress = !o.no_progress;
  auto loaded = load_model(o.model);
  std::optional<DatasetSpec> spec;
  if (loaded.metadata) spec = loaded.metadata->dataset;
  // Calibration uses the training split: the test split stays unseen for accuracy.
  auto data = load_dataset(o.data, Split::train, spec);
  check_model_accepts(loaded.module, data, o.model);
  const auto result = calibrate(loaded.module, data, o.calibration);
  std::printf("calibration of %s: observer %s, %lld images of %s\n\n", o.model.c_str(), result.observer.c_str(),
              (long long)result.samples, data.description.c_str());
  std::printf("%-24s %-18s %-36s %s\n", "layer", "op", "input range (scale, zero point)", "output range (scale, zero point)");
  auto range = [](const QuantRange& r) {
    return format("[%.4g, %.4g] (%.3g, %d)", r.min, r.max, r.scale, r.zero_point);
  };
  for (const auto& l : result.layers)
    std::printf("%-24s %-18s %-36s %s\n", l.layer.c_str(), l.op.c_str(), range(l.input).c_str(), range(l.output).c_str());
  std::printf("\nuint8 affine per tensor: x = scale * (q - zero point), q in [0, 255]\n");
}

}  // namespace

Command make_calibrate_command(CLI::App& app) {
  auto o = std::make_shared<CalibrateCliOptions>();
  auto* cmd = app.add_subcommand(
      "calibrate", "Run calibration images through a model: the int8 range of each Conv2d/Linear input and output");
  cmd->add_option("model", o->model, "TorchScript file (never modified)")->required();
  cmd->add_option("--observer", o->calibration.observer, "minmax, percentile, entropy (KL) or mse")->capture_default_str();
  cmd->add_option("--percentile", o->calibration.percentile, "For --observer percentile, in (0, 100]")
      ->capture_default_str()
      ->each([o](const std::string&) { o->percentile_given = true; });
  cmd->add_option("--samples", o->calibration.samples, "Calibration images (first N of the training split; 0: all)")
      ->capture_default_str();
  cmd->add_flag("--no-progress", o->no_progress, "No progress bar");
  add_data_options(cmd, o->data);
  return {cmd, [o](const Invocation& invocation) { run_calibrate(*o, invocation); }};
}

}  // namespace joulecut::cli
