#pragma once
// Label-free quality: how closely a compressed model's outputs follow the model it came from,
// on the same inputs. For data without labels, or by choice (--metric).
#include <torch/script.h>

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "joulecut/data.h"
#include "joulecut/measure/stats.h"

namespace joulecut {

struct Fidelity {
  // Top-1 agreement of the class scores (the output data.output names, when it is [N, classes]).
  std::optional<measure::ProportionCI> agreement;
  measure::MeanCI cosine;      // per sample, over every tensor output flattened; mean and 95% CI
  double snr_db = 0;           // 10 log10(sum reference^2 / sum (reference - model)^2), every output
  double max_abs_error = 0;    // over every output element
  std::int64_t samples = 0;
};

// Runs both modules (eval mode, no grad) on every sample of `data` in batches of `batch`.
// Tuple, list and dict outputs are compared element by element. Throws UserError when the two
// models' outputs differ in structure or shape.
Fidelity fidelity(torch::jit::Module& reference, torch::jit::Module& model, const TensorDataset& data,
                  std::int64_t batch = 256);

// The reference model's outputs on `data`, batch by batch: computed once to judge many
// candidate models against (quantize-static's fidelity guard).
struct ReferenceOutputs {
  std::vector<c10::IValue> batches;
  std::int64_t batch = 256;
};
ReferenceOutputs reference_outputs(torch::jit::Module& reference, const TensorDataset& data, std::int64_t batch = 256);
Fidelity fidelity(const ReferenceOutputs& reference, torch::jit::Module& model, const TensorDataset& data);
// Whether the reference's outputs are class scores ([N, classes], or the output data.output
// names), so that fidelity() gives top-1 agreement; read off the outputs, nothing run again.
bool has_class_scores(const ReferenceOutputs& reference, const TensorDataset& data);

// "agreement 98.5% (97.9-99.0), cosine 0.9993 ± 0.0002, SNR 31.2 dB, max |error| 0.041".
std::string fidelity_text(const Fidelity& f);

}  // namespace joulecut
