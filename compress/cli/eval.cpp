// compress eval: top-1 accuracy on a test set, per class, with a 95% confidence interval.
#include <ATen/Parallel.h>

#include <algorithm>
#include <cstdio>
#include <iostream>

#include "joulecut/evaluate.h"
#include "joulecut/model.h"
#include "joulecut/model_input.h"
#include "joulecut/platform.h"
#include "joulecut/threads.h"
#include "joulecut/torch_compat.h"
#include "options.h"

namespace joulecut::cli {
namespace {

struct EvalOptions {
  std::string model;
  DataSource data;
  std::int64_t batch = 256;
  std::int64_t limit = 0;
  bool json = false;
};

void run_eval(const EvalOptions& options, const Invocation& invocation) {
  apply_threads(invocation.threads);
  auto loaded = load_model(options.model);
  require_real_data(resolve_input(options.data, loaded), options.model, false);
  std::optional<DatasetSpec> spec;
  if (loaded.metadata) spec = loaded.metadata->dataset;
  auto data = take_first(load_dataset(options.data, Split::test, spec), options.limit);
  check_model_accepts(loaded.module, data, options.model);
  const auto result = evaluate(loaded.module, data, {options.batch});
  const auto& acc = result.accuracy;
  const auto classes = std::int64_t(result.confusion.size());
  const auto class_name = [&](std::int64_t c) {
    return c < std::int64_t(data.spec.class_names.size()) ? data.spec.class_names[c] : "class " + std::to_string(c);
  };
  const auto class_total = [&](std::int64_t c) {
    std::int64_t total = 0;
    for (auto v : result.confusion[c]) total += v;
    return total;
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
      const std::int64_t total = class_total(c);
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
    const std::int64_t total = class_total(c);
    if (total == 0) continue;
    std::printf("  %-12s %6.2f%%  (%lld)\n", class_name(c).c_str(), 100.0 * double(result.confusion[c][c]) / double(total),
                (long long)total);
  }
  std::printf("\nmost confused (true -> predicted):\n");
  for (const auto& c : confusions)
    std::printf("  %-12s -> %-12s %lld\n", class_name(c.truth).c_str(), class_name(c.predicted).c_str(),
                (long long)c.count);
  const auto blas = blas_in_use();
  std::printf("\n%d threads, BLAS %s, LibTorch %s, %.2f s\n", at::get_num_threads(), blas.name.c_str(),
              compat::torch_version().c_str(), result.seconds);
}

}  // namespace

Command make_eval_command(CLI::App& app) {
  auto options = std::make_shared<EvalOptions>();
  auto* cmd = app.add_subcommand("eval", "Top-1 accuracy on a test set, with a 95% confidence interval");
  cmd->add_option("model", options->model, "TorchScript file")->required();
  add_data_options(cmd, options->data);
  cmd->add_option("--batch", options->batch, "Evaluation batch size")->capture_default_str()->check(CLI::PositiveNumber);
  cmd->add_option("--limit", options->limit, "Use only the first N test images (0: all)")->capture_default_str();
  cmd->add_flag("--json", options->json, "Machine-readable output");
  return {cmd, [options](const Invocation& invocation) { run_eval(*options, invocation); }};
}

}  // namespace joulecut::cli
