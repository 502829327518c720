// compress info: layers, parameters, MACs, dtype, sparsity and size of a model file.
#include <cstdio>
#include <iostream>

#include "joulecut/atomic_file.h"
#include "joulecut/error.h"
#include "joulecut/graph_stats.h"
#include "joulecut/model.h"
#include "joulecut/text.h"
#include "joulecut/threads.h"
#include "options.h"

namespace joulecut::cli {
namespace {

struct InfoOptions {
  std::string model;
  bool json = false;
};

std::string dims_text(const std::vector<std::int64_t>& shape) {
  std::string out = "[";
  for (std::size_t i = 0; i < shape.size(); ++i) out += (i ? "," : "") + std::to_string(shape[i]);
  return out + "]";
}

void run_info(const InfoOptions& options) {
  configure_threads(1);
  auto loaded = load_model(options.model);
  const DatasetSpec spec = loaded.metadata ? loaded.metadata->dataset : fashion_mnist_spec();
  loaded.module.eval();
  const at::Tensor example = at::zeros({1, spec.channels, spec.height, spec.width});
  ModelStats stats;
  try {
    stats = analyze_model(loaded.module, example);
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
                {"sha256", sha256_file(options.model)},
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
              sha256_file(options.model).substr(0, 16).c_str());
  if (loaded.metadata) {
    std::printf("arch       %s\n", loaded.metadata->arch.empty() ? "(not a reference model)" : loaded.metadata->arch.c_str());
    std::printf("input      %s, %s, normalized (x - %.4f) / %.4f\n",
                dims_text({1, spec.channels, spec.height, spec.width}).c_str(), spec.name.c_str(), spec.mean, spec.stddev);
  } else {
    std::printf("input      %s (no joulecut metadata in the file: assumed fashion-mnist)\n",
                dims_text({1, spec.channels, spec.height, spec.width}).c_str());
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
                dims_text(l.weight_shape).c_str(), dims_text(l.output_shape).c_str(), (long long)l.params,
                (long long)l.macs, 100.0 * double(l.weight_zeros) / elems);
  }
}

}  // namespace

Command make_info_command(CLI::App& app) {
  auto options = std::make_shared<InfoOptions>();
  auto* cmd = app.add_subcommand("info", "Layers, parameters, MACs per layer and in total, dtype, sparsity, size");
  cmd->add_option("model", options->model, "TorchScript file")->required();
  cmd->add_flag("--json", options->json, "Machine-readable output");
  return {cmd, [options](const Invocation&) { run_info(*options); }};
}

}  // namespace joulecut::cli
