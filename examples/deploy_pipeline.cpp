// A deployment pipeline's use of joulecut, the way a C++ inference service would: load a
// TorchScript model, build passes from pipeline text, run them with calibration data, measure
// the model before and after inside energy windows, and save the result. Any model the
// `compress` command takes works here: several inputs (token ids and a mask), tuple outputs,
// image folders, NumPy files and the other data forms, with the same preprocessing options.
//
// Usage: deploy_pipeline MODEL.pt OUTPUT.pt [PIPELINE] [DATA] [data options]
//   PIPELINE: pipeline text, default "quantize-int8<samples=256>"
//   DATA:     fashion-mnist (default), a file or a folder (a split per file or folder inside)
//   data options, as the compress command names them:
//     --train-data FILE  --test-data FILE        the splits, when DATA is not a folder of both
//     --input-shape S  --input-dtype D  --input-range R   what forward() takes, ';' between arguments
//     --model-output INDEX|KEY                   the output holding the scores (tuple, dict)
//     --resize N  --crop N  --mean M  --std S  --color rgb|gray   image folders
// Every energy figure says where it came from: a hardware meter (measured) or a model.
#include <joulecut/joulecut.h>
#include <joulecut/text.h>

#include <algorithm>
#include <cstdio>
#include <functional>
#include <map>
#include <string>
#include <vector>

namespace {

struct Arguments {
  std::string model, output, pipeline = "quantize-int8<samples=256>";
  joulecut::DataSource data;
};

// The data options, named as the compress command names them: each one's flag, the library's
// name for the field it sets (how joulecut's errors name it), and where its value goes.
struct DataOption {
  const char* flag;
  const char* field;
  std::function<void(joulecut::DataSource&, const std::string&)> set;
};
const std::vector<DataOption>& data_options() {
  using Source = joulecut::DataSource;
  static const std::vector<DataOption> options = {
      {"--train-data", "DataSource::train_data", [](Source& d, const std::string& v) { d.train_data = v; }},
      {"--test-data", "DataSource::test_data", [](Source& d, const std::string& v) { d.test_data = v; }},
      {"--input-shape", "DataSource::input_shape", [](Source& d, const std::string& v) { d.input_shape = v; }},
      {"--input-dtype", "DataSource::input_dtype", [](Source& d, const std::string& v) { d.input_dtype = v; }},
      {"--input-range", "DataSource::input_range", [](Source& d, const std::string& v) { d.input_range = v; }},
      {"--model-output", "DataSource::output", [](Source& d, const std::string& v) { d.output = v; }},
      {"--resize", "DataSource::resize", [](Source& d, const std::string& v) { d.resize = std::stoi(v); }},
      {"--crop", "DataSource::crop", [](Source& d, const std::string& v) { d.crop = std::stoi(v); }},
      {"--mean", "DataSource::mean", [](Source& d, const std::string& v) { d.mean = v; }},
      {"--std", "DataSource::stddev", [](Source& d, const std::string& v) { d.stddev = v; }},
      {"--color", "DataSource::color", [](Source& d, const std::string& v) { d.color = v; }}};
  return options;
}

// How this program names an option that joulecut's error names by its library name: a data
// option by its flag; DATA for the data set; anything else (a pass option, written in the
// pipeline text) as it is.
std::string option_name(const std::string& library_name) {
  if (library_name == "DataSource::data") return "DATA";
  for (const auto& o : data_options())
    if (library_name == o.field) return o.flag;
  return library_name;
}

// Throws UserError for an unknown option, a missing value or a third positional argument.
Arguments parse_arguments(int argc, char** argv) {
  Arguments a;
  const auto& options = data_options();
  std::vector<std::string> positional;
  for (int i = 1; i < argc; ++i) {
    const std::string arg = argv[i];
    if (arg.rfind("--", 0) != 0) {
      positional.push_back(arg);
      continue;
    }
    const auto it = std::find_if(options.begin(), options.end(), [&](const DataOption& o) { return arg == o.flag; });
    if (it == options.end()) throw joulecut::UserError("unknown option '" + arg + "'");
    if (i + 1 >= argc) throw joulecut::UserError(arg + " needs a value");
    try {
      it->set(a.data, argv[++i]);
    } catch (const std::logic_error&) {  // std::stoi
      throw joulecut::UserError(arg + " '" + argv[i] + "': not a number");
    }
  }
  if (positional.size() < 2 || positional.size() > 4) throw joulecut::UserError("expected MODEL.pt OUTPUT.pt [PIPELINE] [DATA]");
  a.model = positional[0];
  a.output = positional[1];
  if (positional.size() > 2) a.pipeline = positional[2];
  if (positional.size() > 3) {
    a.data.data = positional[3];
    a.data.data_given = true;
  }
  return a;
}

// Runs `module` on `inputs` (forward()'s arguments) `iterations` times inside one named window
// and prints the window.
double timed_window(joulecut::measure::EnergySession& session, const std::string& name, torch::jit::Module& module,
                    const std::vector<c10::IValue>& inputs, std::int64_t batch, int iterations) {
  at::NoGradGuard no_grad;
  module.forward(inputs);  // warm-up, outside the window
  session.begin(name);
  for (int i = 0; i < iterations; ++i) module.forward(inputs);
  const auto window = session.end(name);
  const double per_inference = 1.0 / double(iterations * batch);
  if (window.measured)
    std::printf("  %-8s %.3f s, %.4g mJ/inference measured (%s)\n", name.c_str(), window.seconds,
                1e3 * window.measured->joules * per_inference, window.measured->meter.c_str());
  else
    std::printf("  %-8s %.3f s, %.4g mJ/inference modeled (%s)\n", name.c_str(), window.seconds,
                1e3 * window.modeled.joules * per_inference, window.modeled.model.c_str());
  return window.seconds;
}

// The model before and after, each as deployed (frozen and optimized when it can be), on the
// same first test samples, with every argument forward() takes.
void measure_before_and_after(const joulecut::PipelineInput& input, const torch::jit::Module& compressed) {
  const std::int64_t batch = std::min<std::int64_t>(64, input.test->size());
  const std::vector<c10::IValue> inputs = input.test->inputs(0, batch);
  joulecut::measure::EnergySession session;
  std::printf("meter: %s\n", session.meter_explanation().c_str());
  joulecut::InferenceForm before = joulecut::freeze_for_inference(input.loaded.module);
  joulecut::InferenceForm after = joulecut::freeze_for_inference(compressed);
  for (const auto* form : {&before, &after})
    if (!form->frozen) std::printf("  %s runs unfrozen: %s\n", form == &before ? "before" : "after", form->why_not.c_str());
  const double t_before = timed_window(session, "before", before.module, inputs, batch, 50);
  const double t_after = timed_window(session, "after", after.module, inputs, batch, 50);
  std::printf("  speed-up %.2fx (one window each: a benchmark, not a paper figure; use compress compare)\n",
              t_before / t_after);
}

void run(const Arguments& a) {
  joulecut::configure_threads(0);
  joulecut::refuse_to_overwrite_input(a.model, a.output);

  // 1. Passes from text: unknown passes or options fail here, before any work.
  const auto passes = joulecut::parse_pipeline(a.pipeline);

  // 2. The model, its test split (to measure on), and the training split only if a pass
  //    calibrates or trains.
  const joulecut::PipelineInput input =
      joulecut::load_pipeline_input(a.model, a.data, joulecut::needs_training_data(passes), /*with_test=*/true);
  joulecut::PassContext context = joulecut::pass_context(input, /*seed=*/1, /*progress=*/false);

  // 3. Apply: the input module is never changed.
  const auto applied = joulecut::apply_passes(passes, input.loaded.module, context);
  for (const auto& report : applied.reports) {
    std::printf("%s: %s\n", report.pass.c_str(), report.summary.c_str());
    for (const auto& note : report.notes) std::printf("  note: %s\n", note.c_str());
    // A pass that harmed the model says so; a pipeline should not ship such a file unread.
    for (const auto& warning : report.warnings) std::fprintf(stderr, "WARNING: %s: %s\n", report.pass.c_str(), warning.c_str());
  }

  // 4. Measure before and after.
  if (input.test) measure_before_and_after(input, applied.module);

  // 5. Save atomically, with the provenance of how it was made.
  joulecut::ModelMetadata metadata = input.metadata;
  metadata.provenance_json = joulecut::pipeline_provenance("deploy_pipeline", joulecut::print_pipeline(passes), 1, input);
  joulecut::save_model(applied.module, metadata, a.output, a.model);
  std::printf("wrote %s (sha256 %s)\n", a.output.c_str(), joulecut::sha256_file(a.output).substr(0, 16).c_str());
}

}  // namespace

int main(int argc, char** argv) {
  try {
    run(parse_arguments(argc, argv));
  } catch (const joulecut::UserError& e) {
    std::fprintf(stderr, "deploy_pipeline: %s\n", joulecut::printable(e.message_with(option_name)).c_str());
    if (argc < 3) std::fprintf(stderr, "usage: deploy_pipeline MODEL.pt OUTPUT.pt [PIPELINE] [DATA] [data options]\n");
    return 1;
  } catch (const std::exception& e) {  // LibTorch's own errors: one line, never a stack dump
    std::fprintf(stderr, "deploy_pipeline: %s\n", joulecut::torch_error_summary(e).c_str());
    return 1;
  }
  return 0;
}
