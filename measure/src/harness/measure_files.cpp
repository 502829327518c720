#include "joulecut/measure/measure_files.h"

#include <ATen/Parallel.h>
#include <ATen/ATen.h>

#include <cstdlib>
#include <functional>
#include <map>

#include "joulecut/error.h"
#include "joulecut/evaluate.h"
#include "joulecut/fidelity.h"
#include "joulecut/graph_stats.h"
#include "joulecut/int8.h"
#include "joulecut/model.h"
#include "joulecut/model_input.h"
#include "joulecut/text.h"
#include "joulecut/torch_compat.h"
#include "harness/deployable_choice.h"

namespace joulecut::measure {
namespace {

constexpr std::uint64_t kSyntheticSeed = 1;

std::string dtype_name(const std::string& c10_name) {
  static const std::map<std::string, std::string> names = {
      {"Float", "float32"}, {"Half", "float16"}, {"BFloat16", "bfloat16"}, {"QInt8", "int8"},
      {"QUInt8", "int8"},   {"Char", "int8"},   {"Byte", "int8"}};
  const auto it = names.find(c10_name);
  return it == names.end() ? "float32" : it->second;
}

OpCounts op_counts(const ModelStats& stats) {
  OpCounts ops;
  ops.batch = stats.batch;
  ops.macs = stats.macs;
  for (const auto& l : stats.layers) {
    ops.weight_bytes += l.weight_bytes;
    ops.activation_bytes += l.activation_bytes;
    ops.macs_by_dtype[dtype_name(l.dtype)] += l.macs;
  }
  if (ops.macs_by_dtype.size() == 1) ops.dtype = ops.macs_by_dtype.begin()->first;
  return ops;
}

// `count` samples' inputs from the data set, repeating it if the batch is larger than the set.
std::vector<at::Tensor> input_batch(const TensorDataset& data, std::int64_t count) {
  if (count <= data.size()) {
    auto inputs = data.input_tensors(0, count);
    for (auto& t : inputs) t = t.contiguous();
    return inputs;
  }
  const auto repeats = (count + data.size() - 1) / data.size();
  std::vector<at::Tensor> inputs;
  for (const auto& t : data.input_tensors(0, data.size())) {
    std::vector<std::int64_t> times(std::size_t(t.dim()), 1);
    times[0] = repeats;
    inputs.push_back(t.repeat(times).narrow(0, 0, count).contiguous());
  }
  return inputs;
}

std::string unique_label(const std::string& path, const std::vector<ModelSummary>& taken) {
  std::string label = path.substr(path.find_last_of('/') + 1);
  if (label.size() > 3 && label.compare(label.size() - 3, 3, ".pt") == 0) label.resize(label.size() - 3);
  std::string candidate = label;
  for (int n = 2;; ++n) {
    bool clash = false;
    for (const auto& m : taken) clash = clash || m.label == candidate;
    if (!clash) return candidate;
    candidate = label + "#" + std::to_string(n);
  }
}

// The checks that need no file: UserError for the first problem.
void check_job(const MeasureJob& job) {
  if (job.models.empty()) throw UserError("no model to measure");
  if (job.metric != "auto" && job.metric != "top1" && job.metric != "agreement" && job.metric != "cosine" &&
      job.metric != "snr")
    throw UserError(option_ref("MeasureJob::metric") + " '" + job.metric +
                    "': choose top1 (accuracy), agreement, cosine or snr (fidelity against "
                    "the first model), or auto");
  if (job.batches.empty()) throw UserError(option_ref("MeasureJob::batches") + ": give at least one batch size");
  for (auto b : job.batches)
    if (b <= 0)
      throw UserError(option_ref("MeasureJob::batches") + " " + std::to_string(b) + ": batch sizes must be positive");
}

bool fidelity_metric(const std::string& metric) {
  return metric == "agreement" || metric == "cosine" || metric == "snr";
}

// The job's models, loaded once, and what they are all fed.
struct Models {
  // Each model's deployable forms (on the device); each batch measures the fastest there.
  std::vector<std::vector<DeployableForm>> forms;
  std::vector<torch::jit::Module> originals;  // as loaded: graph statistics and fidelity
  std::optional<TensorDataset> data;
  std::optional<ResolvedInput> input;  // the first model's; every model is fed the same
  std::string how;                     // how they were prepared, for the manifest
  std::vector<std::string> chosen;     // "MODEL at batch N: FORM: ..." for the manifest
  std::vector<std::string> unfrozen;   // "MODEL: why" for each model with a form that could not be made

  // A batch of `count`: real data, or (no data for the model's input) generated from its spec.
  std::vector<at::Tensor> batch_of(std::int64_t count) const {
    return input->synthetic ? synthetic_inputs(input->spec, count, kSyntheticSeed) : input_batch(*data, count);
  }
};

// Resolves the input (from the first model) and loads the data once; UserError naming `path`
// when the model does not accept them.
void check_input(Models& models, const MeasureJob& job, LoadedModel& loaded, const std::string& path) {
  std::optional<DatasetSpec> spec;
  if (loaded.metadata) spec = loaded.metadata->dataset;
  if (!models.input) models.input = resolve_input(job.data, loaded);
  if (models.input->synthetic) {
    check_model_accepts_inputs(loaded.module, models.batch_of(2), path);
  } else {
    if (!models.data) models.data = load_dataset(job.data, Split::test, spec);
    check_model_accepts(loaded.module, *models.data, path);
  }
}

// Top-1 accuracy of the model as deployed, or why there is none.
void evaluate_accuracy(ModelSummary& summary, DeployableForm& deployed_form, const Models& models,
                       const MeasureJob& job, const c10::Device& device) {
  torch::jit::Module& deployed = deployed_form.module;
  const std::string& form = deployed_form.name;
  if (models.input->synthetic) {
    summary.accuracy_data = "n/a (no data)";
  } else if (!models.data->labelled()) {
    summary.accuracy_data = "n/a (no labels)";
  } else if (fidelity_metric(job.metric)) {
    summary.accuracy_data = "not measured (--metric " + job.metric + ")";
  } else if (job.accuracy_limit >= 0) {
    TensorDataset eval_data = take_first(*models.data, job.accuracy_limit);
    if (device.is_cuda()) {
      eval_data.stream_device = device;
      if (eval_data.images.defined()) eval_data.images = eval_data.images.to(device);
      for (auto& t : eval_data.more_inputs) t = t.to(device);
      if (eval_data.labelled()) eval_data.labels = eval_data.labels.to(device);
    }
    summary.accuracy = evaluate(deployed, eval_data).accuracy;
    summary.accuracy_data = eval_data.description + ", model deployed " + form;
  }
}

// The forms a model may be measured in, on the device: plain only with --no-optimize, else every
// deployable form (a model that cannot be frozen is measured plain, and the manifest says why).
std::vector<DeployableForm> deployable(const torch::jit::Module& module, const MeasureJob& job, const c10::Device& device,
                                       const std::string& label, Models& models) {
  torch::jit::Module copy = module.clone();
  copy.to(device);
  if (!job.optimize) {
    if (copy.hasattr("training")) copy.eval();
    models.how = "plain TorchScript modules in eval mode (--no-optimize)";
    return {{"plain", copy}};
  }
  DeployableForms made = deployable_forms(copy);
  models.how = "each model in the fastest of its deployable forms at each batch (plain, frozen, frozen + "
               "optimize_for_inference: " + form_choice_rule() + ")";
  if (!made.why_not_frozen.empty()) models.unfrozen.push_back(label + ": " + made.why_not_frozen);
  return made.forms;
}

// Loads, checks, analyzes, prepares and evaluates each model, in order; their summaries go
// into `report.models`.
Models load_models(const MeasureJob& job, const c10::Device& device, Report& report) {
  Models models;
  for (const auto& path : job.models) {
    LoadedModel loaded = load_model(path);
    check_input(models, job, loaded, path);
    ModelSummary summary;
    summary.label = unique_label(path, report.models);
    summary.path = path;
    summary.file_bytes = std::int64_t(loaded.file_bytes);
    loaded.module.eval();
    const ModelStats stats = analyze_model(loaded.module, models.batch_of(1));
    summary.parameters = stats.parameters;
    summary.macs_per_inference = stats.macs;
    std::vector<DeployableForm> forms = deployable(loaded.module, job, device, summary.label, models);
    // Accuracy on the preferred form (the last); the forms compute the same function up to
    // float rounding (optimize_for_inference folds conv-BN), and the description names it.
    evaluate_accuracy(summary, forms.back(), models, job, device);
    report.models.push_back(summary);
    models.forms.push_back(forms);
    models.originals.push_back(loaded.module);
  }
  return models;
}

// Fidelity against the baseline on the same inputs: asked for, or the only quality there is.
void add_fidelity(const MeasureJob& job, Models& models, Report& report) {
  const bool want_fidelity =
      fidelity_metric(job.metric) || (job.metric == "auto" && models.data && !models.data->labelled());
  if (!want_fidelity || models.originals.size() <= 1) return;
  if (models.input->synthetic)
    throw UserError(option_ref("MeasureJob::metric") + " " + job.metric + ": fidelity needs real inputs; give " +
                    option_ref("DataSource::data"));
  const TensorDataset inputs = take_first(*models.data, job.accuracy_limit > 0 ? job.accuracy_limit : 0);
  for (std::size_t i = 1; i < models.originals.size(); ++i) {
    const Fidelity f = fidelity(models.originals[0], models.originals[i], inputs);
    ModelSummary::Fidelity out{f.agreement, f.cosine, f.snr_db, f.max_abs_error, fidelity_text(f)};
    report.models[i].fidelity = out;
    report.models[i].fidelity_data = inputs.description;
  }
}

// Every model at every batch, windows interleaved; the runs go into `report.runs`.
void measure_batches(const MeasureJob& job, Models& models, const c10::Device& device, MeterChoice& choice,
                     Report& report) {
  for (const auto batch : job.batches) {
    RunOptions options = job.run;
    options.batch = batch;
    std::vector<at::Tensor> arguments = models.batch_of(batch);
    std::vector<Candidate> candidates;
    std::vector<at::Tensor> on_device = arguments;
    for (auto& a : on_device) a = a.to(device);
    const std::vector<c10::IValue> inputs(on_device.begin(), on_device.end());
    const std::function<void()> sync = [&] { compat::synchronize(device); };
    for (std::size_t i = 0; i < models.forms.size(); ++i) {
      const FormChoice form = fastest_form(models.forms[i], inputs, sync);
      models.chosen.push_back(report.models[i].label + " at batch " + std::to_string(batch) + ": " + form.how);
      Candidate c{report.models[i].label, form.module, {}};
      c.ops = op_counts(analyze_model(models.originals[i], arguments));
      candidates.push_back(c);
    }
    arguments = on_device;
    for (auto& r : run_interleaved(candidates, arguments, options, choice, job.progress)) report.runs.push_back(r);
  }
}

// Which int8 kernels ran, for the manifest ("" when none did): joulecut's few-channel
// convolution runs where it timed faster than oneDNN's on the layer's first input, so two
// runs may differ.
std::string int8_kernels_used() {
#ifdef JOULECUT_HAVE_ONEDNN
  const std::string kernels = int8_implementations();
  if (kernels.empty()) return "";
  const char* value = std::getenv("JOULECUT_INT8_SMALL_CONV");
  const std::string forced = value && std::string(value) != "auto" ? value : "";
  std::string how;
  if (!forced.empty()) {
    how = " (JOULECUT_INT8_SMALL_CONV=" + forced + ")";
  } else if (kernels.find("joulecut:") != std::string::npos) {
    how = " (joulecut's where it timed faster than oneDNN's on a layer's first input)";
  }
  return kernels + how;
#else
  return "";
#endif
}

// The manifest: this process's, and how this job measured.
Manifest job_manifest(const MeasureJob& job, const Models& models, const MeterChoice& choice, const Report& report) {
  Manifest manifest = collect_manifest(job.run, choice);
  std::vector<std::string> batches;
  for (auto b : job.batches) batches.push_back(std::to_string(b));
  manifest.set("batches", join(batches, ","));
  manifest.set("dtype", "as stored in each model");
  std::vector<std::string> setups;
  for (const auto& r : report.runs)
    setups.push_back(r.label + " at batch " + std::to_string(r.batch) + ": " + r.thread_search);
  manifest.set("blas_threads", "the faster of 1 and " + std::to_string(at::get_num_threads()) +
                                   " per model and batch, timed before the windows (" + join(setups, "; ") + ")");
  manifest.set("prepared", models.how + (models.unfrozen.empty() ? "" : "; forms that could not be made: " +
                                                                          join(models.unfrozen, "; ")));
  if (job.optimize) manifest.set("deployable_forms", join(models.chosen, "; "));
  if (const std::string kernels = int8_kernels_used(); !kernels.empty()) manifest.set("int8_kernels", kernels);
  const ResolvedInput& input = *models.input;
  manifest.set("input_spec", input.synthetic || !models.data ? describe_input_spec(input.spec) + " (from the " +
                                                                     input.origin + ")"
                                                               : describe_input_spec(input_spec_of(*models.data)) +
                                                                     " (the data's own)");
  manifest.set("input", input.synthetic ? "synthetic input (no data given): generated from the input spec, seed " +
                                              std::to_string(kSyntheticSeed) + "; accuracy n/a"
                                        : "first images of " + models.data->description + " (real data, fixed order)");
  manifest.set("seeds", input.synthetic ? "synthetic input seed " + std::to_string(kSyntheticSeed) +
                                              "; each model's training seed is in its metadata"
                                        : "none drawn while measuring; each model's training seed is in its metadata");
  return manifest;
}

}  // namespace

Report measure_files(const MeasureJob& job) {
  check_job(job);
  const c10::Device device = parse_device(job.run.device);
  MeterChoice choice = choose_meter(job.run);
  Report report;
  Models models = load_models(job, device, report);
  add_fidelity(job, models, report);
  if (job.progress) std::fprintf(stderr, "energy meter: %s\n", choice.explanation.c_str());
  measure_batches(job, models, device, choice, report);
  report.manifest = job_manifest(job, models, choice, report);
  report.title = job.models.size() == 1 ? "compress measure " + job.models.front()
                                        : "compress compare (ratios against " + report.models.front().label + ")";
  return report;
}

}  // namespace joulecut::measure
