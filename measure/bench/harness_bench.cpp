// Harness overhead and precision benchmark.
//  1. Overhead: the runner's per-iteration timing, polling and bookkeeping against a bare
//     inference loop timed once per window, alternated so drift hits both alike.
//  2. Spread: the same measurement repeated, to show how much runs differ on this machine.
// Usage: bench_harness [MODEL.pt] [BATCH] [WINDOW_SECONDS]
#include <ATen/ATen.h>
#include <ATen/Parallel.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <vector>

#include "joulecut/threads.h"
#include "joulecut/data.h"
#include "joulecut/error.h"
#include "joulecut/evaluate.h"
#include "joulecut/measure/runner.h"
#include "joulecut/model.h"
#include "joulecut/platform.h"

using namespace joulecut;
using Clock = std::chrono::steady_clock;

int main(int argc, char** argv) {
  restart_with_better_openblas_kernels(argv);  // OpenBLAS reads OPENBLAS_CORETYPE only when it loads
  const std::string path = argc > 1 ? argv[1] : "models/trained/lenet5.pt";
  const std::int64_t batch = argc > 2 ? std::atoll(argv[2]) : 64;
  const double window = argc > 3 ? std::atof(argv[3]) : 1.0;
  try {
    configure_threads(0);
    auto loaded = load_model(path);
    std::string how;
    auto module = measure::prepare_for_inference(loaded.module, true, c10::Device(c10::kCPU), &how);
    const auto data = load_dataset({}, Split::test, loaded.metadata ? std::optional(loaded.metadata->dataset) : std::nullopt);
    const at::Tensor input = data.images.narrow(0, 0, batch).contiguous();
    at::NoGradGuard no_grad;

    measure::RunOptions options;
    options.batch = batch;
    options.meter = "model";
    options.windows = 5;
    options.min_window_seconds = window;
    options.warmup_seconds = 0.5;

    // Bare loop: as many iterations as the harness uses, one clock pair per window.
    auto bare = [&](std::int64_t iterations) {
      std::vector<double> per_iteration;
      for (int w = 0; w < options.windows; ++w) {
        const auto t0 = Clock::now();
        for (std::int64_t i = 0; i < iterations; ++i) module.forward({input});
        per_iteration.push_back(std::chrono::duration<double>(Clock::now() - t0).count() / double(iterations));
      }
      return measure::mean_ci95(per_iteration).mean;
    };

    std::printf("model %s, batch %lld, %d threads, windows of >= %.2f s, %s\n", path.c_str(), (long long)batch,
                at::get_num_threads(), window, how.c_str());
    std::vector<double> ratios, means;
    for (int round = 0; round < 5; ++round) {
      const auto r = measure::measure(module, input, options);
      const double bare_mean = bare(r.iterations_per_window);
      ratios.push_back(r.latency_seconds.mean / bare_mean);
      means.push_back(r.latency_seconds.mean);
      std::printf("round %d: harness %.4f ms ± %.4f (95%% CI), bare %.4f ms, harness/bare %.4f\n", round + 1,
                  r.latency_seconds.mean * 1e3, r.latency_seconds.half_width * 1e3, bare_mean * 1e3,
                  ratios.back());
    }
    // The harness's own cost per iteration (two clock reads, one push, a poll check), isolated
    // on a model that does nothing, so the machine's noise on real work does not hide it.
    torch::jit::Module identity("Identity");
    identity.define("def forward(self, x):\n    return x\n");
    std::vector<double> bookkeeping;
    for (int round = 0; round < 5; ++round) {
      const auto r = measure::measure(identity, input, options);
      const std::int64_t n = r.iterations_per_window;
      const auto t0 = Clock::now();
      for (std::int64_t i = 0; i < n; ++i) identity.forward({input});
      const double bare_identity = std::chrono::duration<double>(Clock::now() - t0).count() / double(n);
      bookkeeping.push_back(r.latency_seconds.mean - bare_identity);
    }
    std::sort(bookkeeping.begin(), bookkeeping.end());
    const double per_iteration = bookkeeping[2];
    const double model_latency = measure::quantile(means, 0.5);
    std::printf("bookkeeping: %.0f ns per iteration (median of 5, measured on an identity module) = %.4f%% of this "
                "model's %.4f ms per batch\n",
                per_iteration * 1e9, 100 * per_iteration / model_latency, model_latency * 1e3);

    const auto ratio = measure::mean_ci95(ratios);
    const auto spread = measure::mean_ci95(means);
    std::printf("overhead: harness/bare = %.4f ± %.4f (mean ± 95%% CI over 5 rounds), i.e. %+.2f%%\n", ratio.mean,
                ratio.half_width, (ratio.mean - 1) * 100);
    std::printf("spread: 5 repeated measurements, mean latency %.4f ms, coefficient of variation %.2f%%\n",
                spread.mean * 1e3, 100 * spread.stddev / spread.mean);
  } catch (const UserError& e) {
    std::fprintf(stderr, "bench_harness: %s\n", e.what());
    return 1;
  }
  return 0;
}
