#pragma once
// The runner: warm-up, then repeated measurement windows over one or more models,
// interleaved window by window so that drift of a shared machine hits every model alike.
// Returns plain results; reporters (report.h) print them.
#include <ATen/core/Tensor.h>
#include <torch/script.h>

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "joulecut/measure/energy.h"
#include "joulecut/measure/energy_model.h"
#include "joulecut/measure/manifest.h"
#include "joulecut/measure/meter.h"
#include "joulecut/measure/stats.h"

namespace joulecut::measure {

struct RunOptions {
  std::string device = "cpu";        // "cpu", "cuda", "cuda:N"
  std::int64_t batch = 1;
  double warmup_seconds = 0.5;       // run before any window is recorded
  int windows = 10;                  // repeated windows; mean and 95% CI over them
  double min_window_seconds = 0.2;   // raised to 50 update periods of the meter
  std::string meter = "auto";        // auto | rapl | nvml | model
  RaplOptions rapl;
  NvmlOptions nvml;
  std::optional<double> cpu_watts;   // for the time x power model
  std::string energy_constants;      // a JSON file replacing the Horowitz constants ("" = built in)
  double idle_seconds = 0;           // > 0: measure idle power first, report net energy too
  // CPU: each model runs with the BLAS on 1 thread or on LibTorch's thread count, whichever it
  // runs faster with at this batch (timed before the windows), as a user would deploy it.
  bool search_blas_threads = true;
  // A noisy measurement is measured again: when any candidate's 95% interval (of its latency or
  // its energy per inference) is wider than wide_interval x its mean (+-10%), every candidate's
  // windows are discarded and run again, interleaved as before, up to remeasure_rounds more
  // times; a result still wide after that says so (RunResult::wide_interval).
  double wide_interval = 0.10;
  int remeasure_rounds = 1;
};

// One model to measure: a label, the module as it will run, and what the op model needs.
struct Candidate {
  std::string label;
  torch::jit::Module module;
  OpCounts ops;  // MACs and bytes per batch, from graph_stats
};

struct MeasuredEnergyStats {
  MeanCI joules_per_inference;      // gross: everything the meter's domains drew
  std::optional<MeanCI> net_joules_per_inference;  // minus idle power x window time
  Provenance provenance = Provenance::measured;
  std::string meter, domains;
  int wraps = 0;
};

struct ModeledEnergyStats {
  MeanCI joules_per_inference;
  std::string model, detail;
};

struct RunResult {
  std::string label;
  std::string device;
  std::int64_t batch = 1;
  int windows = 0;
  std::int64_t iterations_per_window = 0;
  double window_seconds = 0;               // mean window length
  MeanCI latency_seconds;                  // per batch, mean over windows
  double p50_seconds = 0, p99_seconds = 0; // per batch, over every timed iteration
  double p50_low = 0, p50_high = 0;        // 95% CI of the median (order statistics)
  MeanCI throughput;                       // inferences per second
  int blas_threads = 1;                    // the BLAS thread count it ran with
  std::string thread_search;               // how that count was chosen (timed set-ups)
  MeasurementQuality quality;  // its limit is RunOptions::wide_interval
  std::optional<MeasuredEnergyStats> measured;  // absent without a hardware meter
  ModeledEnergyStats modeled_time_power;
  ModeledEnergyStats modeled_ops;
};

// Which hardware meter runs, and why: auto picks NVML for CUDA devices and RAPL for the CPU;
// when none works, energy is modeled only and `explanation` says why. A meter asked for by
// name that does not work here is a UserError.
struct MeterChoice {
  std::unique_ptr<Meter> meter;  // null: modeled only
  std::string explanation;
};
MeterChoice choose_meter(const RunOptions& options);

// Validates the device string and that it exists (UserError otherwise).
c10::Device parse_device(const std::string& device);

// The module a user would deploy: a clone, in eval mode, frozen and optimized for inference
// (constant folding, conv-BN folding, oneDNN layouts). With optimize == false, a clone in
// eval mode. `how` receives a description for the manifest.
// The module is moved to `device` before freezing (frozen constants cannot move later).
torch::jit::Module prepare_for_inference(const torch::jit::Module& module, bool optimize, const c10::Device& device,
                                         std::string* how);

// The one-call API for deployment pipelines: measures one module on one input batch.
RunResult measure(torch::jit::Module& module, const at::Tensor& input, const RunOptions& options,
                  const OpCounts& ops = {});

// Measures every candidate on `input` (one batch, already on the device), interleaving
// windows across candidates. Prints progress to stderr when `progress`.
std::vector<RunResult> run_interleaved(std::vector<Candidate>& candidates, const at::Tensor& input,
                                       const RunOptions& options, MeterChoice& meter, bool progress = true);
// The same for a forward() of several arguments (token ids and attention mask, ...), each [batch, ...].
std::vector<RunResult> run_interleaved(std::vector<Candidate>& candidates, const std::vector<at::Tensor>& arguments,
                                       const RunOptions& options, MeterChoice& meter, bool progress = true);

// Hardware, software, threads, BLAS, meter and protocol of this process.
Manifest collect_manifest(const RunOptions& options, const MeterChoice& meter);

// A scoped energy window for deployment pipelines (Zeus-style):
//   EnergySession session;            // picks the meter like --meter auto
//   session.begin("decode");  ...work...  auto w = session.end("decode");
// Windows nest; each has its own name. CUDA work is synchronized at both edges.
struct WindowResult {
  std::string name;
  double seconds = 0;
  std::optional<MeasuredEnergy> measured;  // absent without a hardware meter
  ModeledEnergy modeled;                   // time x power over the window's CPU time
};

class EnergySession {
 public:
  explicit EnergySession(const RunOptions& options = {});
  ~EnergySession();
  void begin(const std::string& name);
  WindowResult end(const std::string& name);  // UserError if no window of that name is open
  const std::string& meter_explanation() const;

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace joulecut::measure
