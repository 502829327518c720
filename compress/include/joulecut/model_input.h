#pragma once
// What a model is fed: real data, or inputs generated from its InputSpec when no data is
// given (measurement and MAC counting only: accuracy is then "n/a (no data)", and calibration
// is refused). And which of a model's outputs holds the class scores.
#include <torch/script.h>

#include <cstdint>
#include <string>
#include <vector>

#include "joulecut/data.h"
#include "joulecut/input_spec.h"
#include "joulecut/model.h"

namespace joulecut {

// The input spec of a model, and where it came from.
struct ResolvedInput {
  InputSpec spec;
  std::string origin;      // "flags", "model metadata" or "data set"
  bool synthetic = false;  // no data given, and the default data set does not fit the spec
};

// From, in this order: the flags in `source` (--input-shape/--input-dtype/--input-range), the
// model's metadata, the data set (its images: one float32 argument). Synthetic when no data was
// given (--data, --images) and the spec is not the default data set's image shape.
// Throws UserError on malformed flags.
ResolvedInput resolve_input(const DataSource& source, const LoadedModel& model);

// Throws UserError naming `model_path` when `input` is synthetic: accuracy (and, with
// `for_training`, calibration and training) need real data.
void require_real_data(const ResolvedInput& input, const std::string& model_path, bool for_training);

// One float32 argument of the data set's image shape [C, H, W].
InputSpec input_spec_of(const DatasetSpec& data);
// What the data itself feeds: each argument's name (the .npz array's), shape and dtype, read off
// its first sample (e.g. "input_ids [64] int64, attention_mask [64] int64" when described).
InputSpec input_spec_of(const TensorDataset& data);

// Inputs of `spec` for a batch: float arguments N(0, 1), integer ones uniform in [low, high),
// bool ones 0/1; a fixed generator seeded with `seed`, so every run feeds the same values.
// Throws UserError when an integer argument has no range (give --input-range).
std::vector<at::Tensor> synthetic_inputs(const InputSpec& spec, std::int64_t batch, std::uint64_t seed = 1);

// Runs the model once on `inputs`. Throws UserError naming `model_path`, the inputs and
// LibTorch's complaint, with the flags that describe another input.
void check_model_accepts_inputs(torch::jit::Module& module, const std::vector<at::Tensor>& inputs,
                                const std::string& model_path);

// Orders a data set's named inputs (an .npz's arrays) as forward()'s arguments. Throws
// UserError naming the data when an argument has no array or an array is no argument.
void arrange_inputs(TensorDataset& data, const torch::jit::Module& module, const std::string& model_path);

// The tensor of a model's output that holds what accuracy and fidelity read: the output itself
// when it is a tensor; element INDEX of a tuple or list, or the value of KEY in a dict, as
// `selector` says (--model-output). Throws UserError naming `model_path` and listing what the output
// holds when `selector` names nothing, or is needed and empty.
at::Tensor select_output(const c10::IValue& output, const std::string& selector, const std::string& model_path);

}  // namespace joulecut
