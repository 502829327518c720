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

DeployableForms deployable_forms(const torch::jit::Module& module) {
  DeployableForms result;
  torch::jit::Module plain = module.clone();
  if (plain.hasattr("training")) plain.eval();
  result.forms.push_back({"plain", plain});
  try {
    result.forms.push_back({"frozen", torch::jit::freeze(plain)});
  } catch (const std::exception& e) {
    result.why_not_frozen = "freezing fails: " + torch_error_summary(e);
    return result;
  }
  const InferenceForm optimized = freeze_for_inference(plain);  // its own freeze: optimize_for_inference changes it
  if (optimized.frozen)
    result.forms.push_back({"frozen + optimize_for_inference", optimized.module});
  else
    result.why_not_frozen = "optimize_for_inference fails: " + optimized.why_not;
  return result;
}

}  // namespace joulecut
