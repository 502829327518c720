#include "joulecut/measure/runner.h"

#include <ATen/ATen.h>
#include <ATen/Parallel.h>
#include <link.h>
#include <sys/resource.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <fstream>
#include <map>
#include <sstream>
#include <thread>
#include <tuple>

#include "joulecut/error.h"
#include "joulecut/freeze.h"
#include "joulecut/model.h"
#include "joulecut/platform.h"
#include "joulecut/threads.h"
#include "joulecut/progress.h"
#include "joulecut/text.h"
#include "joulecut/torch_compat.h"
#include "joulecut/version.h"

namespace joulecut::measure {
namespace {

using Clock = std::chrono::steady_clock;

double seconds_since(Clock::time_point t) { return std::chrono::duration<double>(Clock::now() - t).count(); }

// CPU time of the whole process (all threads), for the time x power model.
double process_cpu_seconds() {
  struct rusage usage {};
  getrusage(RUSAGE_SELF, &usage);
  return double(usage.ru_utime.tv_sec + usage.ru_stime.tv_sec) +
         1e-6 * double(usage.ru_utime.tv_usec + usage.ru_stime.tv_usec);
}

int find_library(struct dl_phdr_info* info, size_t, void* data) {
  auto* wanted = static_cast<std::pair<const char*, bool>*>(data);
  if (info->dlpi_name && std::string(info->dlpi_name).find(wanted->first) != std::string::npos) wanted->second = true;
  return 0;
}

bool library_loaded(const char* fragment) {
  std::pair<const char*, bool> wanted{fragment, false};
  dl_iterate_phdr(find_library, &wanted);
  return wanted.second;
}

std::string onednn_version() {
  const std::string config = at::show_config();
  for (const char* marker : {"oneDNN v", "MKL-DNN v"}) {
    const auto at = config.find(marker);
    if (at != std::string::npos) {
      const auto start = at + std::string(marker).size();
      return config.substr(start, config.find_first_of(" \n", start) - start);
    }
  }
  return "unknown";
}

std::string read_first_line(const std::string& path) {
  std::ifstream in(path);
  std::string line;
  if (!in || !std::getline(in, line)) return "unreadable";
  return line;
}

}  // namespace

c10::Device parse_device(const std::string& text) {
  const std::string device_option = option_ref("RunOptions::device");
  c10::Device device(c10::kCPU);
  try {
    device = c10::Device(text);
  } catch (const std::exception&) {
    throw UserError(device_option + " '" + text + "': expected cpu, cuda or cuda:N");
  }
  if (device.is_cpu()) return device;
  if (!device.is_cuda()) throw UserError(device_option + " '" + text + "': only cpu and cuda devices are supported");
  if (!library_loaded("libtorch_cuda"))
    throw UserError(device_option + " " + text + ": this LibTorch (" + compat::torch_version() +
                    ") is a CPU-only build; build joulecut against a CUDA-enabled LibTorch (see README)");
  const auto count = compat::cuda_device_count();
  if (count == 0)
    throw UserError(device_option + " " + text +
                    ": LibTorch has CUDA but no GPU is visible (driver, CUDA_VISIBLE_DEVICES?)");
  if (device.has_index() && device.index() >= count)
    throw UserError(device_option + " " + text + ": only " + std::to_string(count) + " GPU(s) visible");
  return device;
}

MeterChoice choose_meter(const RunOptions& options) {
  const bool cuda = options.device.rfind("cuda", 0) == 0;
  MeterChoice choice;
  auto named = [&](const std::string& name) -> std::unique_ptr<Meter> {
    if (name == "rapl") return make_rapl_meter(options.rapl);
    NvmlOptions nvml = options.nvml;
    if (cuda) {
      const auto colon = options.device.find(':');
      if (colon != std::string::npos) nvml.device_index = unsigned(std::stoul(options.device.substr(colon + 1)));
    }
    return make_nvml_meter(nvml);
  };
  if (options.meter == "model") {
    choice.explanation = "energy modeled only (--meter model)";
    return choice;
  }
  if (options.meter == "rapl" || options.meter == "nvml") {
    auto meter = named(options.meter);
    if (!meter->supported())
      throw UserError(option_ref("RunOptions::meter") + " " + options.meter +
                      " is not available here: " + meter->why_unsupported());
    choice.explanation = meter->name() + " (asked for): " + meter->domains();
    choice.meter = std::move(meter);
    return choice;
  }
  if (options.meter != "auto")
    throw UserError(option_ref("RunOptions::meter") + " '" + options.meter + "': choose auto, rapl, nvml or model");
  auto meter = named(cuda ? "nvml" : "rapl");
  if (meter->supported()) {
    choice.explanation = meter->name() + " (auto, " + (cuda ? "GPU" : "CPU") + " device): " + meter->domains();
    choice.meter = std::move(meter);
  } else {
    choice.explanation = "no hardware energy meter, energy is modeled only: " + meter->name() +
                         " unavailable: " + meter->why_unsupported();
  }
  return choice;
}

torch::jit::Module prepare_for_inference(const torch::jit::Module& module, bool optimize, const c10::Device& device,
                                         std::string* how) {
  torch::jit::Module copy = module.clone();
  copy.to(device);
  if (copy.hasattr("training")) copy.eval();
  if (!optimize) {
    if (how) *how = "plain TorchScript module in eval mode (--no-optimize)";
    return copy;
  }
  InferenceForm form = freeze_for_inference(copy);
  if (!form.frozen)
    throw UserError("cannot freeze and optimize the model for inference (" + form.why_not +
                    "); measure it as it is with " + option_ref("MeasureJob::optimize"));
  if (how) *how = "frozen + optimize_for_inference (constant folding, conv-BN folding, oneDNN layouts)";
  return form.module;
}

namespace {

struct CandidateState {
  std::int64_t iterations = 1;
  std::vector<double> latencies;  // every timed iteration, seconds per batch
  std::vector<double> window_latency, window_throughput, window_seconds, measured, net, modeled_tp;
  int wraps = 0;
  Provenance provenance = Provenance::measured;
  std::string meter_name, domains;
  int blas_threads = 1;       // the BLAS thread count this candidate runs with
  std::string thread_search;  // how it was chosen
  // Before a round of windows: the previous round's records go (a noisy round is discarded).
  void clear_windows() {
    latencies.clear();
    window_latency.clear();
    window_throughput.clear();
    window_seconds.clear();
    measured.clear();
    net.clear();
    modeled_tp.clear();
    wraps = 0;
  }
};

// Read before any window runs, so a bad constants file fails at once.
OpEnergyConstants op_energy_constants(const std::string& path) {
  if (path.empty()) return default_op_energy_constants();
  std::ifstream in(path);
  if (!in) throw UserError(path + ": cannot open");
  std::stringstream text;
  text << in.rdbuf();
  return parse_op_energy_constants(text.str(), path);
}

// What the meter's domains draw with nothing running, in watts.
double idle_watts(Meter& meter, double seconds, const std::function<void()>& sync) {
  sync();
  meter.start();
  const auto t0 = Clock::now();
  std::this_thread::sleep_for(std::chrono::duration<double>(seconds));
  return meter.stop().joules / seconds_since(t0);
}

// Warm-up; returns the iterations that make a window at least `min_window` seconds long.
std::int64_t warm_up(Candidate& candidate, const std::vector<c10::IValue>& inputs, double warmup_seconds, double min_window,
                     const std::function<void()>& sync) {
  std::vector<double> times;
  const auto start = Clock::now();
  while (times.size() < 3 || seconds_since(start) < warmup_seconds) {
    const auto t = Clock::now();
    try {
      candidate.module.forward(inputs);
    } catch (const std::exception& e) {
      std::ostringstream shape;
      for (std::size_t i = 0; i < inputs.size(); ++i)
        if (inputs[i].isTensor()) shape << (i ? ", " : "") << inputs[i].toTensor().sizes();
      throw UserError(candidate.label + ": model fails on input " + shape.str() + " (" + torch_error_summary(e) + ")");
    }
    sync();
    times.push_back(seconds_since(t));
  }
  std::sort(times.begin(), times.end());
  const double typical = std::max(1e-7, times[times.size() / 2]);
  return std::max<std::int64_t>(1, std::int64_t(std::ceil(min_window / typical)));
}

// The median seconds of one forward, over at least `seconds` and 5 runs.
double median_forward(Candidate& candidate, const std::vector<c10::IValue>& inputs, double seconds,
                      const std::function<void()>& sync) {
  std::vector<double> times;
  const auto start = Clock::now();
  while (times.size() < 5 || seconds_since(start) < seconds) {
    const auto t = Clock::now();
    candidate.module.forward(inputs);
    sync();
    times.push_back(seconds_since(t));
  }
  std::sort(times.begin(), times.end());
  return times[times.size() / 2];
}

// The deployable thread set-up a user would find fastest for this model at this batch: LibTorch's
// intra-op threads with the BLAS on 1 thread, or on as many. Timed alternately (1, N, 1, N), the
// better median of each kept, N only when 10% faster; a slow baseline would fake every saving
// measured against it.
void choose_blas_threads(Candidate& candidate, CandidateState& s, const std::vector<c10::IValue>& inputs,
                         const std::function<void()>& sync) {
  const int n = at::get_num_threads();
  if (n <= 1 || !set_blas_threads(1)) {
    s.thread_search = n <= 1 ? "BLAS 1 thread (LibTorch runs 1 thread)" : "BLAS threads fixed (no openblas_set_num_threads)";
    return;
  }
  double best[2] = {1e30, 1e30};
  for (int round = 0; round < 2; ++round)
    for (int k = 0; k < 2; ++k) {
      set_blas_threads(k == 0 ? 1 : n);
      best[k] = std::min(best[k], median_forward(candidate, inputs, 0.15, sync));
    }
  // N BLAS threads beside N LibTorch threads oversubscribe the cores: a near tie in a short probe
  // has turned into windows twice as slow. They are chosen only when clearly faster (by 10%).
  s.blas_threads = best[1] < 0.9 * best[0] ? n : 1;
  set_blas_threads(1);
  s.thread_search = format("BLAS %d thread(s): %.4g ms per batch against %.4g ms with %d", s.blas_threads,
                           1e3 * std::min(best[0], best[1]), 1e3 * std::max(best[0], best[1]), s.blas_threads == 1 ? n : 1);
}

// One window of one candidate: s.iterations timed forwards inside the meter's window.
void run_window(Candidate& candidate, CandidateState& s, const std::vector<c10::IValue>& inputs, std::int64_t batch, Meter* meter,
                const TimePowerModel& time_power, double idle, const std::function<void()>& sync) {
  set_blas_threads(s.blas_threads);
  sync();
  const double cpu0 = process_cpu_seconds();
  if (meter) meter->start();
  const auto t0 = Clock::now();
  auto last_poll = t0;
  for (std::int64_t i = 0; i < s.iterations; ++i) {
    const auto ti = Clock::now();
    candidate.module.forward(inputs);
    sync();
    const auto done = Clock::now();
    s.latencies.push_back(std::chrono::duration<double>(done - ti).count());
    if (meter && done - last_poll > std::chrono::milliseconds(500)) {
      meter->poll();  // long windows: read often enough that no wrap goes unnoticed
      last_poll = done;
    }
  }
  const double seconds = seconds_since(t0);
  std::optional<MeasuredEnergy> energy;
  if (meter) energy = meter->stop();
  const double cpu_seconds = process_cpu_seconds() - cpu0;
  const double inferences = double(s.iterations * batch);
  s.window_seconds.push_back(seconds);
  s.window_latency.push_back(seconds / double(s.iterations));
  s.window_throughput.push_back(inferences / seconds);
  s.modeled_tp.push_back(model_time_power(time_power, cpu_seconds, inferences).joules);
  if (energy) {
    s.measured.push_back(energy->joules / inferences);
    s.net.push_back((energy->joules - idle * seconds) / inferences);
    s.wraps += energy->wraps;
    s.provenance = energy->provenance;
    s.meter_name = energy->meter;
  }
}

// The wider of a candidate's latency and energy intervals, as half-width over mean.
double relative_width(const CandidateState& s, bool metered) {
  const auto width = [](const std::vector<double>& values) {
    const MeanCI ci = mean_ci95(values);
    return ci.mean > 0 ? ci.half_width / ci.mean : 0.0;
  };
  return std::max(width(s.window_latency), width(metered ? s.measured : s.modeled_tp));
}

double widest_interval(const std::vector<CandidateState>& states, bool metered) {
  double widest = 0;
  for (const auto& s : states) widest = std::max(widest, relative_width(s, metered));
  return widest;
}

// Other processes' and the hypervisor's share of the machine's CPU time over `wall` seconds,
// in which this process used `own` CPU seconds (the rest of the quality is filled in later).
MeasurementQuality load_beside(const SystemCpuTimes& before, const SystemCpuTimes& after, double own, double wall) {
  MeasurementQuality load;
  const double capacity = wall * double(logical_cores());
  if (!before.valid || !after.valid || capacity <= 0) return load;
  load.other_load = std::clamp((after.busy - before.busy - own) / capacity, 0.0, 1.0);
  load.steal = std::clamp((after.steal - before.steal) / capacity, 0.0, 1.0);
  return load;
}

// The figures of one candidate over its windows.
RunResult summarize(const Candidate& candidate, const CandidateState& s, const RunOptions& options, const Meter* meter,
                    const TimePowerModel& time_power, const OpEnergyConstants& constants) {
  RunResult r;
  r.label = candidate.label;
  r.device = options.device;
  r.batch = options.batch;
  r.windows = options.windows;
  r.iterations_per_window = s.iterations;
  r.window_seconds = mean_ci95(s.window_seconds).mean;
  r.latency_seconds = mean_ci95(s.window_latency);
  r.p50_seconds = quantile(s.latencies, 0.50);
  std::tie(r.p50_low, r.p50_high) = median_ci95(s.latencies);
  r.p99_seconds = quantile(s.latencies, 0.99);
  r.throughput = mean_ci95(s.window_throughput);
  r.blas_threads = s.blas_threads;
  r.thread_search = s.thread_search;
  if (meter) {
    MeasuredEnergyStats m;
    m.joules_per_inference = mean_ci95(s.measured);
    if (options.idle_seconds > 0) m.net_joules_per_inference = mean_ci95(s.net);
    m.provenance = s.provenance;
    m.meter = meter->name();
    m.domains = meter->domains();
    m.wraps = s.wraps;
    r.measured = m;
    if (m.joules_per_inference.mean <= 0)
      std::fprintf(stderr, "compress: warning: %s read zero energy for %s: windows too short for the counter?\n",
                   meter->name().c_str(), r.label.c_str());
  }
  r.modeled_time_power.joules_per_inference = mean_ci95(s.modeled_tp);
  r.modeled_time_power.model = "time x power";
  r.modeled_time_power.detail = describe_time_power(time_power);
  const auto ops = model_op_energy(constants, candidate.ops);
  r.modeled_ops.joules_per_inference.mean = ops.joules;
  r.modeled_ops.joules_per_inference.n = 1;
  r.modeled_ops.model = ops.model;
  r.modeled_ops.detail = ops.detail;
  return r;
}

}  // namespace

std::vector<RunResult> run_interleaved(std::vector<Candidate>& candidates, const at::Tensor& input,
                                       const RunOptions& options, MeterChoice& choice, bool progress) {
  return run_interleaved(candidates, std::vector<at::Tensor>{input}, options, choice, progress);
}

std::vector<RunResult> run_interleaved(std::vector<Candidate>& candidates, const std::vector<at::Tensor>& arguments,
                                       const RunOptions& options, MeterChoice& choice, bool progress) {
  const std::vector<c10::IValue> input(arguments.begin(), arguments.end());
  if (options.windows < 2)
    throw UserError(option_ref("RunOptions::windows") + " must be at least 2 (a confidence interval needs two)");
  if (options.batch <= 0) throw UserError(option_ref("RunOptions::batch") + " must be positive");
  const c10::Device device = parse_device(options.device);
  Meter* meter = choice.meter.get();
  const double min_window = std::max(options.min_window_seconds, meter ? 20 * meter->update_period_seconds() : 0.0);
  const auto time_power = make_time_power_model(options.cpu_watts, logical_cores());
  const auto constants = op_energy_constants(options.energy_constants);
  const std::function<void()> sync = [&] { compat::synchronize(device); };
  at::NoGradGuard no_grad;

  const double idle = meter && options.idle_seconds > 0 ? idle_watts(*meter, options.idle_seconds, sync) : 0.0;
  std::vector<CandidateState> states(candidates.size());
  for (std::size_t c = 0; c < candidates.size(); ++c) {
    states[c].iterations = warm_up(candidates[c], input, options.warmup_seconds, min_window, sync);
    if (device.is_cpu() && options.search_blas_threads) {
      choose_blas_threads(candidates[c], states[c], input, sync);
      // Windows sized for the chosen set-up.
      set_blas_threads(states[c].blas_threads);
      states[c].iterations = warm_up(candidates[c], input, 0.0, min_window, sync);
      set_blas_threads(1);
    } else {
      states[c].thread_search = device.is_cpu() ? "BLAS 1 thread (search off)" : "GPU: no BLAS threads";
    }
  }

  // Windows interleaved across candidates, so drift (thermal, other load) hits all alike.
  const auto run_round = [&](const std::string& why) {
    for (auto& s : states) s.clear_windows();
    const SystemCpuTimes system0 = system_cpu_times();
    const double own0 = process_cpu_seconds();
    const auto t0 = Clock::now();
    ProgressBar bar("measuring batch " + std::to_string(options.batch) + why, options.windows, progress);
    for (int w = 0; w < options.windows; ++w) {
      for (std::size_t c = 0; c < candidates.size(); ++c)
        run_window(candidates[c], states[c], input, options.batch, meter, time_power, idle, sync);
      bar.update(w + 1, "");
    }
    set_blas_threads(1);  // the process default (configure_threads)
    bar.finish("done");
    return load_beside(system0, system_cpu_times(), process_cpu_seconds() - own0, seconds_since(t0));
  };
  MeasurementQuality load = run_round("");
  int rounds = 1;
  for (double width = widest_interval(states, meter != nullptr); width > options.wide_interval && rounds <= options.remeasure_rounds;
       width = widest_interval(states, meter != nullptr)) {
    load = run_round(format(" again (a +-%.0f%% interval)", 100 * width));
    ++rounds;
  }

  std::vector<RunResult> results;
  for (std::size_t c = 0; c < candidates.size(); ++c) {
    RunResult r = summarize(candidates[c], states[c], options, meter, time_power, constants);
    r.quality = load;
    r.quality.rounds = rounds;
    r.quality.limit = options.wide_interval;
    r.quality.relative_half_width = relative_width(states[c], meter != nullptr);
    results.push_back(r);
  }
  return results;
}

RunResult measure(torch::jit::Module& module, const at::Tensor& input, const RunOptions& options,
                  const OpCounts& ops) {
  std::vector<Candidate> candidates{{"model", module, ops}};
  if (candidates[0].ops.batch != options.batch) candidates[0].ops.batch = options.batch;
  MeterChoice choice = choose_meter(options);
  return run_interleaved(candidates, input, options, choice, /*progress=*/false).front();
}

void Manifest::set(const std::string& key, const std::string& value) {
  for (auto& [k, v] : entries)
    if (k == key) {
      v = value;
      return;
    }
  entries.emplace_back(key, value);
}

std::string Manifest::get(const std::string& key) const {
  for (const auto& [k, v] : entries)
    if (k == key) return v;
  return "";
}

Manifest collect_manifest(const RunOptions& options, const MeterChoice& choice) {
  Manifest m;
  const auto blas = blas_in_use();
  m.set("cpu", cpu_model());
  m.set("logical_cores", std::to_string(logical_cores()));
  m.set("kernel", kernel_release());
  m.set("cpu_governor", read_first_line("/sys/devices/system/cpu/cpu0/cpufreq/scaling_governor"));
  m.set("joulecut", std::string(JOULECUT_VERSION) + " (" + JOULECUT_GIT_REVISION + ")");
  m.set("libtorch", compat::torch_version());
  m.set("onednn", onednn_version());
  m.set("blas", blas.name + (blas.config.empty() ? "" : " [" + blas.config + "]") + " at " + blas.library);
  m.set("blas_threads", options.search_blas_threads && parse_device(options.device).is_cpu()
                            ? "the faster of 1 and " + std::to_string(at::get_num_threads()) +
                                  " per model and batch, timed before the windows"
                            : std::to_string(blas.threads));
  m.set("compiler", JOULECUT_COMPILER);
  m.set("threads", std::to_string(at::get_num_threads()));
  m.set("device", options.device);
  m.set("protocol", "warm-up " + short_number(options.warmup_seconds) + " s; " + std::to_string(options.windows) +
                        " windows of >= " + short_number(options.min_window_seconds) +
                        " s, interleaved across models; mean and 95% CI (Student t) over windows; a set whose interval is wider "
                        "than +-" + short_number(100 * options.wide_interval) + "% of a mean is run again (up to " +
                        std::to_string(options.remeasure_rounds) + " more), every model, and flagged if it stays wide");
  m.set("meter", choice.explanation);
  if (choice.meter) {
    m.set("meter_update_period_s", short_number(choice.meter->update_period_seconds()));
    m.set("energy_reported", options.idle_seconds > 0 ? "gross and net of idle (idle measured for " +
                                                            short_number(options.idle_seconds) + " s)"
                                                      : "gross (no idle baseline; --idle SECONDS adds net)");
  }
  const auto tp = make_time_power_model(options.cpu_watts, logical_cores());
  m.set("model_time_power", describe_time_power(tp));
  m.set("model_op_energy", options.energy_constants.empty() ? default_op_energy_constants().source
                                                            : options.energy_constants);
  return m;
}

struct EnergySession::Impl {
  RunOptions options;
  MeterChoice choice;
  c10::Device device{c10::kCPU};
  TimePowerModel time_power;
  struct Open {
    Clock::time_point start;
    double cpu = 0;
    double joules = 0;
  };
  std::map<std::string, Open> open;
};

EnergySession::EnergySession(const RunOptions& options) : impl_(std::make_unique<Impl>()) {
  impl_->options = options;
  impl_->device = parse_device(options.device);
  impl_->choice = choose_meter(options);
  impl_->time_power = make_time_power_model(options.cpu_watts, logical_cores());
  if (impl_->choice.meter) impl_->choice.meter->start();
}

EnergySession::~EnergySession() {
  if (impl_ && impl_->choice.meter) impl_->choice.meter->stop();
}

const std::string& EnergySession::meter_explanation() const { return impl_->choice.explanation; }

void EnergySession::begin(const std::string& name) {
  if (impl_->open.count(name)) throw UserError("energy window '" + name + "' is already open");
  compat::synchronize(impl_->device);
  Impl::Open o;
  if (impl_->choice.meter) o.joules = impl_->choice.meter->read().joules;
  o.cpu = process_cpu_seconds();
  o.start = Clock::now();
  impl_->open[name] = o;
}

WindowResult EnergySession::end(const std::string& name) {
  const auto it = impl_->open.find(name);
  if (it == impl_->open.end()) throw UserError("energy window '" + name + "' was never begun");
  compat::synchronize(impl_->device);
  WindowResult r;
  r.name = name;
  r.seconds = seconds_since(it->second.start);
  if (impl_->choice.meter) {
    MeasuredEnergy e = impl_->choice.meter->read();
    e.joules -= it->second.joules;
    r.measured = e;
  }
  r.modeled = model_time_power(impl_->time_power, process_cpu_seconds() - it->second.cpu, 1.0);
  impl_->open.erase(it);
  return r;
}

}  // namespace joulecut::measure
