#include "options.h"

#include <ATen/Parallel.h>

#include <algorithm>
#include <cstdio>
#include <filesystem>
#include <sstream>

#include <unistd.h>

#include "joulecut/atomic_file.h"
#include "joulecut/error.h"
#include "joulecut/evaluate.h"
#include "joulecut/measure/measure_files.h"
#include "joulecut/measure/report.h"
#include "joulecut/measure/runner.h"
#include "joulecut/model.h"
#include "joulecut/pipeline.h"
#include "joulecut/quantize.h"
#include "joulecut/platform.h"
#include "joulecut/text.h"
#include "joulecut/threads.h"
#include "joulecut/torch_compat.h"
#include "joulecut/version.h"

namespace joulecut::cli {

void add_data_options(CLI::App* app, DataSource& data) {
  app->add_option("--data", data.data,
                  "Data set, recognized by content: 'fashion-mnist' (Debian package dataset-fashion-mnist); a "
                  "directory of MNIST-style IDX files; a NumPy .npy (inputs) or .npz (arrays named after forward()'s "
                  "arguments, optional 'labels'); a CIFAR-10/100 binary batch; an image folder (ROOT/CLASS/*.png|jpg, "
                  "see --resize, --crop, --mean, --std); or a directory of those per split (train.npz + test.npz, "
                  "CIFAR's data_batch_*.bin + test_batch.bin, ROOT/train + ROOT/test)")
      ->capture_default_str()
      ->each([&data](const std::string&) { data.data_given = true; });
  app->add_option("--train-data", data.train_data, "The training split (calibration, training), in any --data form");
  app->add_option("--test-data", data.test_data, "The evaluation split, in any --data form");
  app->add_option("--images", data.images, "An IDX images file (gzip or plain); use with --labels");
  app->add_option("--labels", data.labels, "The IDX labels file matching --images, or a labels .npy for an .npy --data");
  add_input_options(app, data);
  app->add_option("--resize", data.resize, "Image folders: resize the short side to this (torchvision Resize(int))");
  app->add_option("--crop", data.crop, "Image folders: center crop to this square (torchvision CenterCrop)");
  app->add_option("--mean", data.mean, "Image folders: per-channel mean of [0,1] pixels, e.g. 0.485,0.456,0.406 "
                                       "(default: the model's metadata, else the data's own)");
  app->add_option("--std", data.stddev, "Image folders: per-channel standard deviation, e.g. 0.229,0.224,0.225");
  app->add_option("--color", data.color, "Image folders: rgb or gray (default: the model's channels, else rgb)");
  app->add_option("--cache-mb", data.cache_mb,
                  "Image folders decoding to more than this many MiB are streamed in batches, not held")
      ->capture_default_str()
      ->check(CLI::Range(std::int64_t(0), std::int64_t(1) << 30));
}

void add_input_options(CLI::App* app, DataSource& data, bool with_output) {
  app->add_option("--input-shape", data.input_shape,
                  "The model's input without the batch, e.g. 3,224,224; several arguments separated by ';' "
                  "(64;64). Without data, inputs are generated (synthetic: measurement and MACs, no accuracy)");
  app->add_option("--input-dtype", data.input_dtype,
                  "float32 (default), float16, bfloat16, int64, int32, uint8 or bool; one for all arguments or one "
                  "per argument (int64;int64)");
  app->add_option("--input-range", data.input_range,
                  "Integer inputs' values, LOW,HIGH (in [LOW, HIGH)), e.g. 0,30522 for token ids; ';' per argument");
  if (with_output)
    app->add_option("--model-output", data.output,
                    "Which of the model's outputs holds the class scores: INDEX of a tuple/list, KEY of a dict");
}

void add_after_measurement(CLI::App* app, AfterMeasurement& m, const std::string& batch_flag) {
  app->add_option(batch_flag, m.batches, "Batch sizes for the measurement")->capture_default_str();
  app->add_option("--windows", m.windows, "Measurement windows")->capture_default_str()->check(CLI::Range(2, 100000));
  app->add_flag("--no-measure", m.no_measure, "Skip the measurement");
  app->add_option("--device", m.device, "Where the before/after measurement runs: cpu, cuda or cuda:N")
      ->capture_default_str();
}

void add_progress_flag(CLI::App* app, bool& no_progress) { app->add_flag("--no-progress", no_progress, "No progress bars"); }

void add_pass_flags(CLI::App* app, const PassFlags& flags, PassOptionMap& given) {
  struct Flag {
    OptionInfo info;
    std::vector<std::string> owners;
  };
  std::vector<Flag> merged;
  for (const auto& pass : flags.passes)
    for (const auto& info : pass_options(pass)) {
      if (std::find(flags.skip.begin(), flags.skip.end(), info.name) != flags.skip.end()) continue;
      auto it = std::find_if(merged.begin(), merged.end(), [&](const Flag& f) { return f.info.name == info.name; });
      if (it == merged.end()) merged.push_back({info, {pass}});
      else it->owners.push_back(pass);
    }
  for (const auto& f : merged) {
    std::string help = flags.prefix + f.info.help;
    if (f.owners.size() < flags.passes.size()) {
      std::vector<std::string> who;
      for (const auto& o : f.owners) {
        const auto label = flags.labels.find(o);
        who.push_back(label == flags.labels.end() ? o : label->second);
      }
      help = join(who, ", ") + ": " + help;
    }
    const auto own_default = flags.defaults.find(f.info.name);
    const std::string shown = own_default != flags.defaults.end() ? own_default->second : f.info.default_text;
    const std::string name = "--" + f.info.name;
    if (f.info.type == OptionType::flag) {
      // A switch that is on by default is turned off: --no-NAME.
      const bool on = shown == "true";
      app->add_flag_function(on ? "--no-" + f.info.name : name,
                             [&given, key = f.info.name, on](std::int64_t) { given[key] = on ? "false" : "true"; },
                             on ? f.info.name + "=false (default true: " + help + ")" : help);
      continue;
    }
    if (!shown.empty()) help += " (default: " + shown + ")";
    app->add_option_function<std::string>(name, [&given, key = f.info.name](const std::string& v) { given[key] = v; },
                                           help)
        ->type_name(!f.info.choices.empty()            ? join(f.info.choices, "|")
                    : f.info.type == OptionType::text    ? "TEXT"
                    : f.info.type == OptionType::integer ? "INT"
                                                         : "NUMBER");
  }
}

PassOptionMap options_for(const std::string& pass, const PassOptionMap& given, const std::string& what) {
  const auto options = pass_options(pass);
  PassOptionMap out;
  for (const auto& [key, value] : given) {
    const bool known = std::any_of(options.begin(), options.end(), [&](const OptionInfo& o) { return o.name == key; });
    if (!known) throw UserError("--" + key + " does not apply to " + what);
    out[key] = value;
  }
  return out;
}

std::string passes_help() {
  std::string out;
  for (const auto& name : pass_names()) {
    out += name + ":\n";
    const auto options = pass_options(name);
    if (options.empty()) out += "    (no options)\n";
    for (const auto& o : options) {
      std::string item = "    " + o.name + "=" + (o.default_text.empty() ? "\"\"" : o.default_text);
      if (item.size() < 34) item.resize(34, ' ');
      out += item + " " + o.help + "\n";
    }
  }
  return out;
}

void apply_threads(int threads) {
  configure_threads(threads);
  const auto blas = blas_in_use();
  if (blas.is_reference())
    std::fprintf(stderr,
                 "compress: warning: LibTorch is calling the reference BLAS (%s), ~60x slower than OpenBLAS "
                 "for fp32 linear layers; install libopenblas0-pthread (scripts/setup)\n",
                 blas.library.c_str());
  else if (const std::string better = blas.better_kernels(); !better.empty())
    std::fprintf(stderr,
                 "compress: warning: OpenBLAS runs its %s kernels, narrower than this CPU's vectors: fp32 linear layers "
                 "run slower than this CPU can; unset OPENBLAS_CORETYPE (compress then picks) or set it to %s\n",
                 blas.kernels.c_str(), better.c_str());
}

json runtime_json() {
  const auto blas = blas_in_use();
  return {{"threads", at::get_num_threads()},
          {"blas", blas.name},
          {"blas_library", blas.library},
          {"blas_config", blas.config},
          {"blas_threads", blas.threads},
          {"libtorch", compat::torch_version()},
          {"joulecut", JOULECUT_VERSION},
          {"git_revision", JOULECUT_GIT_REVISION},
          {"cpu", cpu_model()}};
}

std::string flag_for_option(const std::string& library_name) {
  // Where a flag's name is not the field's (or pass option's) name with '-' for '_'.
  static const std::map<std::string, std::string> differently_named = {
      {"DataSource::output", "--model-output"},
      {"DataSource::stddev", "--std"},
      {"Augmentation::horizontal_flip", "--flip"},
      {"MeasureJob::optimize", "--no-optimize"},
      {"MeasureJob::batches", "--batch"},
      {"RaplOptions::domains", "--rapl-domains"},
      {"SearchOptions::batch", "--table-batch"},
      {"SweepOptions::measure", "--no-measure"},
      {"SweepOptions::output_dir", "-o"},
      {"hints", "--hint"},
      {"pass:prune-heads", "--method heads"},
      {"joulecut::fidelity", "compress compare --metric agreement"},
  };
  if (const auto it = differently_named.find(library_name); it != differently_named.end()) return it->second;
  const auto scope = library_name.rfind("::");
  std::string flag = scope == std::string::npos ? library_name : library_name.substr(scope + 2);
  std::replace(flag.begin(), flag.end(), '_', '-');
  return "--" + flag;
}

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

void check_output(const std::string& model, const std::string& output) {
  refuse_to_overwrite_input(model, output);
  check_writable(output);
}

void check_writable(const std::string& output) {
  const std::string dir = std::filesystem::path(output).parent_path().string();
  if (!dir.empty() && !std::filesystem::is_directory(dir))
    throw UserError(output + ": cannot write: directory " + dir + " does not exist");
}

void print_pass_report(const PassReport& report) {
  std::printf("%s: %s\n", report.pass.c_str(), report.summary.c_str());
  // A pass that changes no layer one by one (distillation) has no per-layer table.
  if (!report.layers.empty()) {
    const std::string what = report.layers[0].what;
    const std::string heading = what == "latency_us" ? "us/batch" : what;
    std::printf("  %-10s %10s %10s  %s\n", heading.c_str(), "before", "after", "layer");
    for (const auto& l : report.layers) {
      const char* sep = l.note.empty() ? "" : "  ";
      if (what == "sparsity")
        std::printf("  %-10s %9.2f%% %9.2f%%  %s%s%s\n", "", 100 * l.before, 100 * l.after, l.layer.c_str(), sep,
                    l.note.c_str());
      else if (what == "latency_us" && l.before == 0)
        std::printf("  %-10s %10s %10s  %s%s%s\n", "", "-", "-", l.layer.c_str(), sep, l.note.c_str());
      else
        std::printf("  %-10s %10.*f %10.*f  %s%s%s\n", "", what == "latency_us" ? 1 : 0, l.before,
                    what == "latency_us" ? 1 : 0, l.after, l.layer.c_str(), sep, l.note.c_str());
    }
  }
  for (const auto& n : report.notes) std::printf("  note: %s\n", n.c_str());
  // Harm to the model is said loudly: bold on a terminal, and on stderr too.
  const bool terminal = isatty(fileno(stdout));
  for (const auto& w : report.warnings) {
    std::printf("  %sWARNING: %s%s\n", terminal ? "\033[1m" : "", w.c_str(), terminal ? "\033[0m" : "");
    std::fflush(stdout);
    std::fprintf(stderr, "compress: warning: %s: %s\n", report.pass.c_str(), w.c_str());
  }
}

void print_problems(const std::vector<std::string>& problems) {
  for (const auto& p : problems) std::fprintf(stderr, "compress: warning: %s\n", p.c_str());
}

measure::HarmLimits harm_limits_for(const std::vector<std::unique_ptr<Pass>>& passes) {
  measure::HarmLimits limits;
  for (const auto& pass : passes) {
    const auto* quantize = dynamic_cast<const StaticQuantizePass*>(pass.get());
    if (!quantize || quantize->options().guard != "on") continue;
    const StaticQuantizeOptions& o = quantize->options();
    limits.min_cosine = o.min_cosine;
    // A relative accuracy budget is a share of an accuracy known only to the pass: the default stays.
    if (o.max_accuracy_drop >= 0 && !o.relative_drop) limits.max_accuracy_drop = o.max_accuracy_drop;
    else if (o.max_accuracy_drop < 0) limits.max_accuracy_drop = o.max_agreement_drop;
  }
  return limits;
}

void measure_side_by_side(const std::vector<std::string>& models, const DataSource& data,
                          const AfterMeasurement& measurement, bool progress, const measure::HarmLimits& harm_limits) {
  measure::MeasureJob job;
  job.models = models;
  job.data = data;
  job.batches = parse_batches(measurement.batches);
  job.run.windows = measurement.windows;
  job.run.device = measurement.device;
  job.progress = progress;
  measure::Report report = measure::measure_files(job);
  report.harm_limits = harm_limits;
  std::ostringstream table;
  measure::write_table(table, report);
  std::fputs(table.str().c_str(), stdout);
  std::fflush(stdout);
  print_harm_warnings(report);
}

void print_harm_warnings(const measure::Report& report) {
  for (const auto& w : measure::harm_warnings(report)) std::fprintf(stderr, "compress: warning: %s\n", w.c_str());
}

void apply_and_measure(const std::vector<std::unique_ptr<Pass>>& passes, const ApplyJob& job, const std::string& command) {
  // A device that cannot run is found before the passes run, not after.
  if (!job.measurement.no_measure) {
    try {
      measure::parse_device(job.measurement.device);
    } catch (const UserError& e) {
      throw UserError(e.unrendered() + "; or add --no-measure and measure the output elsewhere");
    }
  }
  const PipelineInput input = load_pipeline_input(job.model, job.data, needs_training_data(passes));
  PassContext context = pass_context(input, job.seed, job.progress);
  const auto applied = apply_passes(passes, input.loaded.module, context);
  for (const auto& r : applied.reports) print_pass_report(r);
  ModelMetadata metadata = input.metadata;
  metadata.provenance_json = pipeline_provenance(command, print_pipeline(passes), job.seed, input, "", applied.reports);
  save_model(applied.module, metadata, job.output, job.model);
  std::printf("wrote %s (sha256 %s)\n\n", job.output.c_str(), sha256_file(job.output).substr(0, 16).c_str());
  if (job.measurement.no_measure) return;
  // Passes never measure; the harness does, before and after, side by side.
  // Judged on what the passes never saw: one data file's last quarter when they trained on the rest.
  DataSource judged = job.data;
  judged.split_one_file = needs_training_data(passes);
  measure_side_by_side({job.model, job.output}, judged, job.measurement, job.progress, harm_limits_for(passes));
}

}  // namespace joulecut::cli
