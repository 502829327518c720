#pragma once
// Internal to the harness: which deployable form of a model (plain, frozen, frozen +
// optimize_for_inference; joulecut/freeze.h) it is measured in, chosen by timing.
#include <torch/script.h>

#include <cstddef>
#include <functional>
#include <string>
#include <vector>

#include "joulecut/freeze.h"

namespace joulecut::measure {

struct FormChoice {
  torch::jit::Module module;  // the chosen form's
  std::size_t index = 0;      // into the forms that ran
  std::string how;        // "plain: 192 ms per batch (frozen 210, frozen + optimize_for_inference 240)"
};

// Each form timed on `inputs` in interleaved rounds, the minimum of each kept (a statistic that
// preemption does not move). The preferred form (frozen + optimize_for_inference when there is
// one: what the harness always ran) gives way only to a form clearly faster, by 10%, so that a
// near tie does not flip between runs. A form that fails on these inputs is left out (`how` says
// why); when none runs, the plain form's error is thrown. One form: chosen untimed.
// The rule fastest_form follows, in words, for the manifest.
std::string form_choice_rule();

FormChoice fastest_form(const std::vector<DeployableForm>& forms, const std::vector<c10::IValue>& inputs,
                        const std::function<void()>& sync);

}  // namespace joulecut::measure
