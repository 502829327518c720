// A deployment pipeline's use of joulecut, the way a C++ inference service would: load a
// TorchScript model, build passes from pipeline text, run them with calibration data, measure
// the model before and after inside energy windows, and save the result.
//
// Usage: deploy_pipeline MODEL.pt OUTPUT.pt [PIPELINE] [DATA]
//   PIPELINE: pipeline text, default "quantize-int8<samples=256>"
//   DATA:     fashion-mnist (default) or a directory of IDX files
// Every energy figure says where it came from: a hardware meter (measured) or a model.
#include <joulecut/joulecut.h>

#include <algorithm>
#include <cstdio>
#include <string>

namespace {

// Runs `module` on `batch` `iterations` times inside one named window and prints the window.
double timed_window(joulecut::measure::EnergySession& session, const std::string& name, torch::jit::Module& module,
                    const at::Tensor& batch, int iterations) {
  at::NoGradGuard no_grad;
  module.forward({batch});  // warm-up, outside the window
  session.begin(name);
  for (int i = 0; i < iterations; ++i) module.forward({batch});
  const auto window = session.end(name);
  const double per_inference = 1.0 / double(iterations * batch.size(0));
  if (window.measured)
    std::printf("  %-8s %.3f s, %.4g mJ/inference measured (%s)\n", name.c_str(), window.seconds,
                1e3 * window.measured->joules * per_inference, window.measured->meter.c_str());
  else
    std::printf("  %-8s %.3f s, %.4g mJ/inference modeled (%s)\n", name.c_str(), window.seconds,
                1e3 * window.modeled.joules * per_inference, window.modeled.model.c_str());
  return window.seconds;
}

}  // namespace

int main(int argc, char** argv) {
  if (argc < 3 || argc > 5) {
    std::fprintf(stderr, "usage: deploy_pipeline MODEL.pt OUTPUT.pt [PIPELINE] [DATA]\n");
    return 2;
  }
  const std::string model_path = argv[1], output_path = argv[2];
  const std::string pipeline = argc > 3 ? argv[3] : "quantize-int8<samples=256>";
  joulecut::DataSource data;
  if (argc > 4) data.data = argv[4];
  try {
    joulecut::configure_threads(0);
    joulecut::refuse_to_overwrite_input(model_path, output_path);

    // 1. Passes from text: unknown passes or options fail here, before any work.
    const auto passes = joulecut::parse_pipeline(pipeline);

    // 2. The model, its test images (to measure on), and the training split only if a pass
    //    calibrates or trains.
    const joulecut::PipelineInput input =
        joulecut::load_pipeline_input(model_path, data, joulecut::needs_training_data(passes), /*with_test=*/true);
    joulecut::PassContext context = joulecut::pass_context(input, /*seed=*/1, /*progress=*/false);

    // 3. Apply: the input module is never changed.
    const auto applied = joulecut::apply_passes(passes, input.loaded.module, context);
    for (const auto& report : applied.reports) std::printf("%s: %s\n", report.pass.c_str(), report.summary.c_str());

    // 4. Measure before and after, as deployed (frozen and optimized), on the same batch.
    const at::Tensor batch = input.test->images.narrow(0, 0, std::min<std::int64_t>(64, input.test->size()));
    joulecut::measure::EnergySession session;
    std::printf("meter: %s\n", session.meter_explanation().c_str());
    const c10::Device cpu("cpu");
    auto before = joulecut::measure::prepare_for_inference(input.loaded.module, true, cpu, nullptr);
    auto after = joulecut::measure::prepare_for_inference(applied.module, true, cpu, nullptr);
    const double t_before = timed_window(session, "before", before, batch, 50);
    const double t_after = timed_window(session, "after", after, batch, 50);
    std::printf("  speed-up %.2fx (one window each: a benchmark, not a paper figure; use compress compare)\n",
                t_before / t_after);

    // 5. Save atomically, with the provenance of how it was made.
    joulecut::ModelMetadata metadata = input.metadata;
    metadata.provenance_json =
        joulecut::pipeline_provenance("deploy_pipeline", joulecut::print_pipeline(passes), 1, input);
    joulecut::save_model(applied.module, metadata, output_path, model_path);
    std::printf("wrote %s (sha256 %s)\n", output_path.c_str(), joulecut::sha256_file(output_path).substr(0, 16).c_str());
  } catch (const joulecut::UserError& e) {
    std::fprintf(stderr, "deploy_pipeline: %s\n", e.what());
    return 1;
  }
  return 0;
}
