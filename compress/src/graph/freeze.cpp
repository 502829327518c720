#include "joulecut/freeze.h"

#include "joulecut/model.h"

namespace joulecut {

InferenceForm freeze_for_inference(const torch::jit::Module& module) {
  InferenceForm form;
  form.module = module.clone();
  if (form.module.hasattr("training")) form.module.eval();
  try {
    torch::jit::Module frozen = torch::jit::freeze(form.module);
    form.module = torch::jit::optimize_for_inference(frozen);
    form.frozen = true;
  } catch (const std::exception& e) {
    form.why_not = torch_error_summary(e);
  }
  return form;
}

}  // namespace joulecut
