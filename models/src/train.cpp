#include <ATen/ATen.h>
#include <ATen/Parallel.h>

#include <nlohmann/json.hpp>

#include <map>

#include "joulecut/error.h"
#include "joulecut/models.h"
#include "joulecut/platform.h"
#include "joulecut/threads.h"
#include "joulecut/train_loop.h"
#include "joulecut/torch_compat.h"
#include "joulecut/version.h"

namespace joulecut {

TrainOptions with_defaults(TrainOptions options) {
  struct Defaults {
    int epochs;
    double learning_rate;
    double weight_decay;
    const char* optimizer = "sgd";
  };
  static const std::map<std::string, Defaults> defaults = {
      {"mlp", {15, 0.05, 1e-4}},
      {"lenet5", {15, 0.05, 5e-4}},
      {"resnet8", {12, 0.1, 5e-4}},
      {"mobilenet", {10, 0.1, 1e-4}},
      {"mobilenetv2", {8, 0.1, 4e-5}},
      {"vit", {12, 1e-3, 1e-4, "adam"}},  // transformers train poorly with SGD
      {"lenet5-half", {15, 0.05, 5e-4}},
      {"resnet8-thin", {12, 0.1, 5e-4}},
  };
  const auto it = defaults.find(options.arch);
  if (it == defaults.end()) build_reference_model(options.arch, 0);  // throws the "unknown architecture" error
  if (options.epochs <= 0) options.epochs = it->second.epochs;
  if (options.learning_rate <= 0) options.learning_rate = it->second.learning_rate;
  if (options.weight_decay <= 0) options.weight_decay = it->second.weight_decay;
  if (options.optimizer.empty()) options.optimizer = it->second.optimizer;
  if (options.batch <= 0) throw UserError("--batch must be positive");
  return options;
}

TrainResult train_reference_model(const TrainOptions& requested, const DataSource& data,
                                  const std::string& command) {
  const TrainOptions options = with_defaults(requested);
  TensorDataset train = load_dataset(data, Split::train);
  const TensorDataset test = load_dataset(data, Split::test, train.spec);
  train = take_first(train, options.train_limit);

  at::manual_seed(options.seed);
  torch::jit::Module module = build_reference_model(options.arch, options.seed);
  LoopOptions loop;
  loop.epochs = options.epochs;
  loop.batch = options.batch;
  loop.learning_rate = options.learning_rate;
  loop.momentum = options.momentum;
  loop.optimizer = options.optimizer;
  loop.weight_decay = options.weight_decay;
  loop.seed = options.seed;
  loop.progress = options.progress;
  const LoopResult loop_result = train_loop(module, train, &test, loop);
  TrainResult result;
  result.test_accuracy = loop_result.test_accuracy;
  result.epoch_seconds = loop_result.epoch_seconds;
  const std::int64_t n = train.size();

  nlohmann::json provenance = {
      {"command", command},
      {"arch", options.arch},
      {"seed", options.seed},
      {"epochs", options.epochs},
      {"batch", options.batch},
      {"optimizer", options.optimizer == "adam" ? "Adam (L2 weight decay)" : "SGD, Nesterov momentum"},
      {"momentum", options.momentum},
      {"learning_rate", options.learning_rate},
      {"schedule", "cosine to 0, per step"},
      {"weight_decay", options.weight_decay},
      {"train_images", n},
      {"threads", at::get_num_threads()},
      {"test_accuracy", result.test_accuracy},
      {"test_images", test.size()},
      {"selection", "final epoch (no model selection on the test set)"},
      {"libtorch", compat::torch_version()},
      {"joulecut", std::string(JOULECUT_VERSION) + " (" + JOULECUT_GIT_REVISION + ")"},
      {"blas", blas_in_use().name},
      {"cpu", cpu_model()},
  };
  result.metadata.arch = options.arch;
  result.metadata.dataset = train.spec;
  result.metadata.provenance_json = provenance.dump();
  result.module = module;
  return result;
}

}  // namespace joulecut
