#include "joulecut/fidelity.h"

#include <ATen/ATen.h>

#include <cmath>
#include <cstdio>
#include <optional>

#include "joulecut/error.h"
#include "joulecut/evaluate.h"
#include "joulecut/model_input.h"
#include "joulecut/text.h"

namespace joulecut {
namespace {

// Every tensor of an output, in order, each [N, ...] flattened to [N, D].
void flatten_outputs(const c10::IValue& v, std::vector<at::Tensor>& out) {
  if (v.isTensor()) {
    const at::Tensor t = v.toTensor().detach().to(at::kCPU, at::kFloat);
    out.push_back(t.dim() == 0 ? t.reshape({1, 1}) : t.reshape({t.size(0), -1}));
  } else if (v.isTuple()) {
    for (const auto& e : v.toTupleRef().elements()) flatten_outputs(e, out);
  } else if (v.isList()) {
    for (const auto& e : v.toListRef()) flatten_outputs(e, out);
  } else if (v.isGenericDict()) {
    for (const auto& item : v.toGenericDict()) flatten_outputs(item.value(), out);
  }
}

// The class scores in `output` for `n` samples ([n, classes] as data.output selects them), or
// nullopt: several outputs and none chosen, or not [n, classes]. The one rule for agreement.
std::optional<at::Tensor> class_scores(const c10::IValue& output, std::int64_t n, const TensorDataset& data) {
  try {
    const at::Tensor t = select_output(output, data.output, data.description);
    if (t.dim() == 2 && t.size(0) == n && t.size(1) > 1) return t;
  } catch (const UserError&) {
  }
  return std::nullopt;
}

}  // namespace

bool has_class_scores(const ReferenceOutputs& reference, const TensorDataset& data) {
  for (std::size_t b = 0; b < reference.batches.size(); ++b) {
    const std::int64_t start = std::int64_t(b) * reference.batch;
    if (!class_scores(reference.batches[b], std::min(reference.batch, data.size() - start), data)) return false;
  }
  return !reference.batches.empty();
}

ReferenceOutputs reference_outputs(torch::jit::Module& reference, const TensorDataset& data, std::int64_t batch) {
  JOULECUT_ASSERT(batch > 0, "fidelity batch must be positive");
  if (reference.hasattr("training")) reference.eval();
  at::NoGradGuard no_grad;
  ReferenceOutputs r;
  r.batch = batch;
  for (std::int64_t i = 0; i < data.size(); i += batch)
    r.batches.push_back(reference.forward(data.inputs(i, std::min(batch, data.size() - i))));
  return r;
}

Fidelity fidelity(const ReferenceOutputs& reference, torch::jit::Module& model, const TensorDataset& data) {
  if (model.hasattr("training")) model.eval();
  at::NoGradGuard no_grad;
  Fidelity f;
  std::vector<double> cosines;
  double signal = 0, noise = 0;
  std::int64_t agree = 0;
  bool classifier = true;
  const std::int64_t batch = reference.batch;
  JOULECUT_ASSERT(std::int64_t(reference.batches.size()) == (data.size() + batch - 1) / batch,
                  "reference outputs were computed on other data");
  for (std::int64_t i = 0; i < data.size(); i += batch) {
    const auto n = std::min(batch, data.size() - i);
    const c10::IValue& ref_out = reference.batches[std::size_t(i / batch)];
    const c10::IValue out = model.forward(data.inputs(i, n));
    std::vector<at::Tensor> a, b;
    flatten_outputs(ref_out, a);
    flatten_outputs(out, b);
    if (a.size() != b.size() || a.empty())
      throw UserError(data.description + ": the models' outputs differ in structure (" + std::to_string(a.size()) +
                      " and " + std::to_string(b.size()) + " tensors)");
    for (std::size_t k = 0; k < a.size(); ++k)
      if (a[k].sizes() != b[k].sizes())
        throw UserError(data.description + ": output " + std::to_string(k) + " has shape " + shape_text(a[k].sizes()) +
                        " in one model and " + shape_text(b[k].sizes()) + " in the other");
    const at::Tensor x = at::cat(a, 1), y = at::cat(b, 1);
    const at::Tensor dot = (x * y).sum(1), norms = x.norm(2, 1) * y.norm(2, 1);
    const at::Tensor cos = at::where(norms > 0, dot / norms.clamp_min(1e-30), (x - y).abs().amax(1).eq(0).to(at::kFloat));
    for (std::int64_t s = 0; s < n; ++s) cosines.push_back(cos[s].item<double>());
    signal += x.pow(2).sum().item<double>();
    noise += (x - y).pow(2).sum().item<double>();
    f.max_abs_error = std::max(f.max_abs_error, (x - y).abs().max().item<double>());
    // Agreement: the class scores, where they are [N, classes].
    const auto reference_classes = class_scores(ref_out, n, data), model_classes = class_scores(out, n, data);
    if (reference_classes && model_classes)
      agree += reference_classes->argmax(1).eq(model_classes->argmax(1)).sum().item<std::int64_t>();
    else
      classifier = false;
  }
  f.samples = data.size();
  if (f.samples == 0) throw UserError(data.description + ": no samples to compare the models on");
  if (classifier) f.agreement = measure::wilson_ci95(agree, f.samples);
  f.cosine = measure::mean_ci95(cosines);
  f.snr_db = noise > 0 ? 10 * std::log10(signal / noise) : INFINITY;
  return f;
}

Fidelity fidelity(torch::jit::Module& reference, torch::jit::Module& model, const TensorDataset& data,
                  std::int64_t batch) {
  return fidelity(reference_outputs(reference, data, batch), model, data);
}

std::string fidelity_text(const Fidelity& f) {
  std::string agreement = "agreement n/a";
  if (f.agreement)
    agreement = format("agreement %.2f%% (%.2f-%.2f)", 100 * f.agreement->value, 100 * f.agreement->low,
                       100 * f.agreement->high);
  const std::string snr = std::isinf(f.snr_db) ? "inf" : format("%.1f", f.snr_db);
  return format("%s, cosine %.4f ± %.4f, SNR %s dB, max |error| %.3g", agreement.c_str(), f.cosine.mean,
                f.cosine.half_width, snr.c_str(), f.max_abs_error);
}

}  // namespace joulecut
