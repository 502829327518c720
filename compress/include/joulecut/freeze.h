#pragma once
// A model's deployable inference form, in one place with one failure policy: every pass and the
// harness freeze through it.
#include <torch/script.h>

#include <string>
#include <vector>

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

// Every deployable form of `module`, as a LibTorch deployment could run it: "plain" (an eval-mode
// clone), "frozen", and "frozen + optimize_for_inference", in that order. Which is fastest
// depends on the model (optimize_for_inference has made int8 files twice as slow, and fp32
// depthwise CNNs three times as fast): the harness times them. Forms that cannot be made are left
// out, with LibTorch's reason in `why_not_frozen`. Never throws.
struct DeployableForm {
  std::string name;
  torch::jit::Module module;
};
struct DeployableForms {
  std::vector<DeployableForm> forms;
  std::string why_not_frozen;  // empty when both frozen forms were made, else which step failed and why
};
DeployableForms deployable_forms(const torch::jit::Module& module);

}  // namespace joulecut
