#include "joulecut/evaluate.h"

#include <ATen/ATen.h>
#include <ATen/Parallel.h>
#include <ATen/core/grad_mode.h>

#include <chrono>
#include <sstream>

#include "joulecut/error.h"
#include "joulecut/model.h"
#include "joulecut/platform.h"
#include "joulecut/torch_compat.h"

namespace joulecut {
std::string shape_text(at::IntArrayRef sizes) {
  std::ostringstream out;
  out << sizes;
  return out.str();
}

void check_model_accepts(torch::jit::Module& module, const TensorDataset& data, const std::string& model_path) {
  const at::Tensor sample = data.images.narrow(0, 0, std::min<std::int64_t>(2, data.size()));
  at::Tensor out;
  try {
    at::NoGradGuard no_grad;  // not InferenceMode: TorchScript autodiff graphs would try to save its tensors
    if (module.hasattr("training")) module.eval();
    const auto result = module.forward({sample});
    if (!result.isTensor())
      throw UserError(model_path + ": model returns " + result.tagKind() + ", expected one tensor of class scores");
    out = result.toTensor();
  } catch (const UserError&) {
    throw;
  } catch (const std::exception& e) {
    throw UserError(model_path + ": model does not accept " + data.spec.name + " input of shape " +
                    shape_text(sample.sizes()) + " (" + torch_error_summary(e) + ")");
  }
  if (out.dim() != 2 || out.size(0) != sample.size(0))
    throw UserError(model_path + ": model output has shape " + shape_text(out.sizes()) + " for input " +
                    shape_text(sample.sizes()) + "; expected [batch, classes]");
  if (out.size(1) < data.spec.classes)
    throw UserError(model_path + ": model gives " + std::to_string(out.size(1)) + " class scores but " +
                    data.spec.name + " has " + std::to_string(data.spec.classes) + " classes");
}

EvalResult evaluate(torch::jit::Module& module, const TensorDataset& data, const EvalOptions& options) {
  JOULECUT_ASSERT(options.batch > 0, "evaluation batch must be positive");
  const auto classes = std::max<std::int64_t>(data.spec.classes, 1);
  EvalResult result;
  result.confusion.assign(classes, std::vector<std::int64_t>(classes, 0));
  if (module.hasattr("training")) module.eval();  // frozen modules have no mode left
  at::NoGradGuard no_grad;  // not InferenceMode: TorchScript autodiff graphs would try to save its tensors
  const auto start = std::chrono::steady_clock::now();
  std::int64_t correct = 0;
  for (std::int64_t i = 0; i < data.size(); i += options.batch) {
    const auto n = std::min(options.batch, data.size() - i);
    const at::Tensor logits = module.forward({data.images.narrow(0, i, n)}).toTensor();
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
