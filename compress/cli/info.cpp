// compress info: layers, parameters, MACs, dtype, sparsity and size of a model file.
#include <algorithm>
#include <cstdio>
#include <iostream>

#include "joulecut/atomic_file.h"
#include "joulecut/error.h"
#include "joulecut/graph_stats.h"
#include "joulecut/model.h"
#include "joulecut/model_input.h"
#include "joulecut/text.h"
#include "joulecut/threads.h"
#include "options.h"

namespace joulecut::cli {
namespace {

struct InfoOptions {
  std::string model;
  bool json = false;
  DataSource inputs;  // only the input flags: info reads no data
};

std::string dims_text(const std::vector<std::int64_t>& shape) {
  std::vector<std::string> dims;
  for (const auto d : shape) dims.push_back(std::to_string(d));
  return "[" + join(dims, ",") + "]";
}

void run_info(const InfoOptions& options) {
  configure_threads(1);
  auto loaded = load_model(options.model);
  const DatasetSpec spec = loaded.metadata ? loaded.metadata->dataset : fashion_mnist_spec();
  // MACs and shapes need no data: one generated input of the spec (values do not change them).
  const ResolvedInput input = resolve_input(options.inputs, loaded);
  loaded.module.eval();
  ModelStats stats;
  try {
    stats = analyze_model(loaded.module, synthetic_inputs(input.spec, 1));
  } catch (const UserError& e) {
    throw UserError(
        options.model + ": " + e.unrendered() +
        (input.origin == "flags" ? "" : "; describe its input with --input-shape, --input-dtype and --input-range"));
  }
  const std::string input_origin = input.origin == "data set" && !loaded.metadata ? "default (fashion-mnist)" : input.origin;
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
    std::vector<std::int64_t> first_shape{1};
    for (auto d : input.spec.arguments.front().shape) first_shape.push_back(d);
    json out = {{"model", options.model},
                {"file_bytes", loaded.file_bytes},
                {"sha256", sha256_file(options.model)},
                {"arch", loaded.metadata ? loaded.metadata->arch : ""},
                {"input_shape", first_shape},
                {"inputs", json::parse(input_spec_to_json(input.spec))},
                {"input_spec_source", input_origin},
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
  if (loaded.metadata)
    std::printf("arch       %s\n", loaded.metadata->arch.empty() ? "(not a reference model)" : loaded.metadata->arch.c_str());
  if (input.origin != "data set") {
    std::printf("input      %s (from the %s)\n", describe_input_spec(input.spec).c_str(), input.origin.c_str());
  } else if (loaded.metadata) {
    std::printf("input      %s, %s, normalized (x - %.4f) / %.4f\n",
                dims_text({1, spec.channels, spec.height, spec.width}).c_str(), spec.name.c_str(), spec.mean, spec.stddev);
  } else {
    std::printf("input      %s (no joulecut metadata in the file: assumed fashion-mnist; --input-shape says otherwise)\n",
                dims_text({1, spec.channels, spec.height, spec.width}).c_str());
  }
  const std::string dtypes = join(stats.dtypes, ", ");
  std::printf("params     %s (%s in parameters and buffers), dtype %s\n", human_count(double(stats.parameters)).c_str(),
              human_bytes(double(stats.parameter_bytes)).c_str(), dtypes.empty() ? "none" : dtypes.c_str());
  std::printf("MACs       %s per inference (conv, linear and matmul layers)\n", human_count(double(stats.macs)).c_str());
  std::printf("sparsity   %.2f%% zero weights in those layers\n\n", 100 * stats.weight_sparsity());
  int op_width = 18, name_width = 28;
  for (const auto& l : stats.layers) {
    op_width = std::max(op_width, int(l.op.size()));
    name_width = std::max(name_width, int(l.name.size()));
  }
  std::printf("%-*s %-*s %-16s %-16s %10s %12s %9s\n", name_width, "layer", op_width, "op", "weight", "output", "params", "MACs",
              "sparsity");
  for (const auto& l : stats.layers) {
    const double elems = l.weight_shape.empty() ? 1.0 : double(c10::multiply_integers(l.weight_shape));
    std::printf("%-*s %-*s %-16s %-16s %10lld %12lld %8.2f%%\n", name_width, l.name.c_str(), op_width, l.op.c_str(),
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
  add_input_options(cmd, options->inputs, /*with_output=*/false);
  cmd->footer("Example: compress info resnet18.pt --input-shape 3,224,224\n"
              "         compress info text-classifier.pt --input-shape 64 --input-dtype int64 --input-range 0,30522");
  return {cmd, [options](const Invocation&) { run_info(*options); }};
}

}  // namespace joulecut::cli
