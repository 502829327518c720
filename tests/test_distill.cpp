// Knowledge distillation: the loss against hand-computed values, determinism, hints, masks, bad
// input; the training loop's checkpoints, resume after an interruption, and its optimizers.
#include <catch2/catch.hpp>

#include <ATen/ATen.h>

#include <cmath>
#include <csignal>
#include <filesystem>

#include "joulecut/atomic_file.h"
#include "joulecut/distill.h"
#include "joulecut/error.h"
#include "joulecut/models.h"
#include "noise_data.h"
#include "temp_dir.h"

using namespace joulecut;
using Catch::Matchers::Contains;

namespace {

bool same_weights(const torch::jit::Module& a, const torch::jit::Module& b) {
  std::vector<at::Tensor> pa, pb;
  for (const auto& p : a.parameters()) pa.push_back(p);
  for (const auto& p : b.parameters()) pb.push_back(p);
  if (pa.size() != pb.size()) return false;
  for (std::size_t i = 0; i < pa.size(); ++i)
    if (!pa[i].sizes().equals(pb[i].sizes()) || !at::equal(pa[i], pb[i])) return false;
  return true;
}

DistillOptions quick_options() {
  DistillOptions o;
  o.loop.epochs = 1;
  o.loop.batch = 32;
  o.loop.learning_rate = 0.02;
  o.loop.progress = false;
  return o;
}

}  // namespace

TEST_CASE("distillation loss equals the hand-computed value", "[distill]") {
  // One sample, three classes, T = 2, alpha = 0.5.
  const double s[3] = {1, 2, 3}, t[3] = {3, 1, 0};
  const double T = 2, alpha = 0.5;
  double zs = 0, zt = 0, z = 0;
  for (int i = 0; i < 3; ++i) {
    zs += std::exp(s[i] / T);
    zt += std::exp(t[i] / T);
    z += std::exp(s[i]);
  }
  double kl = 0;
  for (int i = 0; i < 3; ++i) {
    const double pt = std::exp(t[i] / T) / zt, ps = std::exp(s[i] / T) / zs;
    kl += pt * std::log(pt / ps);
  }
  const double ce = -std::log(std::exp(s[2]) / z);  // label 2
  const double expected = alpha * T * T * kl + (1 - alpha) * ce;
  const at::Tensor student = at::tensor({1.0, 2.0, 3.0}).view({1, 3}).to(at::kFloat);
  const at::Tensor teacher = at::tensor({3.0, 1.0, 0.0}).view({1, 3}).to(at::kFloat);
  const at::Tensor label = at::tensor({2}, at::kLong);
  CHECK(distillation_loss(student, teacher, label, {T, alpha}).item<double>() == Approx(expected).epsilon(1e-5));
  // alpha 0 is plain cross-entropy; alpha 1 with the teacher's own logits is 0.
  CHECK(distillation_loss(student, teacher, label, {T, 0}).item<double>() == Approx(ce).epsilon(1e-5));
  CHECK(distillation_loss(teacher, teacher, label, {T, 1}).item<double>() == Approx(0).margin(1e-6));
  CHECK_THROWS_WITH(distillation_loss(student, teacher, label, {0, 0.5}), Contains("temperature must be > 0"));
  CHECK_THROWS_WITH(distillation_loss(student, teacher, label, {4, 1.5}), Contains("alpha must be in [0, 1]"));
}

TEST_CASE("the reference students have at most a quarter of the teacher's parameters", "[distill]") {
  const auto count = [](const char* arch) {
    std::int64_t n = 0;
    for (const auto& p : build_reference_model(arch, 1).parameters()) n += p.numel();
    return n;
  };
  const std::int64_t teacher = count("resnet8");
  CHECK(4 * count("resnet8-thin") <= teacher);
  CHECK(4 * count("lenet5-half") <= teacher);
}

TEST_CASE("distillation is deterministic for a seed, and learns from the teacher", "[distill]") {
  at::manual_seed(1);
  const TensorDataset train = noise_dataset(256);
  const torch::jit::Module teacher = build_reference_model("lenet5", 1);
  const torch::jit::Module student = build_reference_model("lenet5-half", 2);
  DistillOptions o = quick_options();
  o.teacher_batch = 64;  // timed, the batch (and the logits' last bits) may differ between runs
  const auto a = distill(teacher, student, train, nullptr, o);
  const auto b = distill(teacher, student, train, nullptr, o);
  CHECK(same_weights(a.student, b.student));
  bool as_given = false;
  for (const auto& n : a.notes) as_given = as_given || n.find("at batch 64 (per image, by batch: as given") != std::string::npos;
  CHECK(as_given);
  CHECK_FALSE(same_weights(a.student, student));  // it trained
  CHECK(same_weights(student, build_reference_model("lenet5-half", 2)));  // the input is untouched
  o.loop.seed = 2;
  CHECK_FALSE(same_weights(distill(teacher, student, train, nullptr, o).student, a.student));
  // With alpha 1 the student moves towards the teacher's answers.
  o.loop.seed = 1;
  o.loss.alpha = 1;
  o.loop.epochs = 3;
  const auto close = distill(teacher, student, train, nullptr, o);
  const at::Tensor x = train.images.narrow(0, 0, 128);
  torch::jit::Module t = teacher, s0 = student, s1 = close.student;
  t.eval();
  s0.eval();
  const at::Tensor target = at::softmax(t.forward({x}).toTensor(), 1);
  const auto gap = [&](torch::jit::Module& m) {
    return (at::softmax(m.forward({x}).toTensor(), 1) - target).abs().mean().item<double>();
  };
  CHECK(gap(s1) < gap(s0));
}

TEST_CASE("feature hints: projection when widths differ, not exported", "[distill]") {
  at::manual_seed(2);
  const TensorDataset train = noise_dataset(128);
  const torch::jit::Module teacher = build_reference_model("lenet5", 1);
  const torch::jit::Module student = build_reference_model("lenet5-half", 2);
  DistillOptions o = quick_options();
  o.hints = {parse_hint("conv2:conv2"), parse_hint("fc1:fc1")};
  const auto result = distill(teacher, student, train, nullptr, o);
  REQUIRE(result.notes.size() == 2);
  CHECK_THAT(result.notes[0], Contains("1x1 convolution 8 -> 16"));
  CHECK_THAT(result.notes[1], Contains("projection 60 -> 120"));
  CHECK_FALSE(result.student.find_method("joulecut_distill_features"));
  CHECK_FALSE(same_weights(result.student, distill(teacher, student, train, nullptr, quick_options()).student));
  std::int64_t before = 0, after = 0;
  for (const auto& p : student.parameters()) before += p.numel();
  for (const auto& p : result.student.parameters()) after += p.numel();
  CHECK(before == after);
  // Same width: no projection.
  o.hints = {parse_hint("conv2:conv2")};
  CHECK_THAT(distill(teacher, teacher, train, nullptr, o).notes.front(), Contains("no projection"));
}

TEST_CASE("distillation refuses bad input with one clear message", "[distill]") {
  const TensorDataset train = noise_dataset(64);
  const torch::jit::Module teacher = build_reference_model("lenet5", 1);
  const torch::jit::Module student = build_reference_model("lenet5-half", 2);
  DistillOptions o = quick_options();
  o.hints = {parse_hint("conv9:conv2")};
  CHECK_THROWS_WITH(distill(teacher, student, train, nullptr, o), Contains("no Conv2d/Linear layer 'conv9'"));
  o.hints = {parse_hint("conv1:conv2")};  // 28x28 against 10x10
  CHECK_THROWS_WITH(distill(teacher, student, train, nullptr, o), Contains("same H and W"));
  CHECK_THROWS_WITH(parse_hint("conv1"), Contains("TEACHER_LAYER:STUDENT_LAYER"));
  torch::jit::Module five("Five");
  five.register_parameter("weight", at::randn({5, 784}), false);
  five.define("def forward(self, x):\n    return torch.linear(torch.flatten(x, 1), self.weight)\n");
  CHECK_THROWS_WITH(distill(teacher, five, train, nullptr, quick_options()), Contains("differ"));
  o = quick_options();
  o.loss.temperature = -1;
  CHECK_THROWS_WITH(distill(teacher, student, train, nullptr, o), Contains("temperature"));
}

TEST_CASE("a pruned student keeps its zeros while it recovers", "[distill]") {
  const TensorDataset train = noise_dataset(128);
  const torch::jit::Module teacher = build_reference_model("lenet5", 1);
  torch::jit::Module student = build_reference_model("lenet5", 1).clone();
  at::Tensor w;
  for (const auto& p : student.named_parameters(true))
    if (p.name == "conv2.weight") w = p.value;
  {
    at::NoGradGuard no_grad;
    w.masked_fill_(w.abs() < w.abs().median(), 0);
  }
  const auto zeros_before = w.eq(0);
  const auto result = distill(teacher, student, train, nullptr, quick_options());
  at::Tensor after;
  for (const auto& p : result.student.named_parameters(true))
    if (p.name == "conv2.weight") after = p.value;
  CHECK(after.masked_select(zeros_before).abs().max().item<float>() == 0);
  CHECK_THAT(result.notes.front(), Contains("conv2.weight"));
}

TEST_CASE("training loop: interrupted, resumed, the same weights; checkpoints of other runs refused", "[distill]") {
  at::manual_seed(3);
  const TensorDataset train = noise_dataset(200);
  TempDir dir;
  LoopOptions o;
  o.epochs = 3;
  o.batch = 32;  // 7 steps per epoch
  o.learning_rate = 0.02;
  o.progress = false;
  o.fingerprint = "run A";
  for (const char* optimizer : {"sgd", "adam"}) {
    INFO(optimizer);
    o.optimizer = optimizer;
    o.learning_rate = std::string(optimizer) == "adam" ? 1e-3 : 0.02;
    torch::jit::Module straight = build_reference_model("lenet5-half", 1);
    train_loop(straight, train, nullptr, o);

    o.checkpoint = dir.file(std::string(optimizer) + ".ckpt");
    torch::jit::Module interrupted = build_reference_model("lenet5-half", 1);
    int steps = 0;
    const auto ctrl_c_at_step_10 = [&] {
      if (++steps == 10) std::raise(SIGINT);
    };
    CHECK_THROWS_WITH(train_loop(interrupted, train, nullptr, o, ctrl_c_at_step_10), Contains("LoopOptions::resume"));
    CHECK(std::filesystem::exists(o.checkpoint + ".json"));
    // Another run's checkpoint: refused, and left as it was.
    LoopOptions other = o;
    other.fingerprint = "run B";
    other.resume = true;
    const std::string before = sha256_file(o.checkpoint + ".json");
    torch::jit::Module scratch = build_reference_model("lenet5-half", 1);
    CHECK_THROWS_WITH(train_loop(scratch, train, nullptr, other), Contains("checkpoint of another run"));
    CHECK_THROWS_WITH(train_loop(scratch, train, nullptr, o), Contains("add LoopOptions::resume"));
    CHECK(sha256_file(o.checkpoint + ".json") == before);
    // Resumed in a fresh module (a new process would start from a fresh model too).
    torch::jit::Module resumed = build_reference_model("lenet5-half", 1);
    LoopOptions again = o;
    again.resume = true;
    const auto result = train_loop(resumed, train, nullptr, again);
    CHECK(result.resumed_at_epoch == 2);
    CHECK(same_weights(resumed, straight));
    CHECK_FALSE(std::filesystem::exists(o.checkpoint + ".json"));  // a finished run clears it
    o.checkpoint.clear();
  }
  o.resume = true;
  o.checkpoint = dir.file("missing.ckpt");
  torch::jit::Module m = build_reference_model("lenet5-half", 1);
  CHECK_THROWS_WITH(train_loop(m, train, nullptr, o), Contains("no checkpoint to resume"));
  o.resume = false;
  o.checkpoint.clear();
  o.optimizer = "rmsprop";
  CHECK_THROWS_WITH(train_loop(m, train, nullptr, o), Contains("choose sgd or adam"));
}

TEST_CASE("the distill pass recovers a pruned model from the pipeline's input, zeros kept", "[distill]") {
  at::manual_seed(4);
  const TensorDataset train = noise_dataset(128);
  const torch::jit::Module dense = build_reference_model("lenet5", 1);
  const auto passes = parse_pipeline("prune-magnitude<sparsity=0.8>,distill<epochs=1,alpha=0.5,hints=conv2:conv2>");
  CHECK(print_pipeline(passes) == "prune-magnitude<sparsity=0.8>,distill<epochs=1,alpha=0.5,hints=conv2:conv2>");
  PassContext context;
  context.train = &train;
  context.progress = false;
  CHECK_THROWS_WITH(passes[1]->run(dense, context), Contains("no teacher"));
  context.teacher = &dense;
  torch::jit::Module pruned = passes[0]->run(dense, context).module;
  const auto result = passes[1]->run(pruned, context);
  CHECK_THAT(result.report.summary, Contains("from the pipeline's input model"));
  for (const char* layer : {"conv2.weight", "fc1.weight"}) {
    at::Tensor before, after;
    for (const auto& p : pruned.named_parameters(true))
      if (p.name == layer) before = p.value;
    for (const auto& p : result.module.named_parameters(true))
      if (p.name == layer) after = p.value;
    CHECK(after.masked_select(before.eq(0)).abs().max().item<float>() == 0);
    CHECK_FALSE(at::equal(after, before));
  }
  CHECK_THROWS_WITH(parse_pipeline("distill<temperature=0>"), Contains("temperature"));
  CHECK_THROWS_WITH(parse_pipeline("distill<hints=conv2>"), Contains("TEACHER_LAYER:STUDENT_LAYER"));
}

TEST_CASE("augmentation: crops of the edge-padded image and mirror images, the same for a seed", "[distill][augment]") {
  at::manual_seed(3);
  const at::Tensor x = at::randn({16, 2, 9, 7});
  Augmentation none;
  CHECK(augment_images(x, none, 1).is_same(x));  // nothing asked: the batch itself

  Augmentation flip;
  flip.horizontal_flip = true;
  const at::Tensor f = augment_images(x, flip, 5);
  int mirrored = 0;
  for (std::int64_t i = 0; i < x.size(0); ++i) {
    const bool same = at::equal(f[i], x[i]), mirror = at::equal(f[i], x[i].flip({2}));
    CHECK((same || mirror));
    mirrored += mirror;
  }
  CHECK(mirrored > 0);
  CHECK(mirrored < 16);  // each image on its own coin: 2^-15 that all 16 agree

  Augmentation crop;
  crop.crop_padding = 2;
  const at::Tensor c = augment_images(x, crop, 7);
  REQUIRE(c.sizes() == x.sizes());
  const at::Tensor padded = at::replication_pad2d(x, {2, 2, 2, 2});
  int moved = 0;
  for (std::int64_t i = 0; i < x.size(0); ++i) {
    bool found = false;
    for (std::int64_t dy = 0; dy <= 4 && !found; ++dy)
      for (std::int64_t dx = 0; dx <= 4 && !found; ++dx)
        if (at::equal(c[i], padded[i].narrow(1, dy, 9).narrow(2, dx, 7))) {
          found = true;
          moved += dy != 2 || dx != 2;
        }
    CHECK(found);  // a window of the padded image, of the image's size
  }
  CHECK(moved > 0);

  Augmentation both = crop;
  both.horizontal_flip = true;
  CHECK(at::equal(augment_images(x, both, 11), augment_images(x, both, 11)));
  CHECK_FALSE(at::equal(augment_images(x, both, 11), augment_images(x, both, 12)));
  CHECK(at::equal(x, x.clone()));  // the input is not changed
  CHECK_THROWS_WITH(augment_images(at::zeros({4, 12}, at::kLong), both, 1),
                    Contains("needs image batches [N, C, H, W]") && Contains("[4, 12]"));
  crop.crop_padding = -1;
  CHECK_THROWS_WITH(augment_images(x, crop, 1), Contains("crop-padding must be >= 0"));
}

TEST_CASE("consistent teaching: with augmentation the teacher sees the student's views", "[distill][augment]") {
  // A student equal to its teacher, learning from the teacher alone (alpha 1, no weight decay):
  // when both see the same view of every image the loss is ~0 and the weights stay; logits of
  // the unaugmented images would pull them away. LeNet-5 has no BatchNorm or dropout, so the
  // training-mode student computes what the eval-mode teacher does.
  at::manual_seed(4);
  const TensorDataset train = noise_dataset(128);
  const torch::jit::Module teacher = build_reference_model("lenet5", 1);
  DistillOptions o = quick_options();
  o.loss.alpha = 1;
  o.loss.temperature = 1;  // an untrained teacher's soft answers, not softened further
  o.loop.weight_decay = 0;
  o.loop.learning_rate = 0.5;
  o.loop.epochs = 2;
  o.loop.augment.crop_padding = 3;
  o.loop.augment.horizontal_flip = true;
  const auto taught = distill(teacher, teacher, train, nullptr, o);
  const auto drift = [&](const torch::jit::Module& m) {
    double most = 0;
    std::vector<at::Tensor> a, b;
    for (const auto& p : m.parameters()) a.push_back(p);
    for (const auto& p : teacher.parameters()) b.push_back(p);
    for (std::size_t i = 0; i < a.size(); ++i) most = std::max(most, (a[i] - b[i]).abs().max().item<double>());
    return most;
  };
  INFO("consistent drift " << drift(taught.student));
  CHECK(drift(taught.student) < 1e-6);
  bool noted = false;
  for (const auto& n : taught.notes) noted = noted || n.find("consistent teaching") != std::string::npos;
  CHECK(noted);
  // The same training with the teacher's logits of the original images (what a cache computed
  // before training holds) while the student sees the views: the weights move.
  torch::jit::Module inconsistent = teacher.clone();
  at::Tensor cached;
  {
    at::NoGradGuard no_grad;
    torch::jit::Module t = teacher.clone();
    t.eval();
    cached = t.forward({train.images}).toTensor();
  }
  const BatchLoss loss = [&](const std::vector<c10::IValue>& inputs, const at::Tensor& labels, const at::Tensor& index) {
    const at::Tensor logits = inconsistent.forward(inputs).toTensor();
    return std::make_pair(distillation_loss(logits, cached.index_select(0, index), labels, o.loss), logits);
  };
  train_loop(inconsistent, train, nullptr, o.loop, {}, loss);
  INFO("inconsistent drift " << drift(inconsistent));
  CHECK(drift(inconsistent) > 1e-4);  // measured: ~1e-3 against ~4e-9
}
