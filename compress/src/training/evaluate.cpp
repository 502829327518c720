#include "joulecut/evaluate.h"

#include <ATen/ATen.h>
#include <ATen/Parallel.h>
#include <ATen/core/grad_mode.h>

#include <chrono>
#include <sstream>

#include "joulecut/error.h"
#include "joulecut/model.h"
#include "joulecut/model_input.h"
#include "joulecut/platform.h"
#include "joulecut/text.h"
#include "joulecut/torch_compat.h"

namespace joulecut {
std::string shape_text(at::IntArrayRef sizes) {
  std::ostringstream out;
  out << sizes;
  return out.str();
}

void check_model_accepts(torch::jit::Module& module, TensorDataset& data, const std::string& model_path) {
  arrange_inputs(data, module, model_path);
  const std::int64_t count = std::min<std::int64_t>(2, data.size());
  const auto sample = data.input_tensors(0, count);
  std::vector<std::string> parts;
  for (const auto& t : sample) parts.push_back(shape_text(t.sizes()));
  const std::string shapes = join(parts, ", ");
  at::Tensor out;
  c10::IValue result;
  try {
    at::NoGradGuard no_grad;  // not InferenceMode: TorchScript autodiff graphs would try to save its tensors
    if (module.hasattr("training")) module.eval();
    result = module.forward(std::vector<c10::IValue>(sample.begin(), sample.end()));
  } catch (const std::exception& e) {
    throw UserError(model_path + ": model does not accept " + data.spec.name + " input of shape " + shapes + " (" +
                    torch_error_summary(e) + ")");
  }
  if (!data.labelled()) return;  // fidelity compares whatever the outputs are
  if (!result.isTensor() && data.output.empty())
    throw UserError(model_path + ": model returns " + result.tagKind() +
                    ", expected one tensor of class scores (or choose one with " + option_ref("DataSource::output") +
                    ")");
  out = select_output(result, data.output, model_path);
  if (out.dim() != 2 || out.size(0) != count)
    throw UserError(model_path + ": model output has shape " + shape_text(out.sizes()) + " for input " + shapes +
                    "; expected [batch, classes]");
  if (out.size(1) < data.spec.classes)
    throw UserError(model_path + ": model gives " + std::to_string(out.size(1)) + " class scores but " +
                    data.spec.name + " has " + std::to_string(data.spec.classes) + " classes" +
                    (data.spec.as_stored ? " (its largest label is " + std::to_string(data.spec.classes - 1) + ")" : ""));
}

EvalResult evaluate(torch::jit::Module& module, const TensorDataset& data, const EvalOptions& options) {
  JOULECUT_ASSERT(options.batch > 0, "evaluation batch must be positive");
  if (!data.labelled())
    throw UserError(data.description +
                    ": no labels, so no accuracy; compare a model with the one it came from by "
                    "fidelity instead (" +
                    option_ref("joulecut::fidelity") + ")");
  const auto classes = std::max<std::int64_t>(data.spec.classes, 1);
  EvalResult result;
  result.confusion.assign(classes, std::vector<std::int64_t>(classes, 0));
  if (module.hasattr("training")) module.eval();  // frozen modules have no mode left
  at::NoGradGuard no_grad;  // not InferenceMode: TorchScript autodiff graphs would try to save its tensors
  const auto start = std::chrono::steady_clock::now();
  std::int64_t correct = 0;
  for (std::int64_t i = 0; i < data.size(); i += options.batch) {
    const auto n = std::min(options.batch, data.size() - i);
    const at::Tensor logits = select_output(module.forward(data.inputs(i, n)), data.output, data.description);
    const at::Tensor predicted = logits.argmax(1).to(at::kCPU, at::kLong).contiguous();
    const at::Tensor truth = data.labels.narrow(0, i, n).to(at::kCPU).contiguous();
    const auto* p = predicted.data_ptr<std::int64_t>();
    const auto* t = truth.data_ptr<std::int64_t>();
    for (std::int64_t k = 0; k < n; ++k) {
      correct += p[k] == t[k];
      if (p[k] < classes) ++result.confusion[t[k]][p[k]];
    }
  }
  result.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  result.accuracy = measure::wilson_ci95(correct, data.size());
  return result;
}

}  // namespace joulecut
