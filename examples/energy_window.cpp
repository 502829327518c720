// The C++ measurement API from a deployment pipeline: a scoped energy window around any
// work, and the one-call measure() of a model. Prints which meter ran and each figure's
// provenance. Usage: example_energy_window MODEL.pt
#include <ATen/ATen.h>

#include <cstdio>

#include "joulecut/error.h"
#include "joulecut/measure/runner.h"
#include "joulecut/model.h"

int main(int argc, char** argv) {
  if (argc != 2) {
    std::fprintf(stderr, "usage: example_energy_window MODEL.pt\n");
    return 2;
  }
  try {
    auto loaded = joulecut::load_model(argv[1]);
    loaded.module.eval();
    const at::Tensor batch = at::randn({32, 1, 28, 28});
    at::NoGradGuard no_grad;

    joulecut::measure::EnergySession session;  // --meter auto
    std::printf("meter: %s\n", session.meter_explanation().c_str());
    session.begin("100 batches");
    for (int i = 0; i < 100; ++i) loaded.module.forward({batch});
    const auto window = session.end("100 batches");
    std::printf("%s: %.3f s, ", window.name.c_str(), window.seconds);
    if (window.measured)
      std::printf("%.4f J %s (%s)\n", window.measured->joules, joulecut::measure::provenance_name(window.measured->provenance),
                  window.measured->meter.c_str());
    else
      std::printf("%.4f J modeled (%s; no hardware meter)\n", window.modeled.joules, window.modeled.model.c_str());

    joulecut::measure::RunOptions options;
    options.batch = 32;
    options.windows = 5;
    const auto r = joulecut::measure::measure(loaded.module, batch, options);
    std::printf("measure(): p50 %.3f ms per batch, %.1f inferences/s, %.4g mJ/inference modeled (time x power)\n",
                r.p50_seconds * 1e3, r.throughput.mean, r.modeled_time_power.joules_per_inference.mean * 1e3);
  } catch (const joulecut::UserError& e) {
    std::fprintf(stderr, "example_energy_window: %s\n", e.what());
    return 1;
  }
  return 0;
}
