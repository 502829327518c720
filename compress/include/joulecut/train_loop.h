#pragma once
// The one training loop over TorchScript modules: reference models, fine-tuning after
// pruning (with masks enforced after every step), distillation. SGD with Nesterov momentum
// or Adam; cosine (per step) or step learning-rate schedule; shuffling from a seed;
// deterministic for a seed and thread count. Optional checkpoints after every epoch, resume,
// and a checkpoint on Ctrl-C.
#include <torch/script.h>

#include <cstdint>
#include <functional>
#include <string>
#include <utility>
#include <vector>

#include "joulecut/data.h"

namespace joulecut {

// Light augmentation of image batches (Fashion-MNIST, CIFAR-style): every batch of every epoch
// gets fresh random views, drawn from the loop's seed, the epoch and the step, so a resumed run
// sees the views the uninterrupted one would have.
struct Augmentation {
  // > 0: each image is padded by this many pixels on every side (its edge pixels repeated, so
  // the padding looks like the image's own border whatever the normalization), then cropped
  // back to its size at a random offset.
  std::int64_t crop_padding = 0;
  bool horizontal_flip = false;  // each image mirrored left-right with probability 1/2
  bool any() const { return crop_padding > 0 || horizontal_flip; }
};

// The augmented batch (a new tensor; `images` is not changed); `images` itself when
// `augmentation` does nothing. The same seed gives the same views. Throws UserError unless
// `images` is a floating-point [N, C, H, W] batch (token ids and vectors cannot be cropped), or
// for a negative padding.
at::Tensor augment_images(const at::Tensor& images, const Augmentation& augmentation, std::uint64_t seed);

struct LoopOptions {
  int epochs = 1;
  std::int64_t batch = 64;
  double learning_rate = 0.01;
  std::string optimizer = "sgd";  // sgd (Nesterov momentum) | adam
  double momentum = 0.9;          // sgd only
  double weight_decay = 0;
  std::string schedule = "cosine";  // cosine (to 0 over the run, per step) | step
  int step_epochs = 5;              // schedule=step: multiply by gamma every step_epochs epochs
  double gamma = 0.1;
  std::uint64_t seed = 1;
  // Applied to forward()'s first argument of every training batch before the loss sees it (a
  // distillation loss then shows the teacher the same views: consistent teaching).
  Augmentation augment;
  bool progress = true;
  // Checkpoints: with a path, the loop writes PATH (the module), PATH.state (optimizer and
  // extra parameters) and PATH.json (where it stopped, and the run's fingerprint) after every
  // epoch and on Ctrl-C, each atomically. resume=true continues from them; a checkpoint whose
  // fingerprint differs (another run) is refused.
  std::string checkpoint;
  bool resume = false;
  std::string fingerprint;  // what identifies the run: model, data, options (the caller's choice)
};

struct LoopResult {
  double test_accuracy = 0;  // after the last epoch; 0 without a test set
  std::vector<double> epoch_seconds;
  int resumed_at_epoch = 0;  // 0: started from scratch
};

// Throws UserError for options train_loop cannot run: an unknown optimizer or schedule, no
// epochs, or a checkpoint that would be refused (another run's, one to resume that is missing,
// one of this run without resume). Cheap; callers with costly set-up call it first.
void check_loop_options(const LoopOptions& options);

// Keeps weights' exact zeros at zero while they train (a pruned model fine-tuning or
// recovering): the masks are taken at construction, and calling it re-applies them (pass it
// as train_loop's after_step). Precondition: the weights outlive it.
class KeepZeros {
 public:
  explicit KeepZeros(const std::vector<at::Tensor>& weights);
  void operator()() const;

 private:
  std::vector<std::pair<at::Tensor, at::Tensor>> masks_;  // weight, its 0/1 mask
};

// The loss of one batch and the logits it scored (for the running accuracy); `index` holds the
// batch's positions in the training set. The default is cross-entropy of module.forward.
// `inputs`: forward()'s arguments for the batch (one for images, several for token ids and masks).
using BatchLoss = std::function<std::pair<at::Tensor, at::Tensor>(const std::vector<c10::IValue>& inputs, const at::Tensor& labels,
                                                                  const at::Tensor& index)>;

// Trains `module` in place, with `extra_parameters` (e.g. a distillation projection) in the
// same optimizer. `after_step`, when given, runs after every optimizer step (e.g. to re-apply
// pruning masks). Precondition: the module has trainable parameters. Throws UserError for bad
// options, an unusable checkpoint, or an interruption (after saving the checkpoint).
LoopResult train_loop(torch::jit::Module& module, const TensorDataset& train, const TensorDataset* test,
                      const LoopOptions& options, const std::function<void()>& after_step = {},
                      const BatchLoss& loss = {}, std::vector<at::Tensor> extra_parameters = {});

}  // namespace joulecut
