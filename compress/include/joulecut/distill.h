#pragma once
// Knowledge distillation in C++: a student learns from a teacher's softened logits (Hinton et
// al. 2015) and, optionally, from the teacher's intermediate activations through a learned 1x1
// projection (FitNets-style hints). The projection trains alongside the student and is not
// part of the exported student. Training runs on joulecut's loop (train_loop.h): SGD or Adam,
// schedules, checkpoints, resume, Ctrl-C.
#include <torch/script.h>

#include <functional>
#include <string>
#include <utility>
#include <vector>

#include "joulecut/data.h"
#include "joulecut/pass.h"
#include "joulecut/timing.h"
#include "joulecut/train_loop.h"

namespace joulecut {

struct DistillLossOptions {
  double temperature = 4;  // > 0
  double alpha = 0.9;      // in [0, 1]: weight of the distillation term; 1 - alpha on the labels
};

// Throws UserError for a temperature <= 0 (or not finite) or alpha outside [0, 1].
void check_loss_options(const DistillLossOptions& options);

// alpha * T^2 * KL(softmax(teacher / T) || softmax(student / T)) + (1 - alpha) * CE(student,
// labels), KL and CE averaged over the batch. Precondition: logits [N, C] of equal shape,
// labels [N] int64. Throws UserError for a temperature <= 0 or alpha outside [0, 1].
at::Tensor distillation_loss(const at::Tensor& student_logits, const at::Tensor& teacher_logits,
                             const at::Tensor& labels, const DistillLossOptions& options);

struct Hint {
  std::string teacher_layer;  // a Conv2d/Linear of the teacher, e.g. "layer3.conv2"
  std::string student_layer;  // the student's layer whose output learns to match it
};

struct DistillOptions {
  DistillLossOptions loss;
  std::vector<Hint> hints;
  double hint_weight = 1;  // weight of the mean squared hint error(s) in the loss
  // Keep the student's exact zeros at zero (a pruned student recovering from its teacher).
  bool keep_zeros = true;
  // With loop.augment, the teacher runs on every augmented batch (consistent teaching) and this
  // is unused. Otherwise the batch the teacher's logits are computed at; 0: the one it runs fastest per image here
  // (timed; a rerun may time another, whose logits can differ in the last bits: give a batch for
  // bit-identical reruns).
  std::int64_t teacher_batch = 0;
  // How the teacher's batch is timed (teacher_batch 0); null: default_timing().
  const TimingService* timing = nullptr;
  LoopOptions loop;
};

struct DistillResult {
  torch::jit::Module student;  // eval mode; forward only (hint machinery removed)
  LoopResult loop;
  std::vector<std::string> notes;  // e.g. projections, masked layers
};

// Distils `teacher` into a copy of `student` on `train`. Neither input is changed. Throws
// UserError when the two models' outputs differ in size, a hint names a layer that does not
// exist, hint activations differ in spatial size or sequence length, or the loss options are out of range.
DistillResult distill(const torch::jit::Module& teacher, const torch::jit::Module& student, const TensorDataset& train,
                      const TensorDataset* test, const DistillOptions& options);

// Parses "teacher_layer:student_layer".
Hint parse_hint(const std::string& text);
// Parses '|'-separated hints, e.g. "conv2:conv2|fc1:fc1"; "" gives none.
std::vector<Hint> parse_hints(const std::string& text);

// The pass form, for pipelines: distils the teacher into the model the pass receives, e.g.
// "prune-magnitude<sparsity=0.9>,distill<epochs=3>" recovers a pruned model from the model the
// pipeline started with (the default teacher), keeping its zeros.
struct DistillPassOptions {
  std::string teacher;  // a TorchScript file; "": the pipeline's input model
  int epochs = 3;
  double temperature = 4;
  double alpha = 0.9;
  double lr = 0.01;
  std::string optimizer = "sgd";
  std::string hints;  // '|'-separated TEACHER_LAYER:STUDENT_LAYER pairs
  double hint_weight = 1;
  std::int64_t batch = 64;
  double momentum = 0.9;
  double weight_decay = 5e-4;
  std::string schedule = "cosine";
  int step_epochs = 5;
  double gamma = 0.1;
  bool keep_zeros = true;  // a pruned student's zeros stay zero; false: they train too (dense recovery)
  std::int64_t teacher_batch = 0;  // 0: timed (see DistillOptions)
  // Augmentation (train_loop.h); either one makes the teacher run on every batch's views.
  std::int64_t crop_padding = 0;
  bool flip = false;
};

// The distillation settings these options give (loss, hints, loop); `seed` and `progress` come
// from the caller. Throws UserError for a malformed hint.
DistillOptions distill_options(const DistillPassOptions& options, std::uint64_t seed, bool progress);

class DistillPass final : public Pass {
 public:
  explicit DistillPass(DistillPassOptions options = {});
  // Its options, declared once (pass_options.h).
  static const OptionTable<DistillPassOptions>& options_table();
  static DistillPassOptions parse(const PassOptionMap& options);
  static constexpr const char* kName = "distill";  // the registry's name (passes.def)
  std::string name() const override { return kName; }
  std::string options_text() const override;
  // Needs context.train, and a teacher (the option, or context.teacher). Throws UserError
  // otherwise, and for the errors distill() throws.
  bool needs_training_data() const override { return true; }
  PassResult run(const torch::jit::Module& module, PassContext& context) const override;

 private:
  DistillPassOptions options_;
};

}  // namespace joulecut
