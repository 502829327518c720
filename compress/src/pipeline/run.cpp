#include "joulecut/pipeline.h"

#include <nlohmann/json.hpp>

#include "joulecut/atomic_file.h"
#include "joulecut/error.h"
#include "joulecut/evaluate.h"
#include "joulecut/model_input.h"

namespace joulecut {

bool needs_training_data(const std::vector<std::unique_ptr<Pass>>& passes) {
  for (const auto& p : passes)
    if (p->needs_training_data()) return true;
  return false;
}

PipelineInput load_pipeline_input(const std::string& model, const DataSource& given, bool with_train, bool with_test) {
  DataSource data = given;
  data.split_one_file = data.split_one_file || with_train;  // one file: calibrate or train on part, judge on the rest
  PipelineInput in{model, load_model(model), {}, sha256_file(model), {}, {}};
  std::optional<DatasetSpec> spec;
  if (in.loaded.metadata) {
    spec = in.loaded.metadata->dataset;
    in.metadata = *in.loaded.metadata;
  } else {
    in.metadata.dataset = fashion_mnist_spec();
  }
  const ResolvedInput input = resolve_input(data, in.loaded);
  if (input.origin == "flags") in.metadata.inputs = input.spec;  // outputs record what they take
  // Training and calibration need real data. The test split is read when there is data; a model
  // fed synthetic input is measured without accuracy (measure_files says so).
  if (with_train) require_real_data(input, model, true);
  if (input.synthetic) with_test = false;
  // The test split first: a model that does not accept the data fails before the (larger)
  // training split is read.
  if (with_test || with_train) {
    in.test = load_dataset(data, Split::test, spec);
    check_model_accepts(in.loaded.module, *in.test, model);
    if (!in.loaded.metadata) in.metadata.dataset = in.test->spec;
  }
  if (with_train) {
    in.train = load_dataset(data, Split::train, spec);
    arrange_inputs(*in.train, in.loaded.module, model);
  }
  // A model without metadata records the spec (channels, size, normalization) of the data it was
  // given, which only reading a split tells: left at Fashion-MNIST's, the next command would
  // preprocess the same data differently.
  if (!in.loaded.metadata && !in.test && data.given() && !input.synthetic)
    in.metadata.dataset = load_dataset(data, Split::test, spec).spec;
  return in;
}

PassContext pass_context(const PipelineInput& in, std::uint64_t seed, bool progress) {
  PassContext context;
  context.seed = seed;
  context.teacher = &in.loaded.module;
  context.progress = progress;
  if (in.train) context.train = &*in.train;
  if (in.test) context.test = &*in.test;
  return context;
}

AppliedPipeline apply_passes(const std::vector<std::unique_ptr<Pass>>& passes, const torch::jit::Module& module,
                             PassContext& context, const PassHooks& hooks) {
  AppliedPipeline out{module, {}};
  for (std::size_t i = 0; i < passes.size(); ++i) {
    if (hooks.before) hooks.before(i, *passes[i]);
    PassResult result = passes[i]->run(out.module, context);
    if (hooks.after) hooks.after(i, *passes[i], result);
    out.module = result.module;
    out.reports.push_back(std::move(result.report));
  }
  return out;
}

std::string pipeline_provenance(const std::string& command, const std::string& pipeline, std::uint64_t seed,
                                const PipelineInput& in, const std::string& extra_json,
                                const std::vector<PassReport>& reports) {
  const std::string& source = in.loaded.metadata ? in.loaded.metadata->provenance_json : std::string();
  nlohmann::json out = {{"command", command},
                        {"pipeline", pipeline},
                        {"seed", seed},
                        {"source", in.path},
                        {"source_sha256", in.sha256},
                        {"source_provenance", source.empty() ? nlohmann::json() : nlohmann::json::parse(source)}};
  if (!extra_json.empty()) out.update(nlohmann::json::parse(extra_json));
  nlohmann::json warnings = nlohmann::json::array();
  for (const auto& r : reports)
    for (const auto& w : r.warnings) warnings.push_back(r.pass + ": " + w);
  if (!warnings.empty()) out["warnings"] = warnings;
  return out.dump();
}

}  // namespace joulecut
