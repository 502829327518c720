#pragma once
// A model's deployable inference form, in one place with one failure policy: every pass and the
// harness freeze through it.
#include <torch/script.h>

#include <string>

namespace joulecut {

struct InferenceForm {
  torch::jit::Module module;  // frozen + optimize_for_inference, or the eval-mode clone when it cannot be
  bool frozen = false;
  std::string why_not;        // when not frozen: LibTorch's reason, in one line
};

// A clone of `module` in eval mode, frozen (constants folded) and run through
// optimize_for_inference (conv-BN folding, oneDNN layouts). Never throws for a model that cannot
// be frozen (an attribute forward assigns, an op freezing rejects): it returns the eval-mode clone
// with `frozen` false and the reason; a caller that needs the frozen form decides what to say.
InferenceForm freeze_for_inference(const torch::jit::Module& module);

}  // namespace joulecut
