#pragma once
// Internal to distillation: the steps distill() runs before training. The hints (hints.cpp): a
// method returning chosen layers' outputs beside forward's, the probe that checks teacher and
// student agree, the learned projections. The teacher (teacher_logits.cpp): as it would be
// deployed, run on every augmented batch or its logits cached once at its fastest batch.
#include <ATen/ATen.h>
#include <torch/script.h>

#include <string>
#include <vector>

#include "joulecut/data.h"
#include "joulecut/distill.h"
#include "joulecut/model_input.h"

namespace joulecut::distill_detail {

// `module`'s logits on `inputs`: forward's output as `data` selects it (--model-output).
inline at::Tensor logits_of(torch::jit::Module& module, const std::vector<c10::IValue>& inputs, const TensorDataset& data) {
  return select_output(module.forward(inputs), data.output, data.description);
}

// (forward's output, the hinted layers' outputs...) of a module set up by set_up_hints.
std::vector<at::Tensor> run_features(torch::jit::Module& module, const at::Tensor& x);
// Removes the method set_up_hints added.
void remove_features_method(torch::jit::Module& module);

// A learned map from the student's activation width to the teacher's: a 1x1 convolution for
// 4-D activations, a matrix for 2-D ones and for 3-D tokens (on their last dimension); none when
// the widths already match.
struct Projection {
  at::Tensor weight, bias;  // undefined: identity
  at::Tensor apply(const at::Tensor& x) const {
    if (!weight.defined()) return x;
    return weight.dim() == 4 ? at::conv2d(x, weight, bias) : at::linear(x, weight, bias);
  }
};

struct HintProjections {
  std::vector<Projection> projections;  // one per hint, in order
  std::vector<at::Tensor> parameters;   // their weights and biases, trained beside the student
};

// With hints, adds the features method to `teacher` and `student`; then checks on the first
// images of `train` that both models give [N, classes] of the same size and that each hint pair's
// activations can be compared, and draws the projections from options.loop.seed. A note per hint
// goes to `notes`. Throws UserError for what distill() documents.
HintProjections set_up_hints(torch::jit::Module& teacher, torch::jit::Module& student, const TensorDataset& train,
                             const DistillOptions& options, std::vector<std::string>& notes);

// How the teacher teaches.
struct TeacherRun {
  // Without hints: the teacher frozen and optimized for inference (or as loaded, when it cannot
  // be frozen), the module that computes its logits.
  torch::jit::Module fast;
  at::Tensor logits;  // without hints or augmentation: the whole training set's, in its order
  std::string note;   // how the teacher ran; "" with hints and no augmentation
};

// The teacher for distilling on `train`: without hints, frozen and optimized; without hints or
// augmentation, its logits computed once at options.teacher_batch or the batch it runs fastest
// per image (timed by options.timing). Precondition: `teacher` in eval mode, without gradients.
TeacherRun prepare_teacher(torch::jit::Module& teacher, const TensorDataset& train, const DistillOptions& options);

}  // namespace joulecut::distill_detail
