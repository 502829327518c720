#pragma once
// Running a pipeline of passes on a model file: what `compress prune|quantize|run`, sweeps and
// the C++ API share. Passes never measure; the harness (joulecut/measure) does.
#include <torch/script.h>

#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "joulecut/data.h"
#include "joulecut/model.h"
#include "joulecut/pass.h"

namespace joulecut {

// A pipeline's input: the model, the metadata its outputs inherit, and the data sets when a
// pass needs them.
struct PipelineInput {
  std::string path;
  LoadedModel loaded;
  ModelMetadata metadata;  // the input's own, or (no joulecut metadata) the data set's spec
  std::string sha256;      // of the file
  std::optional<TensorDataset> train, test;
};

// True when a pass of `passes` trains or calibrates (and so needs the training split).
bool needs_training_data(const std::vector<std::unique_ptr<Pass>>& passes);

// Loads `model`; with `with_train`, both splits of `data`; with `with_test` alone, the test
// split (to measure on) unless the model's input is synthetic (no data given). Data read is
// checked against the model. Throws UserError for a file that does not load, data that does
// not, a model that does not accept it, or training data asked for with synthetic input.
PipelineInput load_pipeline_input(const std::string& model, const DataSource& data, bool with_train,
                                  bool with_test = false);

// The context the passes run in. Precondition: `in` outlives the context (it points into it).
// The model as given teaches a distill pass that names no teacher.
PassContext pass_context(const PipelineInput& in, std::uint64_t seed, bool progress);

// Around every pass, e.g. to save each stage or print progress.
struct PassHooks {
  std::function<void(std::size_t index, const Pass& pass)> before;
  std::function<void(std::size_t index, const Pass& pass, const PassResult& result)> after;
};

struct AppliedPipeline {
  torch::jit::Module module;
  std::vector<PassReport> reports;
};

// Runs `passes` in order from `module` (never changed). Throws what the passes throw.
AppliedPipeline apply_passes(const std::vector<std::unique_ptr<Pass>>& passes, const torch::jit::Module& module,
                             PassContext& context, const PassHooks& hooks = {});

// The provenance (JSON object text) every output of a pipeline records: the command, the
// pipeline as text, the seed, and the source file with its hash and its own provenance.
// `extra_json`: an object whose fields are added (a sweep's point and stage), or "". `reports`:
// the passes applied so far; their warnings (harm a pass did, e.g. a fidelity guard not met)
// travel with the file as "warnings", "PASS: text" each.
std::string pipeline_provenance(const std::string& command, const std::string& pipeline, std::uint64_t seed,
                                const PipelineInput& in, const std::string& extra_json = "",
                                const std::vector<PassReport>& reports = {});

}  // namespace joulecut
