// The teacher as distillation runs it: frozen and optimized for inference, then either run on
// every augmented batch (consistent teaching) or its logits computed once for the whole training
// set, at the batch it runs fastest per image here.
#include <ATen/ATen.h>

#include <algorithm>
#include <chrono>
#include <cstdio>

#include "distill/steps.h"
#include "joulecut/freeze.h"
#include "joulecut/progress.h"
#include "joulecut/text.h"
#include "joulecut/timing.h"

namespace joulecut::distill_detail {
namespace {

// The teacher as it would be deployed (frozen, optimized for inference): the plain module ran
// 3-15x slower on ResNet-8. `how` says which form it is.
torch::jit::Module deployed_teacher(torch::jit::Module& teacher, std::string& how) {
  InferenceForm form = freeze_for_inference(teacher);
  if (!form.frozen) how = "as loaded (it cannot be frozen)";
  return form.module;
}

std::string consistent_teaching_note(const DistillOptions& options, const std::string& how) {
  const bool hints = !options.hints.empty();
  return "teacher: " + (hints ? std::string("with its hint layers") : how) +
         ", run on every batch's augmented views (consistent teaching; crop padding " +
         std::to_string(options.loop.augment.crop_padding) +
         (options.loop.augment.horizontal_flip ? ", horizontal flips)" : ", no flips)");
}

// The batch the teacher's logits are computed at: options.teacher_batch when given; else the one
// of 16..512 it runs fastest per image here, measured (on a CPU large batches fall out of cache,
// and the plain module at batch 500 ran 12-15x slower than this on ResNet-8); the whole set when
// it has fewer images than 16. `tried` lists the times per image, by batch.
std::int64_t fastest_teacher_batch(torch::jit::Module& fast, const TensorDataset& train, const DistillOptions& options,
                                   std::string& tried) {
  const TimingService& timer = options.timing ? *options.timing : default_timing();
  std::int64_t batch = 1, best_batch = 64;
  double best = 1e30;
  std::vector<std::string> items;
  for (const std::int64_t b : {16, 32, 64, 128, 256, 512}) {
    if (options.teacher_batch > 0) break;  // given: not timed
    if (b > train.size()) break;
    batch = b;
    const std::vector<c10::IValue> sample = train.inputs(0, b);
    // 2 untimed runs first (the first runs at a shape: plans, layouts), then the median of 3.
    const double us = timer.median_us("teacher logits at batch " + std::to_string(b),
                                      [&] { logits_of(fast, sample, train); }, 2, 3);
    const double seconds = us / double(b) * 1e-6;  // per image
    items.push_back(format("%lld: %.3g us", (long long)b, 1e6 * seconds));
    if (seconds < best) {
      best = seconds;
      best_batch = b;
    }
  }
  tried = join(items, ", ");
  if (options.teacher_batch > 0) best_batch = options.teacher_batch;
  else if (batch == 1) best_batch = train.size();  // fewer images than the smallest batch tried
  return best_batch;
}

// The teacher's logits for the whole training set, in order, with the note saying how they were
// computed.
void cache_teacher_logits(TeacherRun& run, const TensorDataset& train, const DistillOptions& options,
                          const std::string& how) {
  at::NoGradGuard no_grad;
  const auto started = std::chrono::steady_clock::now();
  std::string tried;
  const std::int64_t best_batch = fastest_teacher_batch(run.fast, train, options, tried);
  std::vector<at::Tensor> parts;
  ProgressBar bar("teacher logits", train.size(), options.loop.progress);
  for (std::int64_t start = 0; start < train.size(); start += best_batch) {
    const std::int64_t count = std::min(best_batch, train.size() - start);
    parts.push_back(logits_of(run.fast, train.inputs(start, count), train));
    bar.update(start + count, "");
  }
  bar.finish(std::to_string(train.size()) + " images");
  run.logits = at::cat(parts);
  run.note = format("teacher logits: %lld images in %.1f s, the teacher %s at batch %lld (per image, by batch: %s)",
                    (long long)train.size(),
                    std::chrono::duration<double>(std::chrono::steady_clock::now() - started).count(), how.c_str(),
                    (long long)best_batch,
                    !tried.empty()                ? tried.c_str()
                    : options.teacher_batch > 0 ? "as given, not timed"
                                                : "not timed: fewer images than the smallest batch tried, 16");
}

}  // namespace

// Without hints or augmentation the teacher's logits are computed once for the whole training
// set: the teacher then costs one inference pass, not one per epoch. With augmentation the
// teacher sees every batch's views as the student does (consistent teaching, Beyer et al.,
// CVPR 2022): logits of the unaugmented images would teach the student a function it is
// never shown.
TeacherRun prepare_teacher(torch::jit::Module& teacher, const TensorDataset& train, const DistillOptions& options) {
  const bool hints = !options.hints.empty();
  const bool consistent = options.loop.augment.any();
  TeacherRun run;
  std::string how = "frozen and optimized for inference";
  if (!hints) run.fast = deployed_teacher(teacher, how);
  if (consistent) run.note = consistent_teaching_note(options, how);
  if (!hints && !consistent) cache_teacher_logits(run, train, options, how);
  return run;
}

}  // namespace joulecut::distill_detail
