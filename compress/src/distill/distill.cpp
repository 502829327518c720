#include "joulecut/distill.h"

#include <ATen/ATen.h>
#include <ATen/CPUGeneratorImpl.h>
#include <torch/csrc/jit/ir/ir.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <map>
#include <sstream>

#include "joulecut/error.h"
#include "joulecut/evaluate.h"
#include "joulecut/model.h"
#include "joulecut/model_input.h"
#include "joulecut/pass_options.h"
#include "joulecut/progress.h"
#include "prune/common.h"

namespace joulecut {
using namespace prune_detail;
namespace {

constexpr const char* kFeatures = "joulecut_distill_features";

// The output of the Conv2d/Linear whose weight is `layer`.weight, in an inlined forward.
torch::jit::Value* layer_output(torch::jit::Graph& graph, const std::string& layer, const std::string& who) {
  torch::jit::Value* self = graph.inputs()[0];
  std::vector<std::string> known;
  for (const auto kind : {c10::aten::conv2d, c10::aten::_convolution, c10::aten::linear})
    for (torch::jit::Node* n : nodes_of_kind(graph.block(), kind)) {
      const auto weight = attribute_path(n->input(1), self);
      if (!weight) continue;
      const std::string name = weight->substr(0, weight->rfind('.'));
      if (name == layer) {
        if (n->owningBlock() != graph.block())
          throw UserError("hint: " + who + " layer '" + layer + "' runs inside a branch or loop; choose another");
        return n->output();
      }
      known.push_back(name);
    }
  std::string list;
  for (const auto& k : known) list += (list.empty() ? "" : ", ") + k;
  throw UserError("hint: the " + who + " has no Conv2d/Linear layer '" + layer + "' (it has: " + list + ")");
}

// Adds a method returning (forward's output, the named layers' outputs...) to `module`.
void add_features_method(torch::jit::Module& module, const std::vector<std::string>& layers, const std::string& who) {
  auto graph = inlined_forward(module, "distill");
  std::vector<torch::jit::Value*> outputs{graph->outputs()[0]};
  for (const auto& layer : layers) outputs.push_back(layer_output(*graph, layer, who));
  add_method_returning(module, graph, outputs, kFeatures);
}

void remove_features_method(torch::jit::Module& module) { remove_method(module, kFeatures); }

std::vector<at::Tensor> run_features(torch::jit::Module& module, const at::Tensor& x) {
  const auto tuple = module.get_method(kFeatures)({x}).toTuple();
  std::vector<at::Tensor> out;
  for (const auto& e : tuple->elements()) out.push_back(e.toTensor());
  return out;
}

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
  if (!train.labelled() && options.loss.alpha < 1)
    throw UserError(train.description + ": no labels, so distillation learns from the teacher alone: set alpha to 1 "
                    "(--alpha 1), it is " + std::to_string(options.loss.alpha));
  check_loss_options(options.loss);
  check_loop_options(options.loop);  // before the teacher's pass over the data, not after it
  if (!(options.hint_weight >= 0)) throw UserError("distillation: hint weight must be >= 0");
  if (train.size() == 0) throw UserError("distillation: the training set is empty");
  torch::jit::Module teacher = clone_for_transform(teacher_input);
  torch::jit::Module student = clone_for_transform(student_input);
  teacher.eval();
  for (const auto& p : teacher.parameters()) p.requires_grad_(false);
  std::vector<std::string> teacher_layers, student_layers;
  for (const auto& h : options.hints) {
    teacher_layers.push_back(h.teacher_layer);
    student_layers.push_back(h.student_layer);
  }
  DistillResult result;
  const bool hints = !options.hints.empty();
  if (hints) {
    add_features_method(teacher, teacher_layers, "teacher");
    add_features_method(student, student_layers, "student");
  }

  // Probe: output sizes must agree, and each hint pair must have matching shapes but width.
  if (hints && !train.more_inputs.empty())
    throw UserError("distillation: feature hints need a model of one input; this data has " +
                    std::to_string(1 + train.more_inputs.size()) + " (drop --hint)");
  const std::vector<c10::IValue> probe_inputs = train.inputs(0, std::min<std::int64_t>(2, train.size()));
  const at::Tensor probe = probe_inputs.front().toTensor();
  const auto logits_of = [&train](torch::jit::Module& m, const std::vector<c10::IValue>& inputs) {
    return select_output(m.forward(inputs), train.output, train.description);
  };
  std::vector<at::Tensor> teacher_probe, student_probe;
  {
    at::NoGradGuard no_grad;
    student.eval();
    teacher_probe = hints ? run_features(teacher, probe) : std::vector<at::Tensor>{logits_of(teacher, probe_inputs)};
    student_probe = hints ? run_features(student, probe) : std::vector<at::Tensor>{logits_of(student, probe_inputs)};
  }
  if (teacher_probe[0].dim() != 2 || student_probe[0].sizes() != teacher_probe[0].sizes())
    throw UserError("distillation: the teacher's output " + shape_text(teacher_probe[0].sizes()) + " and the student's " +
                    shape_text(student_probe[0].sizes()) + " differ; both must give [N, classes] for the same classes");
  at::Generator gen = at::make_generator<at::CPUGeneratorImpl>(options.loop.seed);
  std::vector<Projection> projections(options.hints.size());
  std::vector<at::Tensor> extra;
  for (std::size_t i = 0; i < options.hints.size(); ++i) {
    const at::Tensor& t = teacher_probe[i + 1];
    const at::Tensor& s = student_probe[i + 1];
    const std::string pair = options.hints[i].teacher_layer + ":" + options.hints[i].student_layer;
    if (t.dim() == 3 && s.dim() == 3 && t.size(1) != s.size(1))
      throw UserError("hint " + pair + ": the teacher's sequence has " + std::to_string(t.size(1)) + " positions and the "
                      "student's " + std::to_string(s.size(1)) + " (activations " + shape_text(t.sizes()) + " and " +
                      shape_text(s.sizes()) + "); pair layers that see the same sequence length");
    if (t.dim() != s.dim() || t.dim() < 2 || t.dim() > 4 || (t.dim() == 4 && t.sizes().slice(2) != s.sizes().slice(2)))
      throw UserError("hint " + pair + ": the teacher's activation " + shape_text(t.sizes()) + " and the student's " +
                      shape_text(s.sizes()) + " must both be [N, C, H, W] with the same H and W, both [N, L, C] "
                      "(transformer tokens) with the same L, or both [N, C]");
    // The width: channels of an image activation, features of a token or a vector.
    const std::int64_t width_dim = t.dim() == 3 ? 2 : 1;
    const std::int64_t tw = t.size(width_dim), sw = s.size(width_dim);
    if (tw == sw) {
      result.notes.push_back("hint " + pair + ": same width (" + std::to_string(tw) + "), no projection");
      continue;
    }
    const double bound = 1.0 / std::sqrt(double(sw));
    std::vector<std::int64_t> shape{tw, sw};
    if (t.dim() == 4) shape.insert(shape.end(), {1, 1});
    projections[i].weight = at::empty(shape).uniform_(-bound, bound, gen);
    projections[i].bias = at::zeros({tw});
    extra.push_back(projections[i].weight);
    extra.push_back(projections[i].bias);
    result.notes.push_back("hint " + pair + ": learned " + (t.dim() == 4 ? std::string("1x1 convolution ") : "projection ") +
                           std::to_string(sw) + " -> " + std::to_string(tw) +
                           " channels (not part of the exported student)");
  }

  // Without hints or augmentation the teacher's logits are computed once for the whole training
  // set: the teacher then costs one inference pass, not one per epoch. With augmentation the
  // teacher sees every batch's views as the student does (consistent teaching, Beyer et al.,
  // CVPR 2022): logits of the unaugmented images would teach the student a function it is
  // never shown.
  const bool consistent = options.loop.augment.any();
  at::Tensor teacher_logits;
  std::string teacher_note;
  torch::jit::Module fast;
  std::string how = "frozen and optimized for inference";
  if (!hints) {
    // The teacher as it would be deployed (frozen, optimized for inference): the plain module
    // ran 3-15x slower on ResNet-8.
    fast = teacher.clone();
    try {
      torch::jit::Module frozen = torch::jit::freeze(fast);
      fast = torch::jit::optimize_for_inference(frozen);
    } catch (const c10::Error&) {
      how = "as loaded (it cannot be frozen)";
    }
  }
  if (consistent) {
    teacher_note = "teacher: " + (hints ? std::string("with its hint layers") : how) +
                   ", run on every batch's augmented views (consistent teaching; crop padding " +
                   std::to_string(options.loop.augment.crop_padding) +
                   (options.loop.augment.horizontal_flip ? ", horizontal flips)" : ", no flips)");
  }
  if (!hints && !consistent) {
    at::NoGradGuard no_grad;
    const auto started = std::chrono::steady_clock::now();
    // At the batch size it runs fastest per image here, measured: on a CPU large batches fall
    // out of cache, and the plain module at batch 500 ran 12-15x slower than this on ResNet-8.
    std::int64_t batch = 1, best_batch = 64;
    double best = 1e30;
    std::string tried;
    for (const std::int64_t b : {16, 32, 64, 128, 256, 512}) {
      if (options.teacher_batch > 0) break;  // given: not timed
      if (b > train.size()) break;
      batch = b;
      const std::vector<c10::IValue> sample = train.inputs(0, b);
      for (int i = 0; i < 2; ++i) logits_of(fast, sample);  // first runs at a shape: plans, layouts
      std::vector<double> seconds;
      for (int i = 0; i < 3; ++i) {
        const auto t0 = std::chrono::steady_clock::now();
        logits_of(fast, sample);
        seconds.push_back(std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count() / double(b));
      }
      std::sort(seconds.begin(), seconds.end());
      char item[48];
      std::snprintf(item, sizeof item, "%s%lld: %.3g us", tried.empty() ? "" : ", ", (long long)b, 1e6 * seconds[1]);
      tried += item;
      if (seconds[1] < best) {
        best = seconds[1];
        best_batch = b;
      }
    }
    if (options.teacher_batch > 0) best_batch = options.teacher_batch;
    else if (batch == 1) best_batch = train.size();  // fewer images than the smallest batch tried
    std::vector<at::Tensor> parts;
    ProgressBar bar("teacher logits", train.size(), options.loop.progress);
    for (std::int64_t start = 0; start < train.size(); start += best_batch) {
      const std::int64_t count = std::min(best_batch, train.size() - start);
      parts.push_back(logits_of(fast, train.inputs(start, count)));
      bar.update(start + count, "");
    }
    bar.finish(std::to_string(train.size()) + " images");
    teacher_logits = at::cat(parts);
    char note[400];
    std::snprintf(note, sizeof note,
                  "teacher logits: %lld images in %.1f s, the teacher %s at batch %lld (per image, by batch: %s)",
                  (long long)train.size(),
                  std::chrono::duration<double>(std::chrono::steady_clock::now() - started).count(), how.c_str(),
                  (long long)best_batch,
                  !tried.empty()                ? tried.c_str()
                  : options.teacher_batch > 0 ? "as given, not timed"
                                              : "not timed: fewer images than the smallest batch tried, 16");
    teacher_note = note;
  }

  // A pruned student keeps its zeros: masks from the exact zeros of every weight that has some.
  std::vector<at::Tensor> with_zeros;
  if (options.keep_zeros)
    for (const auto& p : student.named_parameters(true)) {
      if (p.value.dim() < 2) continue;
      const double zeros = p.value.eq(0).to(at::kFloat).mean().item<double>();
      if (zeros == 0) continue;
      with_zeros.push_back(p.value);
      char note[160];
      std::snprintf(note, sizeof note, "%s: %.1f%% zeros kept at zero", p.name.c_str(), 100 * zeros);
      result.notes.push_back(note);
    }
  const KeepZeros keep_zeros(with_zeros);

  const BatchLoss loss = [&](const std::vector<c10::IValue>& inputs, const at::Tensor& y, const at::Tensor& index) {
    if (!hints) {
      at::Tensor taught;
      if (consistent) {
        at::NoGradGuard no_grad;
        taught = logits_of(fast, inputs);
      } else {
        taught = teacher_logits.index_select(0, index);
      }
      const at::Tensor logits = logits_of(student, inputs);
      return std::make_pair(distillation_loss(logits, taught, y, options.loss), logits);
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
  };
  result.loop = train_loop(student, train, test, options.loop,
                           with_zeros.empty() ? std::function<void()>() : std::function<void()>(keep_zeros), loss, extra);
  if (!teacher_note.empty()) result.notes.push_back(teacher_note);
  if (hints) remove_features_method(student);
  student.eval();
  result.student = student;
  return result;
}

DistillPass::DistillPass(DistillPassOptions options) : options_(std::move(options)) {}

const OptionTable<DistillPassOptions>& DistillPass::options_table() {
  using O = DistillPassOptions;
  static const OptionTable<O> table(
      "distill",
      {path_option("teacher", "teacher TorchScript file (default: the pipeline's input model)", &O::teacher),
       option("epochs", "training epochs", &O::epochs),
       option("temperature", "softmax temperature T (> 0)", &O::temperature),
       option("alpha", "weight of the teacher term, in [0, 1]; 1 - alpha on the labels", &O::alpha),
       option("lr", "peak learning rate", &O::lr),
       option("optimizer", "sgd (Nesterov momentum) or adam", &O::optimizer),
       option("hints", "feature hints TEACHER_LAYER:STUDENT_LAYER, '|'-separated", &O::hints),
       option("hint-weight", "weight of the hint loss", &O::hint_weight),
       option("batch", "training batch size", &O::batch),
       option("momentum", "SGD momentum", &O::momentum),
       option("weight-decay", "weight decay", &O::weight_decay),
       option("schedule", "cosine (per step, to 0) or step", &O::schedule),
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
  if (o.epochs < 1) throw UserError("distill: epochs must be >= 1");
  if (o.batch < 1) throw UserError("distill: batch must be >= 1");
  if (o.teacher_batch < 0) throw UserError("distill: teacher-batch must be >= 0 (0: timed)");
  if (o.crop_padding < 0) throw UserError("distill: crop-padding must be >= 0 (0: no crops)");
  check_loss_options({o.temperature, o.alpha});
  if (o.optimizer != "sgd" && o.optimizer != "adam") throw UserError("distill: optimizer '" + o.optimizer + "': choose sgd or adam");
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
  if (!context.train) throw UserError("distill: needs training data (--data)");
  torch::jit::Module teacher;
  std::string teacher_name = options_.teacher;
  if (!options_.teacher.empty()) {
    teacher = load_model(options_.teacher).module;
  } else if (context.teacher) {
    teacher = *context.teacher;
    teacher_name = "the pipeline's input model";
  } else {
    throw UserError("distill: no teacher: give teacher=PATH, or run it in a pipeline (the pipeline's input model teaches)");
  }
  const DistillOptions options = distill_options(options_, context.seed, context.progress);
  const auto result = distill(teacher, module, *context.train, context.test, options);
  PassReport report;
  report.pass = text();
  char summary[200];
  std::snprintf(summary, sizeof summary, "%d epoch(s) from %s (T %g, alpha %g)%s", options_.epochs, teacher_name.c_str(),
                options_.temperature, options_.alpha, context.test ? "" : "; no test set given");
  report.summary = summary;
  if (context.test && context.test->labelled()) {
    std::snprintf(summary, sizeof summary, "test accuracy after distillation %.2f%%", 100 * result.loop.test_accuracy);
    report.notes.push_back(summary);
  }
  for (const auto& n : result.notes) report.notes.push_back(n);
  return {result.student, report};
}

}  // namespace joulecut
