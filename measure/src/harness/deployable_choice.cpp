// The harness measures every model, baseline or compressed, in the deployable form it runs
// fastest in: on this project's 2-core VM, optimize_for_inference made torchvision MobileNetV2's
// int8 file 1.6x slower at batch 16 (219 against 139 ms plain) and its fp32 2.8x faster.
#include "harness/deployable_choice.h"

#include <algorithm>

#include "joulecut/model.h"
#include "joulecut/text.h"
#include "joulecut/timing.h"

namespace joulecut::measure {
namespace {

constexpr int kRounds = 3, kCallsPerRound = 2;

// The forms that run on `inputs` (a form that fails at this batch is dropped, and why is kept).
std::vector<DeployableForm> forms_that_run(const std::vector<DeployableForm>& forms,
                                           const std::vector<c10::IValue>& inputs, std::vector<std::string>& failed) {
  std::vector<DeployableForm> running;
  for (auto form : forms) {
    try {
      form.module.forward(inputs);  // also the warm-up: the first call profiles
      running.push_back(form);
    } catch (const std::exception& e) {
      failed.push_back(form.name + " fails here (" + torch_error_summary(e) + ")");
    }
  }
  if (running.empty()) {  // none runs: the plain form's own error, as any caller of forward would see it
    DeployableForm plain = forms.front();
    plain.module.forward(inputs);
    running.push_back(plain);
  }
  return running;
}

}  // namespace

std::string form_choice_rule() {
  return format("the minimum of %d calls each, interleaved; frozen + optimize_for_inference unless another is %.0f%% "
                "faster", kRounds * kCallsPerRound, 100 * kClearlyFasterMargin);
}

FormChoice fastest_form(const std::vector<DeployableForm>& all_forms, const std::vector<c10::IValue>& inputs,
                        const std::function<void()>& sync) {
  FormChoice choice;
  at::NoGradGuard no_grad;
  std::vector<std::string> failed;
  std::vector<DeployableForm> forms = forms_that_run(all_forms, inputs, failed);
  choice.index = forms.size() - 1;  // the last form is the preferred one (deployable_forms' order)
  choice.module = forms.back().module;
  if (forms.size() == 1) {
    choice.how = forms[0].name + (failed.empty() ? "" : "; " + join(failed, "; "));
    return choice;
  }
  // Each call ends with `sync` (a GPU's queue drained), so that it is timed whole.
  std::vector<std::function<void()>> calls;
  for (auto& form : forms)
    calls.push_back([&form, &inputs, &sync] {
      form.module.forward(inputs);
      sync();
    });
  sync();
  const std::vector<double> best = default_timing().fastest_us("deployable forms", calls, kRounds, kCallsPerRound);
  const std::size_t fastest = std::size_t(std::min_element(best.begin(), best.end()) - best.begin());
  if (clearly_faster(best[fastest], best[choice.index])) choice.index = fastest;
  choice.module = forms[choice.index].module;
  std::vector<std::string> others;
  for (std::size_t f = 0; f < forms.size(); ++f)
    if (f != choice.index) others.push_back(forms[f].name + format(" %.4g", best[f] / 1e3));
  for (const auto& f : failed) others.push_back(f);
  choice.how = forms[choice.index].name + format(": %.4g ms per batch (", best[choice.index] / 1e3) + join(others, ", ") + ")";
  return choice;
}

}  // namespace joulecut::measure
