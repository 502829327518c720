// quantize-static's per-layer=auto (backend=onednn): each int8 layer timed in place at the
// target batch against its fp32 op; those clearly faster in fp32 (by 10%: joulecut/timing.h) go
// back to fp32, and the whole models are timed: the per-layer model is kept only when it is
// clearly faster than all int8, so that a near tie cannot flip the file between runs.
#include <ATen/ATen.h>
#include <torch/csrc/jit/ir/ir.h>

#include <algorithm>
#include <cstdio>

#include "quantize/static_internal.h"

#ifdef JOULECUT_HAVE_ONEDNN
#include "graph/module_graph.h"
#include "graph/quantized_engine.h"
#include "graph/root_attributes.h"
#include "joulecut/freeze.h"
#include "joulecut/text.h"
#include "joulecut/timing.h"

namespace joulecut::static_quant {
using namespace graph;
namespace {

// How long each comparison may run: a layer is cheap to time, a whole model less so.
constexpr double kLayerSeconds = 0.2, kModelSeconds = 1.0;

// The layer alone in fp32 as it would be deployed: a module of the layer and its activation,
// frozen and optimized for inference (prepacked oneDNN convolution where LibTorch picks it), so
// that the fp32 side is timed as fast as the fp32 model runs it.
torch::jit::Module deployed_fp32_layer(const Layer& l, const at::Tensor& weight, const at::Tensor& bias) {
  torch::jit::Module m("JoulecutTimedLayer");
  m.register_attribute("training", c10::BoolType::get(), false);
  m.register_parameter("weight", weight, false);
  if (bias.defined()) m.register_parameter("bias", bias, false);
  const auto list = [](const std::vector<std::int64_t>& v) {
    std::vector<std::string> parts;
    for (auto x : v) parts.push_back(std::to_string(x));
    return "[" + join(parts, ", ") + "]";
  };
  const std::string b = bias.defined() ? "self.bias" : "None";
  std::string y = l.conv ? "torch.conv2d(x, self.weight, " + b + ", " + list(l.stride) + ", " + list(l.padding) + ", " +
                               list(l.dilation) + ", " + std::to_string(l.groups) + ")"
                         : "torch.linear(x, self.weight, " + b + ")";
  if (l.activation) {
    const Activation& a = l.activation_kind;
    const std::string bounds = format(", %.17g, %.17g", a.min, a.max);
    if (a.name == "hardtanh") y = "torch.hardtanh(" + y + bounds + ")";
    else if (a.name == "gelu_tanh") y = "torch.gelu(" + y + ", approximate=\"tanh\")";
    else y = "torch." + a.name + "(" + y + ")";
  }
  m.define("def forward(self, x):\n    return " + y + "\n");
  return freeze_for_inference(m).module;
}

struct LayerTiming {
  double fp32_us = 0, int8_us = 0;
  std::string note;  // why it was not timed, when it was not
};

// The int8 op of a layer in the built model, with its boundary ops.
struct Int8Op {
  Node* node = nullptr;
  Node* quantize = nullptr;    // the quantize of its input, when it has one of its own
  Node* dequantize = nullptr;  // the dequantize of its output, when some fp32 op reads it
};

std::map<std::string, Int8Op> int8_ops(const Built& built) {
  std::map<std::string, Int8Op> ops;
  auto built_graph = built.module.get_method("forward").graph();
  for (Node* n : built_graph->nodes()) {
    if (n->kind() != kOurConv && n->kind() != kOurLinear && n->kind() != kOurConvAdd) continue;
    Node* attr = n->input(1)->node();
    if (attr->kind() != c10::prim::GetAttr) continue;
    const std::string layer = layer_of_root_attribute(kInt8Layer, attr->s(c10::attr::name));
    Int8Op op{n};
    if (n->input(0)->node()->kind() == kOurQuantize) op.quantize = n->input(0)->node();
    for (const auto& use : n->output()->uses())
      if (use.user->kind() == kOurDequantize) op.dequantize = use.user;
    ops[layer] = op;
  }
  return ops;
}

// One layer timed on its real input `x`: its fp32 op (with its activation) against its int8 op
// `state` with the quantize of its input and the dequantize of its output that the int8 model
// runs only because of it.
LayerTiming time_layer(const Layer& l, const Int8Op& op, const at::Tensor& x, const at::Tensor& w, const at::Tensor& b,
                       const c10::IValue& state, const TimingService& timer) {
  const auto constant = [](Node* n, std::size_t i) { return *torch::jit::toIValue(n->input(i)); };
  // The uint8 input the int8 op reads: quantized here once when a producer hands it over int8.
  at::Tensor q;
  double in_scale = 1;
  std::int64_t in_zero = 0;
  if (op.quantize) {
    in_scale = constant(op.quantize, 1).toDouble();
    in_zero = constant(op.quantize, 2).toInt();
  } else {
    const auto range = affine_uint8(x.min().item<float>(), x.max().item<float>());
    in_scale = range.scale;
    in_zero = range.zero_point;
  }
  q = call_op("joulecut::quantize_u8", {x, in_scale, in_zero}).toTensor();
  torch::jit::Module fp32_layer = deployed_fp32_layer(l, w, b);
  const std::vector<c10::IValue> fp32_input{x};
  const auto fp32 = [&] { fp32_layer.forward(fp32_input); };
  const char* name = l.conv ? "joulecut::int8_conv2d" : "joulecut::int8_linear";
  const auto int8 = [&] {
    const at::Tensor in = op.quantize ? call_op("joulecut::quantize_u8", {x, in_scale, in_zero}).toTensor() : q;
    const at::Tensor y = call_op(name, {in, state}).toTensor();
    if (op.dequantize)
      call_op("joulecut::dequantize_u8", {y, constant(op.dequantize, 1), constant(op.dequantize, 2)});
  };
  LayerTiming t;
  const PairTiming timed = timer.compare("layer " + l.name + ": fp32 vs int8", fp32, int8, kLayerSeconds);
  t.fp32_us = timed.a_us;
  t.int8_us = timed.b_us;
  return t;
}

// Each int8 layer timed in place at the batch of `inputs` (see time_layer).
std::map<std::string, LayerTiming> time_layers(const torch::jit::Module& input, const Built& built,
                                               const std::vector<c10::IValue>& inputs, const TimingService& timer) {
  torch::jit::Module probe = clone_for_transform(input);
  auto graph = inlined_forward(probe, StaticQuantizePass::kName, GraphUse::inference);
  const auto layers = find_layers(*graph, probe, StaticQuantizePass::kName, true);
  const auto values = numbered_values(*graph);
  std::map<Value*, std::size_t> index;
  for (std::size_t i = 0; i < values.size(); ++i) index[values[i]] = i;
  std::set<std::size_t> wanted;
  for (const auto& l : layers)
    if (index.count(l.node->input(0))) wanted.insert(index[l.node->input(0)]);
  const auto captured = capture_values(input, wanted, inputs);
  std::map<std::string, at::Tensor> tensors;
  for (const auto& p : probe.named_parameters(true)) tensors[p.name] = p.value.detach();
  std::map<std::string, Int8Op> ops = int8_ops(built);
  std::map<std::string, LayerTiming> out;
  at::NoGradGuard no_grad;
  for (const auto& l : layers) {
    if (!ops.count(l.name)) continue;
    LayerTiming t;
    const Int8Op& op = ops[l.name];
    if (op.node->kind() == kOurConvAdd) {
      t.note = "not timed: its residual add runs inside it";
      out[l.name] = t;
      continue;
    }
    if (!index.count(l.node->input(0)) || !captured.count(index[l.node->input(0)])) {
      t.note = "not timed: input not captured";
      out[l.name] = t;
      continue;
    }
    const at::Tensor x = captured.at(index[l.node->input(0)]).contiguous(
        l.conv ? at::MemoryFormat::ChannelsLast : at::MemoryFormat::Contiguous);
    const at::Tensor w = tensors.at(l.weight_path);
    const at::Tensor b = l.bias_path ? tensors.at(*l.bias_path) : at::Tensor();
    const c10::IValue state = built.module.attr(root_attribute_name(kInt8Layer, l.name));
    out[l.name] = time_layer(l, op, x, w, b, state, timer);
  }
  return out;
}

// The target batch, from the first training samples (repeated when there are fewer).
std::vector<c10::IValue> target_batch(const TensorDataset& train, std::int64_t size) {
  std::vector<c10::IValue> batch = train.inputs(0, std::min<std::int64_t>(size, train.size()));
  for (auto& v : batch) {
    at::Tensor t = v.toTensor();
    while (t.size(0) < size) t = at::cat({t, t}).narrow(0, 0, std::min<std::int64_t>(2 * t.size(0), size));
    v = t;
  }
  return batch;
}

struct ModelTimes {
  double fp32_us = 0, all_us = 0;
  double chosen_us = 0;           // the int8 model kept, on the first pair's scale
  bool per_layer_faster = false;  // the per-layer model beat all int8
};

// The whole models at the batch: fp32, all int8, and (when there is one) the per-layer model.
ModelTimes time_models(const torch::jit::Module& input, const Built& all, const Built* per_layer,
                       const std::vector<c10::IValue>& batch, const TimingService& timer) {
  // fp32 as it would be deployed and measured: frozen and optimized for inference (timed as it
  // is when it cannot be frozen: an attribute forward assigns).
  torch::jit::Module fp32 = freeze_for_inference(input).module;
  torch::jit::Module all_int8 = all.module;
  at::NoGradGuard no_grad;
  ModelTimes t;
  const PairTiming whole = timer.compare(
      "model: fp32 vs all int8", [&] { fp32.forward(batch); }, [&] { all_int8.forward(batch); }, kModelSeconds);
  t.fp32_us = whole.a_us;
  t.all_us = whole.b_us;
  t.chosen_us = t.all_us;
  if (per_layer) {
    torch::jit::Module mixed = per_layer->module;
    const PairTiming again = timer.compare("model: all int8 vs per layer", [&] { all_int8.forward(batch); },
                                           [&] { mixed.forward(batch); }, kModelSeconds);
    const double all_again = again.a_us, per_layer_us = again.b_us;
    if (clearly_faster(per_layer_us, all_again)) {
      t.per_layer_faster = true;
      t.chosen_us = per_layer_us * t.all_us / all_again;  // on the first pair's scale
    }
  }
  return t;
}

// Each timed layer's report row says its times, or why it was not timed.
void note_timings(Choice& choice, const std::map<std::string, LayerTiming>& timings,
                  const std::set<std::string>& slower, std::int64_t batch) {
  for (auto& l : choice.built.layers) {
    const auto it = timings.find(l.layer);
    if (it == timings.end()) continue;
    const std::string line =
        !it->second.note.empty()
            ? format("; %s", it->second.note.c_str())
            : format("; at batch %lld: fp32 %.1f us, int8 %.1f us%s", (long long)batch, it->second.fp32_us,
                     it->second.int8_us, l.after == 8 ? "" : " (fp32: faster here)");
    if (l.after != 8 && slower.count(l.layer) && !choice.budget_notes.count(l.layer)) l.note = "fp32: int8 is slower here";
    l.note += line;
  }
}

void note_models(std::vector<std::string>& notes, std::int64_t batch, const std::set<std::string>& slower,
                 bool per_layer_kept, const ModelTimes& t) {
  notes.push_back(format(
      "per-layer=auto at batch %lld: %zu layer(s) faster in fp32%s; whole model fp32 %.3g ms, all int8 %.3g "
      "ms, kept %.3g ms (%.2fx)",
      (long long)batch, slower.size(),
      slower.empty() ? ""
      : (per_layer_kept ? " kept fp32"
                        : " alone, yet the whole model was not clearly faster with them fp32: all int8 kept"),
      t.fp32_us / 1e3, t.all_us / 1e3, t.chosen_us / 1e3, t.fp32_us / t.chosen_us));
  if (t.chosen_us > t.fp32_us)
    notes.push_back("**slower than fp32 at batch " + std::to_string(batch) +
                    "**: the int8 ops and their quantize/dequantize cost more than they save on this model "
                    "and machine; keep the fp32 model, or quantize for another batch");
}

}  // namespace

void choose_per_layer(const torch::jit::Module& input, const StaticQuantizeOptions& options,
                      const CalibratedValues& calibration, const TensorDataset& train, const TimingService& timer,
                      bool progress, Choice& choice, std::vector<std::string>& notes) {
  if (progress) std::fprintf(stderr, "quantize-static: timing each layer in fp32 and int8 at batch %lld\n",
                             (long long)options.batch);
  const std::vector<c10::IValue> batch = target_batch(train, options.batch);
  const auto timings = time_layers(input, choice.built, batch, timer);
  std::set<std::string> slower;
  for (const auto& [layer, t] : timings)
    if (t.note.empty() && clearly_faster(t.fp32_us, t.int8_us)) slower.insert(layer);
  std::set<std::string> trial = choice.keep;
  trial.insert(slower.begin(), slower.end());
  const Built per_layer = slower.empty() ? choice.built : build_int8(input, options, calibration, trial);
  // The whole models at the batch: fp32, all int8, and int8 where faster; the per-layer model kept
  // only when clearly faster.
  const ModelTimes times = time_models(input, choice.built, slower.empty() ? nullptr : &per_layer, batch, timer);
  if (times.per_layer_faster) {
    choice.built = per_layer;
    choice.keep = trial;
  }
  note_timings(choice, timings, slower, options.batch);
  note_models(notes, options.batch, slower, choice.built.module._ivalue() == per_layer.module._ivalue(), times);
}

}  // namespace joulecut::static_quant
#endif
