// compress: the joulecut command line. Each subcommand is one call into the C++ API.
#include <CLI/CLI.hpp>
#include <nlohmann/json.hpp>

#include <ATen/Parallel.h>

#include <cstdio>
#include <iostream>
#include <sstream>

#include "joulecut/atomic_file.h"
#include "joulecut/error.h"
#include "joulecut/evaluate.h"
#include "joulecut/graph_stats.h"
#include "joulecut/measure/measure_files.h"
#include "joulecut/measure/sweep.h"
#include "joulecut/measure/tradeoff.h"
#include "joulecut/recipe.h"
#include "joulecut/model.h"
#include "joulecut/models.h"
#include "joulecut/platform.h"
#include "joulecut/prune.h"
#include "joulecut/sensitivity.h"
#include "joulecut/calibrate.h"
#include "joulecut/distill.h"
#include "joulecut/quantize.h"
#include "joulecut/torch_compat.h"
#include "joulecut/version.h"

namespace {

using joulecut::UserError;
using json = nlohmann::json;

std::string shape_text(const std::vector<std::int64_t>& shape) {
  std::string out = "[";
  for (std::size_t i = 0; i < shape.size(); ++i) out += (i ? "," : "") + std::to_string(shape[i]);
  return out + "]";
}

std::string human_count(double v) {
  char buffer[32];
  if (v >= 1e9) std::snprintf(buffer, sizeof buffer, "%.2fG", v / 1e9);
  else if (v >= 1e6) std::snprintf(buffer, sizeof buffer, "%.2fM", v / 1e6);
  else if (v >= 1e3) std::snprintf(buffer, sizeof buffer, "%.1fk", v / 1e3);
  else std::snprintf(buffer, sizeof buffer, "%.0f", v);
  return buffer;
}

std::string human_bytes(double v) {
  char buffer[32];
  if (v >= 1 << 20) std::snprintf(buffer, sizeof buffer, "%.2f MiB", v / (1 << 20));
  else if (v >= 1 << 10) std::snprintf(buffer, sizeof buffer, "%.1f KiB", v / (1 << 10));
  else std::snprintf(buffer, sizeof buffer, "%.0f B", v);
  return buffer;
}

// Settings shared by every subcommand that runs a model.
struct RunSettings {
  int threads = 0;
};

void apply_threads(const RunSettings& settings) {
  joulecut::configure_threads(settings.threads);
  const auto blas = joulecut::blas_info();
  if (blas.is_reference())
    std::fprintf(stderr,
                 "compress: warning: LibTorch is calling the reference BLAS (%s), ~60x slower than OpenBLAS "
                 "for fp32 linear layers; install libopenblas0-pthread (scripts/setup)\n",
                 blas.library.c_str());
}

json runtime_json() {
  const auto blas = joulecut::blas_info();
  return {{"threads", at::get_num_threads()},
          {"blas", blas.name},
          {"blas_library", blas.library},
          {"blas_config", blas.config},
          {"blas_threads", blas.threads},
          {"libtorch", joulecut::compat::torch_version()},
          {"joulecut", JOULECUT_VERSION},
          {"git_revision", JOULECUT_GIT_REVISION},
          {"cpu", joulecut::cpu_model()}};
}

// ---- compress info ------------------------------------------------------------------------
struct InfoOptions {
  std::string model;
  bool json = false;
};

void run_info(const InfoOptions& options) {
  joulecut::configure_threads(1);
  auto loaded = joulecut::load_model(options.model);
  const joulecut::DatasetSpec spec =
      loaded.metadata ? loaded.metadata->dataset : joulecut::fashion_mnist_spec();
  loaded.module.eval();
  const at::Tensor example = at::zeros({1, spec.channels, spec.height, spec.width});
  joulecut::ModelStats stats;
  try {
    stats = joulecut::analyze_model(loaded.module, example);
  } catch (const UserError& e) {
    throw UserError(options.model + ": " + e.what());
  }
  if (options.json) {
    json layers = json::array();
    for (const auto& l : stats.layers)
      layers.push_back({{"name", l.name},
                        {"op", l.op},
                        {"input_shape", l.input_shape},
                        {"weight_shape", l.weight_shape},
                        {"output_shape", l.output_shape},
                        {"params", l.params},
                        {"macs", l.macs},
                        {"weight_sparsity", l.weight_shape.empty() ? 0.0 : double(l.weight_zeros) /
                                                double(c10::multiply_integers(l.weight_shape))},
                        {"dtype", l.dtype}});
    json out = {{"model", options.model},
                {"file_bytes", loaded.file_bytes},
                {"sha256", joulecut::sha256_file(options.model)},
                {"arch", loaded.metadata ? loaded.metadata->arch : ""},
                {"input_shape", {1, spec.channels, spec.height, spec.width}},
                {"input_spec_source", loaded.metadata ? "model metadata" : "default (fashion-mnist)"},
                {"parameters", stats.parameters},
                {"parameter_bytes", stats.parameter_bytes},
                {"macs_per_inference", stats.macs},
                {"weight_sparsity", stats.weight_sparsity()},
                {"dtypes", stats.dtypes},
                {"layers", layers}};
    if (loaded.metadata) out["provenance"] = json::parse(loaded.metadata->provenance_json);
    std::cout << out.dump(2) << "\n";
    return;
  }
  std::printf("model      %s (%s, sha256 %s)\n", options.model.c_str(), human_bytes(double(loaded.file_bytes)).c_str(),
              joulecut::sha256_file(options.model).substr(0, 16).c_str());
  if (loaded.metadata) {
    std::printf("arch       %s\n", loaded.metadata->arch.empty() ? "(not a reference model)" : loaded.metadata->arch.c_str());
    std::printf("input      %s, %s, normalized (x - %.4f) / %.4f\n",
                shape_text({1, spec.channels, spec.height, spec.width}).c_str(), spec.name.c_str(), spec.mean,
                spec.stddev);
  } else {
    std::printf("input      %s (no joulecut metadata in the file: assumed fashion-mnist)\n",
                shape_text({1, spec.channels, spec.height, spec.width}).c_str());
  }
  std::string dtypes;
  for (const auto& d : stats.dtypes) dtypes += (dtypes.empty() ? "" : ", ") + d;
  std::printf("params     %s (%s in parameters and buffers), dtype %s\n", human_count(double(stats.parameters)).c_str(),
              human_bytes(double(stats.parameter_bytes)).c_str(), dtypes.empty() ? "none" : dtypes.c_str());
  std::printf("MACs       %s per inference (conv, linear and matmul layers)\n", human_count(double(stats.macs)).c_str());
  std::printf("sparsity   %.2f%% zero weights in those layers\n\n", 100 * stats.weight_sparsity());
  std::printf("%-28s %-18s %-16s %-16s %10s %12s %9s\n", "layer", "op", "weight", "output", "params", "MACs", "sparsity");
  for (const auto& l : stats.layers) {
    const double elems = l.weight_shape.empty() ? 1.0 : double(c10::multiply_integers(l.weight_shape));
    std::printf("%-28s %-18s %-16s %-16s %10lld %12lld %8.2f%%\n", l.name.c_str(), l.op.c_str(),
                shape_text(l.weight_shape).c_str(), shape_text(l.output_shape).c_str(), (long long)l.params,
                (long long)l.macs, 100.0 * double(l.weight_zeros) / elems);
  }
}

// ---- compress eval ------------------------------------------------------------------------
struct EvalCliOptions {
  std::string model;
  joulecut::DataSource data;
  std::int64_t batch = 256;
  std::int64_t limit = 0;
  bool json = false;
};

void run_eval(const EvalCliOptions& options, const RunSettings& settings) {
  apply_threads(settings);
  auto loaded = joulecut::load_model(options.model);
  std::optional<joulecut::DatasetSpec> spec;
  if (loaded.metadata) spec = loaded.metadata->dataset;
  auto data = joulecut::take_first(joulecut::load_dataset(options.data, joulecut::Split::test, spec), options.limit);
  joulecut::check_model_accepts(loaded.module, data, options.model);
  const auto result = joulecut::evaluate(loaded.module, data, {options.batch});
  const auto& acc = result.accuracy;
  const auto classes = std::int64_t(result.confusion.size());
  const auto class_name = [&](std::int64_t c) {
    return c < std::int64_t(data.spec.class_names.size()) ? data.spec.class_names[c] : "class " + std::to_string(c);
  };
  struct Confusion {
    std::int64_t truth, predicted, count;
  };
  std::vector<Confusion> confusions;
  for (std::int64_t t = 0; t < classes; ++t)
    for (std::int64_t p = 0; p < classes; ++p)
      if (t != p && result.confusion[t][p] > 0) confusions.push_back({t, p, result.confusion[t][p]});
  std::sort(confusions.begin(), confusions.end(), [](auto& a, auto& b) { return a.count > b.count; });
  if (confusions.size() > 5) confusions.resize(5);

  if (options.json) {
    json per_class = json::array();
    for (std::int64_t c = 0; c < classes; ++c) {
      std::int64_t total = 0;
      for (auto v : result.confusion[c]) total += v;
      per_class.push_back({{"class", class_name(c)},
                           {"samples", total},
                           {"accuracy", total ? double(result.confusion[c][c]) / double(total) : 0.0}});
    }
    json top = json::array();
    for (const auto& c : confusions)
      top.push_back({{"true", class_name(c.truth)}, {"predicted", class_name(c.predicted)}, {"count", c.count}});
    json out = {{"model", options.model},
                {"data", data.description},
                {"samples", acc.trials},
                {"correct", acc.successes},
                {"accuracy", acc.value},
                {"accuracy_ci95", {acc.low, acc.high}},
                {"ci_method", "Wilson score interval, 95%"},
                {"per_class", per_class},
                {"confusion", result.confusion},
                {"most_confused", top},
                {"seconds", result.seconds},
                {"runtime", runtime_json()}};
    std::cout << out.dump(2) << "\n";
    return;
  }
  std::printf("model     %s\n", options.model.c_str());
  std::printf("data      %s\n", data.description.c_str());
  std::printf("accuracy  %.2f%%  (95%% CI %.2f-%.2f%%, Wilson; %lld of %lld correct)\n", 100 * acc.value,
              100 * acc.low, 100 * acc.high, (long long)acc.successes, (long long)acc.trials);
  std::printf("\nper class:\n");
  for (std::int64_t c = 0; c < classes; ++c) {
    std::int64_t total = 0;
    for (auto v : result.confusion[c]) total += v;
    if (total == 0) continue;
    std::printf("  %-12s %6.2f%%  (%lld)\n", class_name(c).c_str(), 100.0 * double(result.confusion[c][c]) / double(total),
                (long long)total);
  }
  std::printf("\nmost confused (true -> predicted):\n");
  for (const auto& c : confusions)
    std::printf("  %-12s -> %-12s %lld\n", class_name(c.truth).c_str(), class_name(c.predicted).c_str(),
                (long long)c.count);
  const auto blas = joulecut::blas_info();
  std::printf("\n%d threads, BLAS %s, LibTorch %s, %.2f s\n", at::get_num_threads(), blas.name.c_str(),
              joulecut::compat::torch_version().c_str(), result.seconds);
}

// ---- compress train -----------------------------------------------------------------------
struct TrainCliOptions {
  joulecut::TrainOptions train;
  joulecut::DataSource data;
  std::string output;
  bool json = false;
};

void run_train(TrainCliOptions options, const RunSettings& settings, const std::string& command) {
  apply_threads(settings);
  options.train = joulecut::with_defaults(options.train);
  // Fail before hours of training, not after.
  const std::string dir = std::filesystem::path(options.output).parent_path().string();
  if (!dir.empty() && !std::filesystem::is_directory(dir))
    throw UserError(options.output + ": cannot write: directory " + dir + " does not exist");
  std::fprintf(stderr, "training %s (%s): %d epochs, batch %lld, lr %g, seed %llu, %d threads\n",
               options.train.arch.c_str(), joulecut::describe_architecture(options.train.arch).c_str(),
               options.train.epochs, (long long)options.train.batch, options.train.learning_rate,
               (unsigned long long)options.train.seed, at::get_num_threads());
  auto result = joulecut::train_reference_model(options.train, options.data, command);
  joulecut::save_model(result.module, result.metadata, options.output);
  const std::string sha = joulecut::sha256_file(options.output);
  double mean_epoch = 0;
  for (double s : result.epoch_seconds) mean_epoch += s / double(result.epoch_seconds.size());
  if (options.json) {
    json out = json::parse(result.metadata.provenance_json);
    out["output"] = options.output;
    out["sha256"] = sha;
    out["epoch_seconds"] = result.epoch_seconds;  // not stored in the file: it would change its hash
    std::cout << out.dump(2) << "\n";
    return;
  }
  std::printf("wrote %s\n  sha256 %s\n  test accuracy %.2f%%, %.1f s per epoch (%d threads)\n", options.output.c_str(),
              sha.c_str(), 100 * result.test_accuracy, mean_epoch, at::get_num_threads());
}

void add_data_options(CLI::App* app, joulecut::DataSource& data);

// ---- compress prune -----------------------------------------------------------------------
struct PruneCliOptions {
  std::string model, output, method = "magnitude";
  joulecut::MagnitudePruneOptions magnitude;
  joulecut::NMPruneOptions nm;
  joulecut::ChannelPruneOptions channel;
  joulecut::LayerSelection layers;
  int finetune_epochs = 0;
  double finetune_lr = 0.01;
  std::uint64_t seed = 1;
  joulecut::DataSource data;
  bool no_measure = false;
  bool no_progress = false;
  bool sparse_runtime = false;
  double min_speedup = joulecut::SparseLoweringOptions{}.min_speedup;
  int windows = 5;
  std::string batches = "64";
};

std::vector<std::int64_t> parse_batches(const std::string& text);

// A pass's per-layer report: sparsity (%), channel counts, or latency (us), as the pass says.
void print_pass_report(const joulecut::PassReport& report) {
  std::printf("%s: %s\n", report.pass.c_str(), report.summary.c_str());
  const std::string what = report.layers.empty() ? "" : report.layers[0].what;
  const std::string heading = what == "latency_us" ? "us/batch" : what.empty() ? "sparsity" : what;
  std::printf("  %-10s %10s %10s  %s\n", heading.c_str(), "before", "after", "layer");
  for (const auto& l : report.layers) {
    const char* sep = l.note.empty() ? "" : "  ";
    if (what == "sparsity")
      std::printf("  %-10s %9.2f%% %9.2f%%  %s%s%s\n", "", 100 * l.before, 100 * l.after, l.layer.c_str(), sep, l.note.c_str());
    else if (what == "latency_us" && l.before == 0)
      std::printf("  %-10s %10s %10s  %s%s%s\n", "", "-", "-", l.layer.c_str(), sep, l.note.c_str());
    else
      std::printf("  %-10s %10.*f %10.*f  %s%s%s\n", "", what == "latency_us" ? 1 : 0, l.before, what == "latency_us" ? 1 : 0,
                  l.after, l.layer.c_str(), sep, l.note.c_str());
  }
  for (const auto& n : report.notes) std::printf("  note: %s\n", n.c_str());
}

// Loads a model, runs passes in order, writes the result atomically with its provenance,
// prints each pass's report, then measures before and after through the harness.
struct ApplyJob {
  std::string model, output;
  std::uint64_t seed = 1;
  bool no_progress = false, no_measure = false;
  int windows = 5;
  std::string batches = "64";
  joulecut::DataSource data;
  bool needs_training_data = false;
};

// A pipeline's input: the model, the metadata its outputs inherit, and the data set when a
// pass trains or calibrates.
struct PipelineInput {
  std::string path;
  joulecut::LoadedModel loaded;
  joulecut::ModelMetadata metadata;
  std::string sha256;
  std::optional<joulecut::TensorDataset> train, test;
};

PipelineInput load_pipeline_input(const std::string& model, const joulecut::DataSource& data, bool with_data) {
  PipelineInput in{model, joulecut::load_model(model), {}, joulecut::sha256_file(model), {}, {}};
  std::optional<joulecut::DatasetSpec> spec;
  if (in.loaded.metadata) spec = in.loaded.metadata->dataset;
  if (in.loaded.metadata) in.metadata = *in.loaded.metadata;
  else in.metadata.dataset = spec ? *spec : joulecut::fashion_mnist_spec();
  if (with_data) {
    in.train = joulecut::load_dataset(data, joulecut::Split::train, spec);
    in.test = joulecut::load_dataset(data, joulecut::Split::test, spec);
    joulecut::check_model_accepts(in.loaded.module, *in.test, model);
  }
  return in;
}

// Precondition: `in` outlives the context (it points into it).
joulecut::PassContext pass_context(const PipelineInput& in, std::uint64_t seed, bool progress) {
  joulecut::PassContext context;
  context.seed = seed;
  context.teacher = &in.loaded.module;  // a distill pass learns from the model as it was given
  context.progress = progress;
  if (in.train) context.train = &*in.train;
  if (in.test) context.test = &*in.test;
  return context;
}

json pipeline_provenance(const std::string& command, const std::string& pipeline, std::uint64_t seed, const PipelineInput& in) {
  return {{"command", command},
          {"pipeline", pipeline},
          {"seed", seed},
          {"source", in.path},
          {"source_sha256", in.sha256},
          {"source_provenance", in.loaded.metadata ? json::parse(in.loaded.metadata->provenance_json) : json()}};
}

// Measures `models` side by side (windows interleaved, ratios against the first); the table.
std::string measure_side_by_side(const std::vector<std::string>& models, const joulecut::DataSource& data,
                                 const std::string& batches, int windows, bool progress) {
  joulecut::measure::MeasureJob job;
  job.models = models;
  job.data = data;
  job.batches = parse_batches(batches);
  job.run.windows = windows;
  job.progress = progress;
  std::ostringstream table;
  joulecut::measure::write_table(table, joulecut::measure::measure_files(job));
  return table.str();
}

void apply_and_measure(const std::vector<std::unique_ptr<joulecut::Pass>>& passes, ApplyJob o, const std::string& command) {
  const PipelineInput input = load_pipeline_input(o.model, o.data, o.needs_training_data);
  joulecut::PassContext context = pass_context(input, o.seed, !o.no_progress);
  torch::jit::Module module = input.loaded.module;
  std::vector<joulecut::PassReport> reports;
  for (const auto& p : passes) {
    auto result = p->run(module, context);
    module = result.module;
    reports.push_back(result.report);
  }
  joulecut::ModelMetadata metadata = input.metadata;
  metadata.provenance_json = pipeline_provenance(command, joulecut::print_pipeline(passes), o.seed, input).dump();
  joulecut::save_model(module, metadata, o.output, o.model);
  for (const auto& r : reports) print_pass_report(r);
  std::printf("wrote %s (sha256 %s)\n\n", o.output.c_str(), joulecut::sha256_file(o.output).substr(0, 16).c_str());
  if (o.no_measure) return;
  // Passes never measure; the harness does, before and after, side by side.
  std::fputs(measure_side_by_side({o.model, o.output}, o.data, o.batches, o.windows, !o.no_progress).c_str(), stdout);
}

// Before any work: the output must be writable and must not be the input.
void check_output(const std::string& model, const std::string& output) {
  joulecut::refuse_to_overwrite_input(model, output);
  const std::string dir = std::filesystem::path(output).parent_path().string();
  if (!dir.empty() && !std::filesystem::is_directory(dir))
    throw UserError(output + ": cannot write: directory " + dir + " does not exist");
}

void run_prune(PruneCliOptions o, const RunSettings& settings, const std::string& command) {
  apply_threads(settings);
  check_output(o.model, o.output);
  std::unique_ptr<joulecut::Pass> pass;
  if (o.method == "magnitude") {
    o.magnitude.layers = o.layers;
    o.magnitude.finetune_epochs = o.finetune_epochs;
    o.magnitude.finetune_lr = o.finetune_lr;
    pass = std::make_unique<joulecut::MagnitudePrunePass>(o.magnitude);
  } else if (o.method == "nm") {
    o.nm.layers = o.layers;
    o.nm.finetune_epochs = o.finetune_epochs;
    o.nm.finetune_lr = o.finetune_lr;
    pass = std::make_unique<joulecut::NMPrunePass>(o.nm);
  } else if (o.method == "channel") {
    o.channel.layers = o.layers;
    o.channel.finetune_epochs = o.finetune_epochs;
    o.channel.finetune_lr = o.finetune_lr;
    pass = std::make_unique<joulecut::ChannelPrunePass>(o.channel);
  } else {
    throw UserError("--method '" + o.method + "': choose magnitude, nm or channel");
  }
  std::vector<std::unique_ptr<joulecut::Pass>> passes;
  passes.push_back(std::move(pass));
  if (o.sparse_runtime) {
    joulecut::SparseLoweringOptions lowering;
    lowering.batch = parse_batches(o.batches).front();
    lowering.min_speedup = o.min_speedup;
    passes.push_back(std::make_unique<joulecut::LowerSparsePass>(lowering));
  }
  ApplyJob job{o.model, o.output, o.seed, o.no_progress, o.no_measure, o.windows, o.batches, o.data, o.finetune_epochs > 0};
  apply_and_measure(passes, job, command);
}

// ---- compress quantize -------------------------------------------------------------------
struct QuantizeCliOptions {
  std::string model, output, backend = "onednn", max_accuracy_drop;
  std::string percentile;                 // as typed, so the pass parses exactly what was given
  std::vector<std::string> static_given;  // static-only options given on the command line
  bool dynamic = false;
  joulecut::DynamicQuantizeOptions dynamic_options;
  joulecut::StaticQuantizeOptions static_options;
  joulecut::DataSource data;
  bool no_measure = false, no_progress = false;
  int windows = 5;
  std::string batches = "1,64";
};

void run_quantize(QuantizeCliOptions o, const RunSettings& settings, const std::string& command) {
  apply_threads(settings);
  check_output(o.model, o.output);
  std::vector<std::unique_ptr<joulecut::Pass>> passes;
  if (o.dynamic) {
    if (o.backend != "torch")
      throw UserError("--dynamic runs on LibTorch's quantized::linear_dynamic: add --backend torch (the onednn backend "
                      "is static int8)");
    if (!o.static_given.empty())
      throw UserError(o.static_given.front() + " applies to static int8, not --dynamic (activations are quantized per batch)");
    passes.push_back(std::make_unique<joulecut::DynamicQuantizePass>(o.dynamic_options));
  } else {
    // Options go through the pass's own parser, so the CLI and pipelines check them the same way.
    joulecut::PassOptionMap map{{"backend", o.backend},
                                {"observer", o.static_options.observer},
                                {"samples", std::to_string(o.static_options.samples)},
                                {"exclude", o.dynamic_options.exclude},
                                {"validation", std::to_string(o.static_options.validation)}};
    if (!o.max_accuracy_drop.empty()) map["max-accuracy-drop"] = o.max_accuracy_drop;
    if (!o.percentile.empty()) map["percentile"] = o.percentile;
    const auto options = joulecut::StaticQuantizePass::parse(map);
    const auto preparation = joulecut::needed_preparation(joulecut::load_model(o.model).module);
    if (preparation.batchnorm) passes.push_back(std::make_unique<joulecut::FoldBatchNormPass>());
    if (preparation.relu) passes.push_back(std::make_unique<joulecut::FuseReluPass>());
    passes.push_back(std::make_unique<joulecut::StaticQuantizePass>(options));
  }
  ApplyJob job{o.model, o.output, 1, o.no_progress, o.no_measure, o.windows, o.batches, o.data, !o.dynamic};
  apply_and_measure(passes, job, command);
}

// ---- compress run / sweep / search / report -------------------------------------------------
// Settings given on the command line; with a recipe file they override the recipe's.
struct RecipeOverrides {
  std::string passes, batches, data, images, labels;
  int windows = 0;
  std::uint64_t seed = 0;
  bool seed_given = false;
};

std::string short_number(double v) {
  char buffer[32];
  std::snprintf(buffer, sizeof buffer, "%g", v);
  return buffer;
}

bool is_recipe_file(const std::string& path) {
  const std::string ext = std::filesystem::path(path).extension().string();
  return ext == ".yaml" || ext == ".yml" || ext == ".json";
}

joulecut::Recipe recipe_for(const std::string& model_or_recipe, const RecipeOverrides& o, bool needs_passes) {
  joulecut::Recipe recipe;
  if (is_recipe_file(model_or_recipe)) {
    if (!o.passes.empty())
      throw UserError(model_or_recipe + ": --passes is for a model file; a recipe names its passes (edit 'passes:')");
    recipe = joulecut::load_recipe(model_or_recipe);
  } else {
    if (needs_passes && o.passes.empty())
      throw UserError(model_or_recipe + ": give --passes \"pass<k=v>,...\" with a model, or a recipe file (.yaml, .json)");
    if (!needs_passes)
      throw UserError(model_or_recipe + ": not a recipe (.yaml, .yml or .json); sweeps and searches run recipes");
    recipe = joulecut::inline_recipe(model_or_recipe, o.passes);
  }
  if (!o.batches.empty()) recipe.measure.batches = parse_batches(o.batches);
  if (o.windows > 0) recipe.measure.windows = o.windows;
  if (!o.data.empty()) recipe.data = o.data;
  if (!o.images.empty() || !o.labels.empty()) {
    recipe.images = o.images;
    recipe.labels = o.labels;
  }
  if (o.seed_given) recipe.seed = o.seed;
  return recipe;
}

void add_recipe_overrides(CLI::App* app, RecipeOverrides& o) {
  app->add_option("--batch", o.batches, "Batch sizes for the measurement (default: the recipe's, else 64)");
  app->add_option("--windows", o.windows, "Measurement windows (default: the recipe's, else 5)")->check(CLI::Range(2, 100000));
  app->add_option("--seed", o.seed, "Seed for the passes that train (default: the recipe's, else 1)")
      ->each([&o](const std::string&) { o.seed_given = true; });
  app->add_option("--data", o.data, "fashion-mnist, or a directory of IDX files (default: the recipe's)");
  app->add_option("--images", o.images, "IDX images file (with --labels)");
  app->add_option("--labels", o.labels, "IDX labels file (with --images)");
}

struct ExperimentCliOptions {
  std::string input, output_dir, grid, shard = "1/1", minimize = "energy", format = "table";
  RecipeOverrides overrides;
  double max_accuracy_drop = 1.0;
  std::int64_t batch = 0;
  bool resume = false, no_measure = false, no_progress = false, all_stages = false;
};

// Writes NAME.{txt,csv,md,tex,json} and NAME-{energy,latency}.{svg,png} in `dir`; the console
// table is printed.
void write_tradeoff_outputs(const std::vector<joulecut::measure::LedgerPoint>& points, const std::string& dir,
                            const std::string& name, const joulecut::measure::TradeoffOptions& options) {
  namespace m = joulecut::measure;
  const std::filesystem::path base = std::filesystem::path(dir) / name;
  std::vector<std::string> written;
  for (const auto& [format, ext] : std::vector<std::pair<std::string, std::string>>{
           {"table", "txt"}, {"csv", "csv"}, {"markdown", "md"}, {"latex", "tex"}, {"json", "json"}}) {
    std::ostringstream text;
    m::write_tradeoff(text, points, format, options);
    if (format == "table") std::fputs(text.str().c_str(), stdout);
    const std::string path = base.string() + "." + ext;
    joulecut::write_file_atomic(path, text.str());
    written.push_back(path);
  }
  for (const auto& plot : m::write_tradeoff_plots(points, base.string(), options)) written.push_back(plot);
  std::printf("\nwrote");
  for (const auto& w : written) std::printf(" %s", w.c_str());
  std::printf("\n");
}

joulecut::measure::SweepOptions sweep_options(const ExperimentCliOptions& o, const std::string& command) {
  joulecut::measure::SweepOptions s;
  s.grid = o.grid;
  s.output_dir = o.output_dir;
  s.resume = o.resume;
  s.shard = joulecut::parse_shard(o.shard);
  s.measure = !o.no_measure;
  s.progress = !o.no_progress;
  s.command = command;
  return s;
}

void print_problems(const std::vector<std::string>& problems) {
  for (const auto& p : problems) std::fprintf(stderr, "compress: warning: %s\n", p.c_str());
}

// Applies the passes in order, writes every stage's model, measures the input and every stage
// side by side, and writes the stage table (every format) and plots.
void run_pipeline(ExperimentCliOptions o, const RunSettings& settings, const std::string& command) {
  apply_threads(settings);
  const joulecut::Recipe recipe = recipe_for(o.input, o.overrides, /*needs_passes=*/true);
  auto options = sweep_options(o, command);
  options.on_pass_report = print_pass_report;
  const auto result = joulecut::measure::run_recipe(recipe, options);
  print_problems(result.problems);
  if (result.ran == 0) std::printf("%s: already holds this pipeline's result (--resume)\n", result.ledger.c_str());
  if (o.no_measure) {
    std::printf("wrote %s (no measurement: --no-measure)\n", result.ledger.c_str());
    return;
  }
  const auto& point = result.in_ledger.back();
  joulecut::measure::TradeoffOptions table;
  table.batch = o.batch;
  table.title = "compress run " + recipe.name + ": " + point.pipeline;
  write_tradeoff_outputs({point}, o.output_dir, "stages", table);
}

void run_sweep_command(ExperimentCliOptions o, const RunSettings& settings, const std::string& command) {
  apply_threads(settings);
  const joulecut::Recipe recipe = recipe_for(o.input, o.overrides, /*needs_passes=*/false);
  const auto result = joulecut::measure::run_sweep(recipe, sweep_options(o, command));
  print_problems(result.problems);
  std::printf("sweep: %lld points; ran %lld, %lld already in the ledger, %lld in other shards; ledger %s\n",
              (long long)result.points, (long long)result.ran, (long long)result.already_done,
              (long long)result.other_shards, result.ledger.c_str());
  if (o.no_measure) return;
  if (result.other_shards > 0) {
    std::printf("this shard's points are in the ledger; merge every shard's ledger with: compress report LEDGER... -o DIR\n");
    return;
  }
  joulecut::measure::TradeoffOptions table;
  table.batch = o.batch;
  table.all_stages = o.all_stages;
  table.title = "compress sweep " + recipe.name;
  write_tradeoff_outputs(result.in_ledger, o.output_dir, "sweep", table);
}

void run_search_command(ExperimentCliOptions o, const RunSettings& settings, const std::string& command) {
  apply_threads(settings);
  const joulecut::Recipe recipe = recipe_for(o.input, o.overrides, /*needs_passes=*/false);
  joulecut::measure::SearchOptions search;
  search.sweep = sweep_options(o, command);
  search.max_accuracy_drop = o.max_accuracy_drop;
  search.minimize = o.minimize;
  search.batch = o.batch;
  const auto result = joulecut::measure::run_search(recipe, search);
  print_problems(result.sweep.problems);
  std::printf("search space: %s (%lld points)\n\n", result.space.c_str(), (long long)result.sweep.points);
  joulecut::measure::TradeoffOptions table;
  table.batch = o.batch;
  table.title = "compress search " + recipe.name + ": minimize " + o.minimize + " within " +
                short_number(o.max_accuracy_drop) + " pt of the baseline's accuracy";
  if (result.sweep.other_shards == 0) write_tradeoff_outputs(result.sweep.in_ledger, o.output_dir, "search", table);
  std::printf("\n");
  if (!result.best) {
    std::printf("no configuration within %s pt of the baseline's accuracy; the explored points are in %s\n",
                short_number(o.max_accuracy_drop).c_str(), result.sweep.ledger.c_str());
    return;
  }
  const auto& best = *result.best;
  const auto& base = best.stages.front();
  const auto& last = best.stages.back();
  const auto* b = last.at_batch(o.batch > 0 ? o.batch : last.batches.front().batch);
  const auto* bb = base.at_batch(b->batch);
  std::printf("best: #%lld %s\n  passes: %s\n  model: %s\n", (long long)best.index, best.label().c_str(),
              best.pipeline.c_str(), last.model_path.c_str());
  std::printf("  accuracy %.2f%% (baseline %.2f%%, drop %.2f pt; point estimates, 95%% CIs in the table)\n",
              100 * last.accuracy->value, 100 * base.accuracy->value, 100 * (base.accuracy->value - last.accuracy->value));
  const auto ratio = joulecut::measure::energy_ratio(*bb, *b);
  std::printf("  energy %.4g mJ/inf at batch %lld, %s; %.2fx less than the baseline measured alongside (%s)\n",
              b->energy().joules_per_inference.mean * 1e3, (long long)b->batch,
              (b->energy().provenance + " (" + b->energy().source + ")").c_str(), ratio.value, ratio.provenance.c_str());
  std::printf("  latency p50 %.4g ms (baseline %.4g ms)\n", b->p50_seconds * 1e3, bb->p50_seconds * 1e3);
}

void run_report(ExperimentCliOptions o, const std::vector<std::string>& ledgers, const std::string& merged_out) {
  const auto merged = joulecut::measure::merge_ledgers(ledgers);
  print_problems(merged.problems);
  if (merged.points.empty()) throw UserError(ledgers.front() + ": no finished point in the ledger" + (ledgers.size() > 1 ? "s" : ""));
  if (!merged_out.empty()) {
    std::string text;
    for (const auto& p : merged.points) text += joulecut::measure::to_ledger_line(p) + "\n";
    joulecut::write_file_atomic(merged_out, text);
  }
  joulecut::measure::TradeoffOptions table;
  table.batch = o.batch;
  table.all_stages = o.all_stages;
  table.title = "compress report " + merged.points.front().recipe + " (" + std::to_string(merged.points.size()) + " points)";
  if (!o.output_dir.empty()) {
    std::error_code error;
    std::filesystem::create_directories(o.output_dir, error);
    if (error) throw UserError(o.output_dir + ": cannot create the directory (" + error.message() + ")");
    write_tradeoff_outputs(merged.points, o.output_dir, "tradeoff", table);
  } else {
    std::ostringstream out;
    joulecut::measure::write_tradeoff(out, merged.points, o.format, table);
    std::fputs(out.str().c_str(), stdout);
  }
  if (!merged.problems.empty())
    throw UserError(std::to_string(merged.problems.size()) + " ledger line(s) skipped (listed above); the table holds the other " +
                    std::to_string(merged.points.size()) + " points");
}

// ---- compress distill ------------------------------------------------------------------------
struct DistillCliOptions {
  std::string teacher, student, student_arch, output, checkpoint;
  std::vector<std::string> hints;
  joulecut::DistillOptions distill;
  joulecut::DataSource data;
  bool baseline = false, resume = false, no_measure = false, no_progress = false;
  int windows = 5;
  std::string batches = "1,64";
};

void run_distill(DistillCliOptions o, const RunSettings& settings, const std::string& command) {
  apply_threads(settings);
  if (o.student.empty() == o.student_arch.empty())
    throw UserError("give the student as a file (--student S.pt) or an architecture (--student-arch NAME), one of them");
  check_output(o.teacher, o.output);
  if (!o.student.empty()) joulecut::refuse_to_overwrite_input(o.student, o.output);
  for (const auto& h : o.hints) o.distill.hints.push_back(joulecut::parse_hint(h));
  joulecut::check_loss_options(o.distill.loss);
  auto teacher = joulecut::load_model(o.teacher);
  std::optional<joulecut::DatasetSpec> spec;
  if (teacher.metadata) spec = teacher.metadata->dataset;
  torch::jit::Module student;
  joulecut::ModelMetadata metadata;
  metadata.dataset = spec ? *spec : joulecut::fashion_mnist_spec();
  std::string student_id;
  if (!o.student.empty()) {
    auto loaded = joulecut::load_model(o.student);
    student = loaded.module;
    if (loaded.metadata) metadata = *loaded.metadata;
    student_id = "file " + joulecut::sha256_file(o.student);
  } else {
    student = joulecut::build_reference_model(o.student_arch, o.distill.loop.seed);
    metadata.arch = o.student_arch;
    student_id = "arch " + o.student_arch;
  }
  const auto train = joulecut::load_dataset(o.data, joulecut::Split::train, spec);
  const auto test = joulecut::load_dataset(o.data, joulecut::Split::test, spec);
  joulecut::check_model_accepts(teacher.module, test, o.teacher);
  joulecut::check_model_accepts(student, test, o.student.empty() ? o.student_arch : o.student);
  auto& loop = o.distill.loop;
  loop.progress = !o.no_progress;
  loop.checkpoint = o.checkpoint.empty() ? o.output + ".ckpt" : o.checkpoint;
  loop.resume = o.resume;
  const json settings_json = {{"teacher_sha256", joulecut::sha256_file(o.teacher)},
                              {"student", student_id},
                              {"data", train.description},
                              {"epochs", loop.epochs},
                              {"batch", loop.batch},
                              {"lr", loop.learning_rate},
                              {"optimizer", loop.optimizer},
                              {"momentum", loop.momentum},
                              {"weight_decay", loop.weight_decay},
                              {"schedule", loop.schedule},
                              {"step_epochs", loop.step_epochs},
                              {"gamma", loop.gamma},
                              {"seed", loop.seed},
                              {"temperature", o.distill.loss.temperature},
                              {"alpha", o.distill.loss.alpha},
                              {"hints", o.hints},
                              {"hint_weight", o.distill.hint_weight},
                              {"threads", at::get_num_threads()}};
  loop.fingerprint = settings_json.dump();
  // On stdout with the notes and results: stderr stays for progress and the one-line error.
  std::printf("distilling %s into %s: %d epochs, %s lr %g (%s), T %g, alpha %g, seed %llu, %d threads\n",
               o.teacher.c_str(), o.student.empty() ? o.student_arch.c_str() : o.student.c_str(), loop.epochs,
               loop.optimizer.c_str(), loop.learning_rate, loop.schedule.c_str(), o.distill.loss.temperature,
               o.distill.loss.alpha, (unsigned long long)loop.seed, at::get_num_threads());
  const auto result = joulecut::distill(teacher.module, student, train, &test, o.distill);
  for (const auto& n : result.notes) std::printf("  note: %s\n", n.c_str());
  if (result.loop.resumed_at_epoch > 0)
    std::printf("  resumed from %s at epoch %d\n", loop.checkpoint.c_str(), result.loop.resumed_at_epoch);
  metadata.provenance_json =
      json{{"command", command}, {"distillation", settings_json}, {"test_accuracy", result.loop.test_accuracy}}.dump();
  joulecut::save_model(result.student, metadata, o.output, o.teacher);
  std::printf("wrote %s (sha256 %s): test accuracy %.2f%% after distillation\n", o.output.c_str(),
              joulecut::sha256_file(o.output).substr(0, 16).c_str(), 100 * result.loop.test_accuracy);
  std::vector<std::string> models{o.teacher};
  if (o.baseline) {
    // The same student, initialisation, data order, optimizer and epochs; labels only.
    const std::string path = std::filesystem::path(o.output).replace_extension("").string() + "-baseline.pt";
    joulecut::refuse_to_overwrite_input(o.teacher, path);
    torch::jit::Module plain = student.clone();
    joulecut::LoopOptions plain_loop = loop;
    plain_loop.checkpoint.clear();
    plain_loop.resume = false;
    std::fprintf(stderr, "baseline: the same student and budget without the teacher\n");
    const auto plain_result = joulecut::train_loop(plain, train, &test, plain_loop);
    joulecut::ModelMetadata plain_metadata = metadata;
    plain_metadata.provenance_json =
        json{{"command", command}, {"baseline_of", settings_json}, {"test_accuracy", plain_result.test_accuracy}}.dump();
    joulecut::save_model(plain, plain_metadata, path, o.teacher);
    std::printf("wrote %s: test accuracy %.2f%% without distillation (%+.2f pt from distillation)\n", path.c_str(),
                100 * plain_result.test_accuracy, 100 * (result.loop.test_accuracy - plain_result.test_accuracy));
    models.push_back(path);
  }
  models.push_back(o.output);
  if (o.no_measure) return;
  std::fputs(measure_side_by_side(models, o.data, o.batches, o.windows, !o.no_progress).c_str(), stdout);
}

// ---- compress sensitivity ------------------------------------------------------------------
struct SensitivityCliOptions {
  std::string model, plot, csv, levels = "0.25,0.5,0.75,0.9";
  joulecut::SensitivityOptions sensitivity;
  joulecut::DataSource data;
  std::int64_t limit = 0;
  bool no_progress = false;
};

void run_sensitivity(SensitivityCliOptions o, const RunSettings& settings) {
  apply_threads(settings);
  for (const auto* out : {&o.plot, &o.csv})
    if (!out->empty()) joulecut::refuse_to_overwrite_input(o.model, *out);
  o.sensitivity.levels.clear();
  std::stringstream in(o.levels);
  for (std::string item; std::getline(in, item, ',');) {
    try {
      std::size_t used = 0;
      o.sensitivity.levels.push_back(std::stod(item, &used));
      if (used != item.size()) throw std::invalid_argument(item);
    } catch (const std::exception&) {
      throw UserError("--levels: '" + item + "' is not a number (give e.g. 0.25,0.5,0.75,0.9)");
    }
  }
  o.sensitivity.progress = !o.no_progress;
  auto loaded = joulecut::load_model(o.model);
  std::optional<joulecut::DatasetSpec> spec;
  if (loaded.metadata) spec = loaded.metadata->dataset;
  auto data = joulecut::take_first(joulecut::load_dataset(o.data, joulecut::Split::test, spec), o.limit);
  joulecut::check_model_accepts(loaded.module, data, o.model);
  const auto report = joulecut::analyze_sensitivity(loaded.module, data, o.sensitivity);
  joulecut::write_sensitivity_table(std::cout, report);
  const std::string name = std::filesystem::path(o.model).filename().string();
  if (!o.plot.empty()) {
    joulecut::write_file_atomic(o.plot, joulecut::sensitivity_svg(report, "Pruning sensitivity of " + name + " (" +
                                                                             report.method + ", one layer at a time)"));
    std::printf("wrote %s\n", o.plot.c_str());
  }
  if (!o.csv.empty()) {
    std::ostringstream csv;
    joulecut::write_sensitivity_csv(csv, report);
    joulecut::write_file_atomic(o.csv, csv.str());
    std::printf("wrote %s\n", o.csv.c_str());
  }
}

// ---- compress calibrate ------------------------------------------------------------------------
struct CalibrateCliOptions {
  std::string model;
  joulecut::CalibrationOptions calibration;
  joulecut::DataSource data;
  bool no_progress = false;
};

void run_calibrate(CalibrateCliOptions o, const RunSettings& settings) {
  apply_threads(settings);
  o.calibration.progress = !o.no_progress;
  auto loaded = joulecut::load_model(o.model);
  std::optional<joulecut::DatasetSpec> spec;
  if (loaded.metadata) spec = loaded.metadata->dataset;
  // Calibration uses the training split: the test split stays unseen for accuracy.
  const auto data = joulecut::load_dataset(o.data, joulecut::Split::train, spec);
  joulecut::check_model_accepts(loaded.module, data, o.model);
  const auto result = joulecut::calibrate(loaded.module, data, o.calibration);
  std::printf("calibration of %s: observer %s, %lld images of %s\n\n", o.model.c_str(), result.observer.c_str(),
              (long long)result.samples, data.description.c_str());
  std::printf("%-24s %-18s %-36s %s\n", "layer", "op", "input range (scale, zero point)", "output range (scale, zero point)");
  auto range = [](const joulecut::QuantRange& r) {
    char text[80];
    std::snprintf(text, sizeof text, "[%.4g, %.4g] (%.3g, %d)", r.min, r.max, r.scale, r.zero_point);
    return std::string(text);
  };
  for (const auto& l : result.layers)
    std::printf("%-24s %-18s %-36s %s\n", l.layer.c_str(), l.op.c_str(), range(l.input).c_str(), range(l.output).c_str());
  std::printf("\nuint8 affine per tensor: x = scale * (q - zero point), q in [0, 255]\n");
}

// ---- compress measure / compare ------------------------------------------------------------
struct MeasureCliOptions {
  joulecut::measure::MeasureJob job;
  std::string format = "table";
  std::string output;
  std::string batches = "1,64";
  double cpu_watts = 0;
  bool no_optimize = false;
  bool no_progress = false;
};

std::vector<std::int64_t> parse_batches(const std::string& text) {
  std::vector<std::int64_t> out;
  std::stringstream in(text);
  std::string item;
  while (std::getline(in, item, ',')) {
    try {
      std::size_t used = 0;
      const long long v = std::stoll(item, &used);
      if (used != item.size() || v <= 0) throw std::invalid_argument(item);
      out.push_back(v);
    } catch (const std::exception&) {
      throw UserError("--batch '" + text + "': expected positive integers separated by commas, e.g. 1,64");
    }
  }
  if (out.empty()) throw UserError("--batch: give at least one batch size");
  return out;
}

void run_measure(MeasureCliOptions options, const RunSettings& settings) {
  apply_threads(settings);
  if (joulecut::blas_info().is_reference())
    throw UserError("refusing to measure on the reference BLAS: it would fake the fp32 baseline; install "
                    "libopenblas0-pthread (scripts/setup)");
  options.job.batches = parse_batches(options.batches);
  options.job.optimize = !options.no_optimize;
  options.job.progress = !options.no_progress;
  if (options.cpu_watts > 0) options.job.run.cpu_watts = options.cpu_watts;
  if (options.format != "table" && options.format != "csv" && options.format != "json")
    throw UserError("--format '" + options.format + "': choose table, csv or json");
  for (const auto& m : options.job.models)
    if (!options.output.empty()) joulecut::refuse_to_overwrite_input(m, options.output);
  const auto report = joulecut::measure::measure_files(options.job);
  std::ostringstream text;
  joulecut::measure::write_report(text, report, options.format);
  if (options.output.empty()) {
    std::cout << text.str();
  } else {
    joulecut::write_file_atomic(options.output, text.str());
    std::fprintf(stderr, "wrote %s\n", options.output.c_str());
  }
}

void add_measure_options(CLI::App* app, MeasureCliOptions& o) {
  auto& run = o.job.run;
  add_data_options(app, o.job.data);
  app->add_option("--device", run.device, "cpu, cuda or cuda:N")->capture_default_str();
  app->add_option("--batch", o.batches, "Batch sizes, comma-separated")->capture_default_str();
  app->add_option("--meter", run.meter,
                  "Energy meter: auto (NVML for cuda, RAPL for cpu; says which ran and why), rapl, nvml, or "
                  "model (modeled only)")
      ->capture_default_str();
  app->add_option("--windows", run.windows, "Measurement windows (mean and 95% CI over them)")
      ->capture_default_str()
      ->check(CLI::Range(2, 100000));
  app->add_option("--min-window", run.min_window_seconds,
                  "Minimum window length in seconds (raised to 20 meter update periods)")
      ->capture_default_str();
  app->add_option("--warmup", run.warmup_seconds, "Warm-up seconds per model before measuring")->capture_default_str();
  app->add_option("--idle", run.idle_seconds, "Measure idle power for this many seconds first and also report net energy")
      ->capture_default_str();
  app->add_option("--cpu-watts", o.cpu_watts, "CPU power at full load for the time x power model (e.g. its TDP)");
  app->add_option("--energy-constants", run.energy_constants,
                  "JSON file of energy per op / per byte (default: Horowitz ISSCC 2014, measure/data/energy_per_op.json)");
  app->add_option("--rapl-root", run.rapl.root, "powercap sysfs root")->capture_default_str();
  app->add_option("--rapl-domains", run.rapl.domains, "package+dram, package or psys")->capture_default_str();
  app->add_option("--nvml-library", run.nvml.library, "NVML library to dlopen")->capture_default_str();
  app->add_flag("--no-optimize", o.no_optimize,
                "Measure the plain module (default: frozen + optimize_for_inference, as deployed)");
  app->add_option("--accuracy-limit", o.job.accuracy_limit, "Test images for accuracy (0: all, -1: skip)")
      ->capture_default_str();
  app->add_option("--format", o.format, "table, csv or json")->capture_default_str();
  app->add_option("-o,--output", o.output, "Write the report to this file (atomically) instead of stdout");
  app->add_flag("--no-progress", o.no_progress, "No progress bar");
}

void add_data_options(CLI::App* app, joulecut::DataSource& data) {
  app->add_option("--data", data.data,
                  "Data set: 'fashion-mnist' (Debian package dataset-fashion-mnist) or a directory of MNIST-style "
                  "IDX files ({train,t10k}-{images-idx3,labels-idx1}-ubyte[.gz])")
      ->capture_default_str();
  app->add_option("--images", data.images, "An IDX images file (gzip or plain); use with --labels");
  app->add_option("--labels", data.labels, "The IDX labels file matching --images");
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"joulecut compress: make neural networks cheaper to run, and measure what it bought.\n"
               "Run 'compress SUBCOMMAND --help' for each job."};
  app.set_version_flag("--version", std::string("joulecut ") + JOULECUT_VERSION + " (" + JOULECUT_GIT_REVISION +
                                        "), LibTorch " + joulecut::compat::torch_version());
  app.require_subcommand(1);
  RunSettings settings;
  app.add_option("--threads", settings.threads, "LibTorch threads (default: all logical cores); BLAS runs 1 thread")
      ->check(CLI::Range(0, 4096));
  // Usage errors, like every other error: one line, then a non-zero exit.
  app.failure_message([](const CLI::App*, const CLI::Error& e) {
    return std::string("compress: error: ") + e.what() + " (see --help)\n";
  });

  InfoOptions info;
  auto* info_cmd = app.add_subcommand("info", "Layers, parameters, MACs per layer and in total, dtype, sparsity, size");
  info_cmd->add_option("model", info.model, "TorchScript file")->required();
  info_cmd->add_flag("--json", info.json, "Machine-readable output");

  EvalCliOptions eval;
  auto* eval_cmd = app.add_subcommand("eval", "Top-1 accuracy on a test set, with a 95% confidence interval");
  eval_cmd->add_option("model", eval.model, "TorchScript file")->required();
  add_data_options(eval_cmd, eval.data);
  eval_cmd->add_option("--batch", eval.batch, "Evaluation batch size")->capture_default_str()->check(CLI::PositiveNumber);
  eval_cmd->add_option("--limit", eval.limit, "Use only the first N test images (0: all)")->capture_default_str();
  eval_cmd->add_flag("--json", eval.json, "Machine-readable output");

  TrainCliOptions train;
  auto* train_cmd = app.add_subcommand("train", "Train a reference model in C++ and write it as TorchScript");
  std::string arch_help = "Architecture:";
  for (const auto& a : joulecut::reference_architectures()) arch_help += "\n  " + a + ": " + joulecut::describe_architecture(a);
  train_cmd->add_option("arch", train.train.arch, arch_help)->required()->check(CLI::IsMember(joulecut::reference_architectures()));
  train_cmd->add_option("-o,--output", train.output, "Output TorchScript file (written atomically)")->required();
  add_data_options(train_cmd, train.data);
  train_cmd->add_option("--epochs", train.train.epochs, "Epochs (default: the architecture's)");
  train_cmd->add_option("--batch", train.train.batch, "Batch size")->capture_default_str()->check(CLI::PositiveNumber);
  train_cmd->add_option("--lr", train.train.learning_rate, "Peak learning rate (default: the architecture's)");
  train_cmd->add_option("--weight-decay", train.train.weight_decay, "Weight decay (default: the architecture's)");
  train_cmd->add_option("--seed", train.train.seed, "Seed for initialisation and shuffling")->capture_default_str();
  train_cmd->add_option("--train-limit", train.train.train_limit, "Train on the first N images only (0: all)");
  bool no_progress = false;
  train_cmd->add_flag("--no-progress", no_progress, "No progress bar");
  train_cmd->add_flag("--json", train.json, "Machine-readable summary");

  MeasureCliOptions measure;
  auto* measure_cmd = app.add_subcommand(
      "measure", "Latency, throughput, accuracy, size and energy per inference (with provenance and 95% CIs)");
  measure_cmd->add_option("model", measure.job.models, "TorchScript file")->required()->expected(1);
  add_measure_options(measure_cmd, measure);

  PruneCliOptions prune;
  auto* prune_cmd = app.add_subcommand("prune", "Prune a model, optionally fine-tune, then measure before and after");
  prune_cmd->footer("Passes (also usable in pipelines):\n" + joulecut::describe_passes());
  prune_cmd->add_option("model", prune.model, "TorchScript file (never modified)")->required();
  prune_cmd->add_option("-o,--output", prune.output, "Pruned TorchScript file (written atomically)")->required();
  prune_cmd->add_option("--method", prune.method, "magnitude (unstructured L1), nm (N:M along the input dimension) or channel (structured: layers shrink)")
      ->capture_default_str();
  prune_cmd->add_option("--sparsity", prune.magnitude.sparsity, "magnitude: fraction of weights zeroed, in [0, 1)")
      ->capture_default_str();
  prune_cmd->add_option("--steps", prune.magnitude.steps,
                        "magnitude: prune gradually in this many steps, fine-tuning between them (cubic schedule)")
      ->capture_default_str();
  prune_cmd->add_option("--scope", prune.magnitude.scope, "magnitude: layer (each layer) or global (one threshold)")
      ->capture_default_str();
  prune_cmd->add_option("--ratio", prune.channel.ratio, "channel: fraction of each group's channels removed, in [0, 1)")
      ->capture_default_str();
  prune_cmd->add_option("--criterion", prune.channel.criterion, "channel: l1, l2 (filter norms) or bn-scale")
      ->capture_default_str();
  prune_cmd->add_option("--round-to", prune.channel.round_to, "channel: round kept channels up to a multiple of this")
      ->capture_default_str();
  prune_cmd->add_option("--n", prune.nm.n, "nm: weights kept per group")->capture_default_str();
  prune_cmd->add_option("--m", prune.nm.m, "nm: group size along the input dimension")->capture_default_str();
  prune_cmd->add_option("--include", prune.layers.include, "Only layers matching these '|'-separated globs");
  prune_cmd->add_option("--exclude", prune.layers.exclude, "Skip layers matching these '|'-separated globs");
  prune_cmd->add_flag("--first-last", prune.layers.include_first_last, "Also prune the first and last layers");
  prune_cmd->add_option("--finetune-epochs", prune.finetune_epochs, "Fine-tune with the zeros kept (0: none)")
      ->capture_default_str();
  prune_cmd->add_option("--finetune-lr", prune.finetune_lr, "Peak fine-tuning learning rate (cosine)")->capture_default_str();
  prune_cmd->add_option("--seed", prune.seed, "Seed for fine-tuning")->capture_default_str();
  add_data_options(prune_cmd, prune.data);
  prune_cmd->add_option("--batch", prune.batches, "Batch sizes for the before/after measurement")->capture_default_str();
  prune_cmd->add_option("--windows", prune.windows, "Measurement windows")->capture_default_str()->check(CLI::Range(2, 100000));
  prune_cmd->add_flag("--sparse-runtime", prune.sparse_runtime,
                      "Then run sparse Linear layers on joulecut::sparse_linear where timed faster at the first --batch");
  prune_cmd->add_option("--min-speedup", prune.min_speedup,
                        "With --sparse-runtime: lower a layer only where sparse is at least this much faster")
      ->capture_default_str();
  prune_cmd->add_flag("--no-measure", prune.no_measure, "Skip the before/after measurement");
  prune_cmd->add_flag("--no-progress", prune.no_progress, "No progress bars");

  MeasureCliOptions compare;
  auto* compare_cmd = app.add_subcommand(
      "compare", "Measure several models side by side, windows interleaved, ratios against the first");
  compare_cmd->add_option("models", compare.job.models, "TorchScript files; the first is the baseline")
      ->required()
      ->expected(2, 1000);
  add_measure_options(compare_cmd, compare);

  QuantizeCliOptions quantize;
  auto* quantize_cmd = app.add_subcommand("quantize", "Quantize a model to int8, then measure before and after");
  quantize_cmd->footer(
      "Static int8 (default): BatchNorm folded, ReLU fused, activations calibrated on the first --samples training\n"
      "images and kept int8 from layer to layer. --backend onednn runs joulecut's int8 runtime (the file needs\n"
      "libjoulecut_ops to load); --backend torch runs LibTorch's quantized ops (stock PyTorch loads the file).\n"
      "--dynamic quantizes Linear layers only, activations per batch, on the torch backend.\n"
      "Example: compress quantize models/trained/lenet5.pt -o lenet5-int8.pt --observer mse --max-accuracy-drop 0.5");
  quantize_cmd->add_option("model", quantize.model, "TorchScript file (never modified)")->required();
  quantize_cmd->add_option("-o,--output", quantize.output, "Quantized TorchScript file (written atomically)")->required();
  quantize_cmd->add_option("--backend", quantize.backend,
                           "onednn: joulecut's int8 runtime; torch: LibTorch's quantized ops (portable)")
      ->capture_default_str();
  quantize_cmd->add_option("--calib", quantize.data.data, "Calibration data set (same forms as --data)");
  quantize_cmd->add_option("--observer", quantize.static_options.observer, "Activation ranges: minmax, percentile, entropy (KL) or mse")
      ->capture_default_str();
  quantize_cmd->add_option("--percentile", quantize.percentile, "For --observer percentile, in (0, 100] (default 99.99)")
      ->capture_default_str();
  quantize_cmd->add_option("--samples", quantize.static_options.samples, "Calibration images (the first N of the training split)")
      ->capture_default_str();
  quantize_cmd->add_option("--max-accuracy-drop", quantize.max_accuracy_drop,
                           "Accuracy budget: points (0.5), or relative to fp32 (1%); the most sensitive layers stay fp32");
  quantize_cmd->add_option("--validation", quantize.static_options.validation,
                           "Images at the end of the training split that the budget is measured on")
      ->capture_default_str();
  quantize_cmd->add_flag("--dynamic", quantize.dynamic, "Dynamic int8 Linear layers (needs --backend torch)");
  quantize_cmd->add_option("--exclude", quantize.dynamic_options.exclude, "Keep layers matching these '|'-separated globs in fp32");
  quantize_cmd->add_option("--batch", quantize.batches, "Batch sizes for the before/after measurement")->capture_default_str();
  quantize_cmd->add_option("--windows", quantize.windows, "Measurement windows")->capture_default_str()->check(CLI::Range(2, 100000));
  quantize_cmd->add_flag("--no-measure", quantize.no_measure, "Skip the before/after measurement");
  quantize_cmd->add_flag("--no-progress", quantize.no_progress, "No progress bars");
  add_data_options(quantize_cmd, quantize.data);

  DistillCliOptions distill;
  distill.distill.loop.epochs = 10;
  distill.distill.loop.learning_rate = 0.01;  // 0.05 (the reference models' rate) diverged with T = 4: the T^2-scaled term
  distill.distill.loop.weight_decay = 5e-4;
  auto* distill_cmd = app.add_subcommand("distill", "Train a student from a teacher (knowledge distillation), then measure");
  distill_cmd->footer(
      "Loss: alpha * T^2 * KL(teacher || student at temperature T) + (1 - alpha) * cross-entropy, plus\n"
      "hint-weight * MSE between named layers' outputs (--hint TEACHER_LAYER:STUDENT_LAYER, through a learned\n"
      "1x1 projection when widths differ; the projection is not exported). A student with zeros (pruned)\n"
      "keeps them. A checkpoint is written after every epoch and on Ctrl-C; --resume continues it.\n"
      "Example: compress distill --teacher models/trained/resnet8.pt --student-arch lenet5-half -o s.pt --baseline");
  distill_cmd->add_option("--teacher", distill.teacher, "Teacher TorchScript file (never modified)")->required();
  distill_cmd->add_option("--student", distill.student, "Student TorchScript file (trained, pruned or fresh; never modified)");
  std::string student_archs;
  for (const auto& a : joulecut::reference_architectures()) student_archs += (student_archs.empty() ? "" : ", ") + a;
  distill_cmd->add_option("--student-arch", distill.student_arch, "Or a fresh reference architecture: " + student_archs)
      ->check(CLI::IsMember(joulecut::reference_architectures()));
  distill_cmd->add_option("-o,--output", distill.output, "Distilled student (written atomically)")->required();
  distill_cmd->add_option("--epochs", distill.distill.loop.epochs, "Epochs")->capture_default_str()->check(CLI::Range(1, 100000));
  distill_cmd->add_option("--batch", distill.distill.loop.batch, "Training batch size")->capture_default_str()->check(CLI::Range(1, 1 << 20));
  distill_cmd->add_option("--lr", distill.distill.loop.learning_rate, "Learning rate")->capture_default_str();
  distill_cmd->add_option("--optimizer", distill.distill.loop.optimizer, "sgd (Nesterov momentum) or adam")->capture_default_str();
  distill_cmd->add_option("--momentum", distill.distill.loop.momentum, "SGD momentum")->capture_default_str();
  distill_cmd->add_option("--weight-decay", distill.distill.loop.weight_decay, "Weight decay")->capture_default_str();
  distill_cmd->add_option("--schedule", distill.distill.loop.schedule, "cosine (per step, to 0) or step")->capture_default_str();
  distill_cmd->add_option("--step-epochs", distill.distill.loop.step_epochs, "schedule step: epochs between decays")->capture_default_str();
  distill_cmd->add_option("--gamma", distill.distill.loop.gamma, "schedule step: decay factor")->capture_default_str();
  distill_cmd->add_option("--temperature", distill.distill.loss.temperature, "Softmax temperature T (> 0)")->capture_default_str();
  distill_cmd->add_option("--alpha", distill.distill.loss.alpha, "Weight of the teacher term, in [0, 1]")->capture_default_str();
  distill_cmd->add_option("--hint", distill.hints, "Feature hint TEACHER_LAYER:STUDENT_LAYER (repeatable)");
  distill_cmd->add_option("--hint-weight", distill.distill.hint_weight, "Weight of the hint loss")->capture_default_str();
  distill_cmd->add_option("--seed", distill.distill.loop.seed, "Seed: student initialisation, data order, projections")->capture_default_str();
  distill_cmd->add_flag("--baseline", distill.baseline, "Also train the same student with the same budget without the teacher");
  distill_cmd->add_option("--checkpoint", distill.checkpoint, "Checkpoint path (default: OUTPUT.ckpt)");
  distill_cmd->add_flag("--resume", distill.resume, "Continue from the checkpoint of this same run");
  distill_cmd->add_option("--measure-batch", distill.batches, "Batch sizes for the measurement")->capture_default_str();
  distill_cmd->add_option("--windows", distill.windows, "Measurement windows")->capture_default_str()->check(CLI::Range(2, 100000));
  distill_cmd->add_flag("--no-measure", distill.no_measure, "Skip the measurement");
  distill_cmd->add_flag("--no-progress", distill.no_progress, "No progress bars");
  add_data_options(distill_cmd, distill.data);

  ExperimentCliOptions pipeline;
  auto* run_cmd = app.add_subcommand(
      "run", "Apply passes in sequence (a recipe, or a model with --passes); measure before the first pass and after each");
  run_cmd->footer("Examples:\n  compress run examples/recipes/lenet5-prune-int8.yaml -o out/\n"
                  "  compress run models/trained/lenet5.pt --passes \"fold-bn,prune-channel<ratio=0.5>,distill<epochs=3>,"
                  "quantize-int8<observer=entropy>\" -o out/\n\nWrites out/stage-K-PASS.pt, out/ledger.jsonl, the stage table as "
                  "out/stages.{txt,csv,md,tex,json} and plots out/stages-{energy,latency}.{svg,png}.\n\nPasses:\n" +
                  joulecut::describe_passes());
  run_cmd->add_option("input", pipeline.input, "A recipe (.yaml, .yml, .json) or a TorchScript model (never modified)")->required();
  run_cmd->add_option("--passes", pipeline.overrides.passes, "With a model: passes in order, name<k=v,...>,name,...");
  run_cmd->add_option("-o,--output", pipeline.output_dir, "Directory for the stages, ledger, tables and plots (created)")->required();
  add_recipe_overrides(run_cmd, pipeline.overrides);
  run_cmd->add_flag("--resume", pipeline.resume, "Keep an earlier run's ledger in the directory (done: nothing is redone)");
  run_cmd->add_flag("--no-measure", pipeline.no_measure, "Apply and write the stages only");
  run_cmd->add_flag("--no-progress", pipeline.no_progress, "No progress bars");

  ExperimentCliOptions sweep;
  auto* sweep_cmd = app.add_subcommand("sweep", "Run a recipe over a grid of pass options: a crash-safe ledger, resumable, shardable");
  sweep_cmd->footer("Example: compress sweep examples/recipes/lenet5-sweep.yaml --grid \"prune.sparsity=0.5,0.7,0.9 "
                    "quant.observer=minmax,entropy\" -o sweep/\n\nGrid keys are PASS.OPTION (PASS: a pass name, a unique prefix "
                    "such as prune or quant, or its position 1, 2, ...) or seed. Every point appends one line to "
                    "DIR/ledger.jsonl when it is done; --resume runs only the missing points. --shard i/N runs points k with "
                    "k mod N = i-1 (see scripts/slurm-sweep.sh); merge the shards with compress report.");
  sweep_cmd->add_option("recipe", sweep.input, "Recipe file (.yaml, .yml, .json)")->required();
  sweep_cmd->add_option("--grid", sweep.grid, "KEY=v1,v2 KEY2=... (default: the recipe's grid)");
  sweep_cmd->add_option("-o,--output", sweep.output_dir, "Directory for the ledger, stage models, tables and plots")->required();
  sweep_cmd->add_flag("--resume", sweep.resume, "Continue the ledger in the directory: finished points are not redone");
  sweep_cmd->add_option("--shard", sweep.shard, "i/N: run the i-th of N slices (for job arrays)")->capture_default_str();
  sweep_cmd->add_flag("--all-stages", sweep.all_stages, "Table: every stage of every point, not only the last");
  sweep_cmd->add_option("--table-batch", sweep.batch, "Table and plots: the batch to show (default: the first measured)");
  add_recipe_overrides(sweep_cmd, sweep.overrides);
  sweep_cmd->add_flag("--no-measure", sweep.no_measure, "Apply and write the stages only");
  sweep_cmd->add_flag("--no-progress", sweep.no_progress, "No progress bars");

  ExperimentCliOptions search;
  auto* search_cmd = app.add_subcommand(
      "search", "Find the configuration with the lowest energy (or latency, size, MACs) within an accuracy budget");
  search_cmd->footer("Example: compress search examples/recipes/lenet5-search.yaml --max-accuracy-drop 1.0 --minimize energy -o search/\n\n"
                     "The space is --grid, else the recipe's 'search' key, else one derived from its passes: sparsity for "
                     "prune-magnitude, ratio for prune-channel, which layers stay fp32 (none, first, last, both) for int8. "
                     "Every explored point is in DIR/ledger.jsonl (--resume continues a search).");
  search_cmd->add_option("recipe", search.input, "Recipe file (.yaml, .yml, .json)")->required();
  search_cmd->add_option("--max-accuracy-drop", search.max_accuracy_drop, "Accuracy budget, percentage points below the baseline")
      ->capture_default_str();
  search_cmd->add_option("--minimize", search.minimize, "energy, latency, size or macs")->capture_default_str();
  search_cmd->add_option("--grid", search.grid, "The space to explore, KEY=v1,v2 ... (default: see below)");
  search_cmd->add_option("-o,--output", search.output_dir, "Directory for the ledger, models, table and plots")->required();
  search_cmd->add_flag("--resume", search.resume, "Continue the search in the directory");
  search_cmd->add_option("--shard", search.shard, "i/N: explore one slice")->capture_default_str();
  search_cmd->add_option("--table-batch", search.batch, "The batch whose energy or latency counts (default: the first measured)");
  add_recipe_overrides(search_cmd, search.overrides);
  search_cmd->add_flag("--no-progress", search.no_progress, "No progress bars");

  ExperimentCliOptions report;
  std::vector<std::string> report_ledgers;
  std::string report_merged;
  auto* report_cmd = app.add_subcommand("report", "Tables and plots from ledgers (merges the shards of a sweep)");
  report_cmd->add_option("ledgers", report_ledgers, "ledger.jsonl files of one sweep (its shards)")->required();
  report_cmd->add_option("-o,--output", report.output_dir,
                         "Write tradeoff.{txt,csv,md,tex,json} and tradeoff-{energy,latency}.{svg,png} here");
  report_cmd->add_option("--format", report.format, "Without -o: table, csv, markdown, latex or json on stdout")->capture_default_str();
  report_cmd->add_option("--table-batch", report.batch, "The batch to show (default: the first measured)");
  report_cmd->add_flag("--all-stages", report.all_stages, "Every stage of every point, not only the last");
  report_cmd->add_option("--merged", report_merged, "Also write the merged ledger here (points in order)");

  CalibrateCliOptions calibrate;
  auto* calibrate_cmd = app.add_subcommand(
      "calibrate", "Run calibration images through a model: the int8 range of each Conv2d/Linear input and output");
  calibrate_cmd->add_option("model", calibrate.model, "TorchScript file (never modified)")->required();
  calibrate_cmd->add_option("--observer", calibrate.calibration.observer, "minmax, percentile, entropy (KL) or mse")
      ->capture_default_str();
  calibrate_cmd->add_option("--percentile", calibrate.calibration.percentile, "For --observer percentile, in (0, 100]")
      ->capture_default_str();
  calibrate_cmd->add_option("--samples", calibrate.calibration.samples, "Calibration images (first N of the training split; 0: all)")
      ->capture_default_str();
  calibrate_cmd->add_flag("--no-progress", calibrate.no_progress, "No progress bar");
  add_data_options(calibrate_cmd, calibrate.data);

  SensitivityCliOptions sensitivity;
  auto* sensitivity_cmd = app.add_subcommand(
      "sensitivity", "Prune each layer alone at several levels: accuracy and modeled energy per layer, table and plot");
  sensitivity_cmd->add_option("model", sensitivity.model, "TorchScript file (never modified)")->required();
  sensitivity_cmd->add_option("--method", sensitivity.sensitivity.method,
                              "magnitude (each layer's sparsity) or channel (each group's channels removed)")
      ->capture_default_str();
  sensitivity_cmd->add_option("--levels", sensitivity.levels, "Comma-separated levels in [0, 1)")->capture_default_str();
  sensitivity_cmd->add_option("--limit", sensitivity.limit, "Evaluate on the first N test images only (0: all)")
      ->capture_default_str();
  sensitivity_cmd->add_option("--plot", sensitivity.plot, "Write the accuracy-against-level plot here (SVG)");
  sensitivity_cmd->add_option("--csv", sensitivity.csv, "Write the table here as CSV");
  sensitivity_cmd->add_flag("--no-progress", sensitivity.no_progress, "No progress bar");
  add_data_options(sensitivity_cmd, sensitivity.data);

  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    return app.exit(e);
  }

  std::string command = "compress";
  for (int i = 1; i < argc; ++i) command += std::string(" ") + argv[i];
  try {
    if (*info_cmd) run_info(info);
    if (*eval_cmd) run_eval(eval, settings);
    if (*measure_cmd) run_measure(measure, settings);
    if (*prune_cmd) run_prune(prune, settings, command);
    if (*compare_cmd) run_measure(compare, settings);
    if (*sensitivity_cmd) run_sensitivity(sensitivity, settings);
    if (*distill_cmd) run_distill(distill, settings, command);
    if (*run_cmd) run_pipeline(pipeline, settings, command);
    if (*sweep_cmd) run_sweep_command(sweep, settings, command);
    if (*search_cmd) run_search_command(search, settings, command);
    if (*report_cmd) run_report(report, report_ledgers, report_merged);
    if (*calibrate_cmd) {
      if (calibrate_cmd->count("--percentile") > 0 && calibrate.calibration.observer != "percentile")
        throw UserError("--percentile applies to --observer percentile only");
      run_calibrate(calibrate, settings);
    }
    if (*quantize_cmd) {
      for (const char* name : {"--observer", "--percentile", "--samples", "--max-accuracy-drop", "--validation"})
        if (quantize_cmd->count(name) > 0) quantize.static_given.push_back(name);
      run_quantize(quantize, settings, command);
    }
    if (*train_cmd) {
      train.train.progress = !no_progress;
      run_train(train, settings, command);
    }
  } catch (const UserError& e) {
    std::fprintf(stderr, "compress: error: %s\n", e.what());
    return 1;
  } catch (const std::exception& e) {
    // Unexpected failures inside LibTorch: one line; JOULECUT_DEBUG=1 shows the whole trace.
    if (std::getenv("JOULECUT_DEBUG")) std::fprintf(stderr, "%s\n", e.what());
    std::fprintf(stderr, "compress: error: %s (set JOULECUT_DEBUG=1 for the full trace)\n",
                 joulecut::torch_error_summary(e).c_str());
    return 1;
  }
  return 0;
}
