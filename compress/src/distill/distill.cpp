#include "joulecut/distill.h"

#include <ATen/ATen.h>

#include <cmath>
#include <cstdio>
#include <sstream>

#include "distill/steps.h"
#include "graph/module_graph.h"
#include "joulecut/error.h"
#include "joulecut/model.h"
#include "joulecut/pass_options.h"
#include "joulecut/text.h"

namespace joulecut {
using namespace graph;
using namespace distill_detail;
namespace {

// Throws UserError for what distill() cannot run, before the teacher's pass over the data.
void check_distill_inputs(const TensorDataset& train, const DistillOptions& options) {
  if (!train.labelled() && options.loss.alpha < 1)
    throw UserError(train.description + ": no labels, so distillation learns from the teacher alone: set alpha to 1 (" +
                    option_ref("alpha") + " 1), it is " + std::to_string(options.loss.alpha));
  check_loss_options(options.loss);
  check_loop_options(options.loop);  // before the teacher's pass over the data, not after it
  if (!(options.hint_weight >= 0)) throw UserError("distillation: hint weight must be >= 0");
  if (train.size() == 0) throw UserError("distillation: the training set is empty");
}

// A pruned student keeps its zeros: the weights with exact zeros (every weight that has some,
// when `keep`), with a note for each.
std::vector<at::Tensor> weights_with_zeros(torch::jit::Module& student, bool keep, std::vector<std::string>& notes) {
  std::vector<at::Tensor> with_zeros;
  if (keep)
    for (const auto& p : student.named_parameters(true)) {
      if (p.value.dim() < 2) continue;
      const double zeros = p.value.eq(0).to(at::kFloat).mean().item<double>();
      if (zeros == 0) continue;
      with_zeros.push_back(p.value);
      notes.push_back(format("%s: %.1f%% zeros kept at zero", p.name.c_str(), 100 * zeros));
    }
  return with_zeros;
}

// The loss of one training batch: the distillation loss against the teacher's logits (cached,
// or computed on the batch's views), plus with hints the weighted squared errors of the
// projected student activations against the teacher's.
struct DistillBatchLoss {
  torch::jit::Module& teacher;  // with its features method when there are hints
  torch::jit::Module& student;
  TeacherRun& taught;
  const std::vector<Projection>& projections;
  const TensorDataset& train;
  const DistillOptions& options;

  std::pair<at::Tensor, at::Tensor> operator()(const std::vector<c10::IValue>& inputs, const at::Tensor& y,
                                               const at::Tensor& index) const {
    if (options.hints.empty()) {
      at::Tensor teacher_logits;
      if (options.loop.augment.any()) {
        at::NoGradGuard no_grad;
        teacher_logits = logits_of(taught.fast, inputs, train);
      } else {
        teacher_logits = taught.logits.index_select(0, index);
      }
      const at::Tensor logits = logits_of(student, inputs, train);
      return std::make_pair(distillation_loss(logits, teacher_logits, y, options.loss), logits);
    }
    const at::Tensor x = inputs.front().toTensor();
    std::vector<at::Tensor> t;
    {
      at::NoGradGuard no_grad;
      t = run_features(teacher, x);
    }
    const std::vector<at::Tensor> s = run_features(student, x);
    at::Tensor total = distillation_loss(s[0], t[0], y, options.loss);
    for (std::size_t i = 0; i < projections.size(); ++i)
      total = total + options.hint_weight * at::mse_loss(projections[i].apply(s[i + 1]), t[i + 1]);
    return std::make_pair(total, s[0]);
  }
};

}  // namespace

void check_loss_options(const DistillLossOptions& o) {
  if (!(o.temperature > 0) || !std::isfinite(o.temperature))
    throw UserError("distillation: temperature must be > 0, got " + std::to_string(o.temperature));
  if (!(o.alpha >= 0 && o.alpha <= 1)) throw UserError("distillation: alpha must be in [0, 1], got " + std::to_string(o.alpha));
}

at::Tensor distillation_loss(const at::Tensor& student_logits, const at::Tensor& teacher_logits, const at::Tensor& labels,
                             const DistillLossOptions& options) {
  check_loss_options(options);
  const double t = options.temperature;
  at::Tensor loss = at::zeros({}, student_logits.options());
  if (options.alpha > 0) {
    const at::Tensor log_student = at::log_softmax(student_logits / t, 1);
    const at::Tensor log_teacher = at::log_softmax(teacher_logits / t, 1);
    // KL(p_teacher || p_student), summed over classes, averaged over the batch; T^2 keeps the
    // gradient scale independent of T (Hinton et al.).
    const at::Tensor kl = (log_teacher.exp() * (log_teacher - log_student)).sum(1).mean();
    loss = loss + options.alpha * t * t * kl;
  }
  if (options.alpha < 1) loss = loss + (1 - options.alpha) * at::cross_entropy_loss(student_logits, labels);
  return loss;
}

Hint parse_hint(const std::string& text) {
  const auto colon = text.find(':');
  if (colon == std::string::npos || colon == 0 || colon + 1 == text.size() || text.find(':', colon + 1) != std::string::npos)
    throw UserError("hint '" + text + "': write TEACHER_LAYER:STUDENT_LAYER, e.g. layer3.conv2:layer3.conv2");
  return {text.substr(0, colon), text.substr(colon + 1)};
}

std::vector<Hint> parse_hints(const std::string& text) {
  std::vector<Hint> hints;
  std::stringstream in(text);
  for (std::string item; std::getline(in, item, '|');) hints.push_back(parse_hint(item));
  return hints;
}

DistillResult distill(const torch::jit::Module& teacher_input, const torch::jit::Module& student_input,
                      const TensorDataset& train, const TensorDataset* test, const DistillOptions& options) {
  check_distill_inputs(train, options);
  torch::jit::Module teacher = clone_for_transform(teacher_input);
  torch::jit::Module student = clone_for_transform(student_input);
  teacher.eval();
  for (const auto& p : teacher.parameters()) p.requires_grad_(false);
  DistillResult result;
  const HintProjections hints = set_up_hints(teacher, student, train, options, result.notes);
  TeacherRun taught = prepare_teacher(teacher, train, options);
  const std::vector<at::Tensor> with_zeros = weights_with_zeros(student, options.keep_zeros, result.notes);
  const KeepZeros keep_zeros(with_zeros);
  const BatchLoss loss = DistillBatchLoss{teacher, student, taught, hints.projections, train, options};
  result.loop = train_loop(student, train, test, options.loop,
                           with_zeros.empty() ? std::function<void()>() : std::function<void()>(keep_zeros), loss,
                           hints.parameters);
  if (!taught.note.empty()) result.notes.push_back(taught.note);
  if (!options.hints.empty()) remove_features_method(student);
  student.eval();
  result.student = student;
  return result;
}

DistillPass::DistillPass(DistillPassOptions options) : options_(std::move(options)) {}

const OptionTable<DistillPassOptions>& DistillPass::options_table() {
  using O = DistillPassOptions;
  static const OptionTable<O> table(DistillPass::kName,
      {path_option("teacher", "teacher TorchScript file (default: the pipeline's input model)", &O::teacher),
       option("epochs", "training epochs", &O::epochs),
       option("temperature", "softmax temperature T (> 0)", &O::temperature),
       option("alpha", "weight of the teacher term, in [0, 1]; 1 - alpha on the labels", &O::alpha),
       option("lr", "peak learning rate", &O::lr),
       choice_option("optimizer", "sgd (Nesterov momentum) or adam", &O::optimizer, {{"sgd", ""}, {"adam", ""}}),
       option("hints", "feature hints TEACHER_LAYER:STUDENT_LAYER, '|'-separated", &O::hints),
       option("hint-weight", "weight of the hint loss", &O::hint_weight),
       option("batch", "training batch size", &O::batch),
       option("momentum", "SGD momentum", &O::momentum),
       option("weight-decay", "weight decay", &O::weight_decay),
       choice_option("schedule", "the learning rate's schedule: cosine (per step, to 0) or step", &O::schedule,
                     {{"cosine", "per step, to 0"}, {"step", "times gamma every step-epochs"}}),
       option("step-epochs", "schedule=step: epochs between decays", &O::step_epochs),
       option("gamma", "schedule=step: decay factor", &O::gamma),
       option("keep-zeros", "a pruned student's zeros stay zero", &O::keep_zeros),
       option("teacher-batch", "batch of the teacher's logits (0: the fastest per image, timed; give one for "
                               "bit-identical reruns)",
              &O::teacher_batch),
       option("crop-padding", "augmentation: pad every training image by this many pixels, crop back at random "
                              "(0: off); the teacher sees the same views",
              &O::crop_padding),
       option("flip", "augmentation: mirror training images left-right at random (only where the data allows it)",
              &O::flip)});
  return table;
}

DistillPassOptions DistillPass::parse(const PassOptionMap& map) {
  const DistillPassOptions o = options_table().parse(map);
  if (o.epochs < 1) throw pass_error(DistillPass::kName, "epochs must be >= 1");
  if (o.batch < 1) throw pass_error(DistillPass::kName, "batch must be >= 1");
  if (o.teacher_batch < 0) throw pass_error(DistillPass::kName, "teacher-batch must be >= 0 (0: timed)");
  if (o.crop_padding < 0) throw pass_error(DistillPass::kName, "crop-padding must be >= 0 (0: no crops)");
  check_loss_options({o.temperature, o.alpha});
  parse_hints(o.hints);
  return o;
}

std::string DistillPass::options_text() const { return options_table().print(options_); }

DistillOptions distill_options(const DistillPassOptions& o, std::uint64_t seed, bool progress) {
  DistillOptions options;
  options.loss = {o.temperature, o.alpha};
  options.hints = parse_hints(o.hints);
  options.hint_weight = o.hint_weight;
  options.keep_zeros = o.keep_zeros;
  options.teacher_batch = o.teacher_batch;
  options.loop.epochs = o.epochs;
  options.loop.batch = o.batch;
  options.loop.learning_rate = o.lr;
  options.loop.optimizer = o.optimizer;
  options.loop.momentum = o.momentum;
  options.loop.weight_decay = o.weight_decay;
  options.loop.schedule = o.schedule;
  options.loop.step_epochs = o.step_epochs;
  options.loop.gamma = o.gamma;
  options.loop.augment.crop_padding = o.crop_padding;
  options.loop.augment.horizontal_flip = o.flip;
  options.loop.seed = seed;
  options.loop.progress = progress;
  return options;
}

PassResult DistillPass::run(const torch::jit::Module& module, PassContext& context) const {
  if (!context.train)
    throw pass_error(DistillPass::kName, "needs training data (" + option_ref("DataSource::data") + ")");
  torch::jit::Module teacher;
  std::string teacher_name = options_.teacher;
  if (!options_.teacher.empty()) {
    teacher = load_model(options_.teacher).module;
  } else if (context.teacher) {
    teacher = *context.teacher;
    teacher_name = "the pipeline's input model";
  } else {
    throw pass_error(DistillPass::kName,
                     "no teacher: give teacher=PATH, or run it in a pipeline (the pipeline's input model teaches)");
  }
  DistillOptions options = distill_options(options_, context.seed, context.progress);
  options.timing = context.timing;
  const auto result = distill(teacher, module, *context.train, context.test, options);
  PassReport report;
  report.pass = text();
  report.summary = format("%d epoch(s) from %s (T %g, alpha %g)%s", options_.epochs, teacher_name.c_str(),
                          options_.temperature, options_.alpha, context.test ? "" : "; no test set given");
  if (context.test && context.test->labelled())
    report.notes.push_back(format("test accuracy after distillation %.2f%%", 100 * result.loop.test_accuracy));
  for (const auto& n : result.notes) report.notes.push_back(n);
  return {result.student, report};
}

}  // namespace joulecut
