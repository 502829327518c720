// Feature hints (FitNets-style): the teacher's intermediate activations taught to the student
// through learned projections, and the probe that checks both models before training.
#include <ATen/ATen.h>
#include <ATen/CPUGeneratorImpl.h>
#include <torch/csrc/jit/ir/ir.h>

#include <algorithm>
#include <cmath>

#include "distill/steps.h"
#include "graph/module_graph.h"
#include "joulecut/error.h"
#include "joulecut/evaluate.h"
#include "joulecut/text.h"

namespace joulecut::distill_detail {
using namespace graph;
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
  throw UserError("hint: the " + who + " has no Conv2d/Linear layer '" + layer + "' (it has: " + join(known, ", ") + ")");
}

// Adds a method returning (forward's output, the named layers' outputs...) to `module`.
void add_features_method(torch::jit::Module& module, const std::vector<std::string>& layers, const std::string& who) {
  auto graph = inlined_forward(module, "distill");
  std::vector<torch::jit::Value*> outputs{graph->outputs()[0]};
  for (const auto& layer : layers) outputs.push_back(layer_output(*graph, layer, who));
  add_method_returning(module, graph, outputs, kFeatures);
}

// The features method on both models, for every hint.
void add_hint_methods(torch::jit::Module& teacher, torch::jit::Module& student, const std::vector<Hint>& hints) {
  std::vector<std::string> teacher_layers, student_layers;
  for (const auto& h : hints) {
    teacher_layers.push_back(h.teacher_layer);
    student_layers.push_back(h.student_layer);
  }
  if (!hints.empty()) {
    add_features_method(teacher, teacher_layers, "teacher");
    add_features_method(student, student_layers, "student");
  }
}

struct Probe {
  std::vector<at::Tensor> teacher, student;  // logits, then each hint's activation
};

// Probe: output sizes must agree, and each hint pair must have matching shapes but width.
Probe probe_models(torch::jit::Module& teacher, torch::jit::Module& student, const TensorDataset& train, bool hints) {
  if (hints && !train.more_inputs.empty())
    throw UserError("distillation: feature hints need a model of one input; this data has " +
                    std::to_string(1 + train.more_inputs.size()) + " (drop " + option_ref("hints") + ")");
  const std::vector<c10::IValue> probe_inputs = train.inputs(0, std::min<std::int64_t>(2, train.size()));
  const at::Tensor probe = probe_inputs.front().toTensor();
  Probe out;
  {
    at::NoGradGuard no_grad;
    student.eval();
    out.teacher = hints ? run_features(teacher, probe) : std::vector<at::Tensor>{logits_of(teacher, probe_inputs, train)};
    out.student = hints ? run_features(student, probe) : std::vector<at::Tensor>{logits_of(student, probe_inputs, train)};
  }
  if (out.teacher[0].dim() != 2 || out.student[0].sizes() != out.teacher[0].sizes())
    throw UserError("distillation: the teacher's output " + shape_text(out.teacher[0].sizes()) + " and the student's " +
                    shape_text(out.student[0].sizes()) + " differ; both must give [N, classes] for the same classes");
  return out;
}

// Throws UserError unless the teacher's activation `t` and the student's `s` differ at most in width.
void check_hint_shapes(const at::Tensor& t, const at::Tensor& s, const std::string& pair) {
  if (t.dim() == 3 && s.dim() == 3 && t.size(1) != s.size(1))
    throw UserError("hint " + pair + ": the teacher's sequence has " + std::to_string(t.size(1)) + " positions and the "
                    "student's " + std::to_string(s.size(1)) + " (activations " + shape_text(t.sizes()) + " and " +
                    shape_text(s.sizes()) + "); pair layers that see the same sequence length");
  if (t.dim() != s.dim() || t.dim() < 2 || t.dim() > 4 || (t.dim() == 4 && t.sizes().slice(2) != s.sizes().slice(2)))
    throw UserError("hint " + pair + ": the teacher's activation " + shape_text(t.sizes()) + " and the student's " +
                    shape_text(s.sizes()) + " must both be [N, C, H, W] with the same H and W, both [N, L, C] "
                    "(transformer tokens) with the same L, or both [N, C]");
}

// One projection per hint from the probe's activations, drawn from the loop's seed.
HintProjections make_projections(const Probe& probe, const DistillOptions& options, std::vector<std::string>& notes) {
  at::Generator gen = at::make_generator<at::CPUGeneratorImpl>(options.loop.seed);
  HintProjections out;
  out.projections.resize(options.hints.size());
  for (std::size_t i = 0; i < options.hints.size(); ++i) {
    const at::Tensor& t = probe.teacher[i + 1];
    const at::Tensor& s = probe.student[i + 1];
    const std::string pair = options.hints[i].teacher_layer + ":" + options.hints[i].student_layer;
    check_hint_shapes(t, s, pair);
    // The width: channels of an image activation, features of a token or a vector.
    const std::int64_t width_dim = t.dim() == 3 ? 2 : 1;
    const std::int64_t tw = t.size(width_dim), sw = s.size(width_dim);
    if (tw == sw) {
      notes.push_back("hint " + pair + ": same width (" + std::to_string(tw) + "), no projection");
      continue;
    }
    const double bound = 1.0 / std::sqrt(double(sw));
    std::vector<std::int64_t> shape{tw, sw};
    if (t.dim() == 4) shape.insert(shape.end(), {1, 1});
    Projection& projection = out.projections[i];
    projection.weight = at::empty(shape).uniform_(-bound, bound, gen);
    projection.bias = at::zeros({tw});
    out.parameters.push_back(projection.weight);
    out.parameters.push_back(projection.bias);
    notes.push_back("hint " + pair + ": learned " + (t.dim() == 4 ? std::string("1x1 convolution ") : "projection ") +
                    std::to_string(sw) + " -> " + std::to_string(tw) + " channels (not part of the exported student)");
  }
  return out;
}

}  // namespace

std::vector<at::Tensor> run_features(torch::jit::Module& module, const at::Tensor& x) {
  const auto tuple = module.get_method(kFeatures)({x}).toTuple();
  std::vector<at::Tensor> out;
  for (const auto& e : tuple->elements()) out.push_back(e.toTensor());
  return out;
}

void remove_features_method(torch::jit::Module& module) { remove_method(module, kFeatures); }

HintProjections set_up_hints(torch::jit::Module& teacher, torch::jit::Module& student, const TensorDataset& train,
                             const DistillOptions& options, std::vector<std::string>& notes) {
  add_hint_methods(teacher, student, options.hints);
  const Probe probe = probe_models(teacher, student, train, !options.hints.empty());
  return make_projections(probe, options, notes);
}

}  // namespace joulecut::distill_detail
