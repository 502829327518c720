// quantize-static's activation smoothing (SmoothQuant, Xiao et al. 2023): a transformer's
// LayerNorm outputs carry a few outlier channels, and one per-tensor uint8 scale spent on them
// leaves the other channels a handful of levels. Each LayerNorm output read by int8-able Linear
// layers is divided by a per-channel factor s (one multiply, on the int8 path only: the residual
// add still reads it unscaled), and those layers' weight columns are multiplied by s, so the fp32
// model computes the same. s_j = max|X_j|^alpha / max|W_j|^(1 - alpha), alpha chosen per
// LayerNorm output among a grid by the simulated int8 error of its layers on calibration rows;
// kept only where it clearly beats no smoothing.
#include <ATen/ATen.h>
#include <torch/csrc/jit/ir/ir.h>

#include <algorithm>
#include <cmath>
#include <map>
#include <optional>
#include <set>
#include <string>
#include <vector>

#include "graph/layer_selection.h"
#include "graph/module_graph.h"
#include "graph/quantized_engine.h"
#include "graph/root_attributes.h"
#include "joulecut/error.h"
#include "joulecut/fidelity.h"
#include "joulecut/model.h"
#include "joulecut/progress.h"
#include "joulecut/text.h"
#include "quantize/static_internal.h"

namespace joulecut::static_quant {
using namespace graph;
namespace {

constexpr std::int64_t kSearchRows = 2048;                        // calibration rows the alpha search runs on
constexpr double kClearGain = 0.5;  // smoothing kept where it at least halves the simulated error

// One LayerNorm output and the int8-able Linear layers that read it.
struct SmoothGroup {
  Value* source = nullptr;
  std::size_t index = 0;  // numbered as numbered_values does
  std::vector<const Layer*> layers;
  at::Tensor x_absmax;  // per channel, over every calibration sample
  at::Tensor rows;      // [rows, channels], the first calibration rows
  at::Tensor scale;     // s, when smoothing pays
  double alpha = 0, error = 0, unsmoothed_error = 0;
};

std::vector<SmoothGroup> layer_norm_groups(Graph& graph, const std::vector<Layer>& layers,
                                           const StaticQuantizeOptions& options) {
  const auto values = numbered_values(graph);
  std::map<Value*, std::size_t> index;
  for (std::size_t i = 0; i < values.size(); ++i) index[values[i]] = i;
  std::map<Value*, SmoothGroup> groups;
  for (const auto& l : layers) {
    Value* x = l.node->input(0);
    if (l.conv || !l.why_fp32.empty() || l.node->owningBlock() != graph.block() || !index.count(x) ||
        x->node()->kind() != c10::aten::layer_norm || matches_any(l.name, options.exclude))
      continue;
    SmoothGroup& g = groups[x];
    g.source = x;
    g.index = index[x];
    g.layers.push_back(&l);
  }
  std::vector<SmoothGroup> out;
  for (auto& [value, group] : groups) out.push_back(group);
  std::sort(out.begin(), out.end(), [](const SmoothGroup& a, const SmoothGroup& b) { return a.index < b.index; });
  return out;
}

// Each group's per-channel |max| over the calibration samples, and its first rows.
void observe_groups(const torch::jit::Module& input, std::vector<SmoothGroup>& groups, const TensorDataset& calibration,
                    const StaticQuantizeOptions& options, bool progress) {
  std::set<std::size_t> wanted;
  for (const auto& g : groups) wanted.insert(g.index);
  std::vector<std::size_t> order;
  torch::jit::Module probe = probe_module(input, wanted, order);
  std::map<std::size_t, SmoothGroup*> by_index;
  for (auto& g : groups) by_index[g.index] = &g;
  const std::int64_t samples = std::min<std::int64_t>(options.samples, calibration.size()), batch = 16;
  ProgressBar bar("smoothing: LayerNorm outputs observed", samples, progress);
  at::NoGradGuard no_grad;
  auto method = probe.get_method("joulecut_probe");
  for (std::int64_t start = 0; start < samples; start += batch) {
    const std::int64_t count = std::min(batch, samples - start);
    const auto elements = method(calibration.inputs(start, count)).toTuple()->elements();
    for (std::size_t k = 0; k < elements.size(); ++k) {
      SmoothGroup& g = *by_index.at(order[k]);
      const at::Tensor x = elements[k].toTensor().detach().to(at::kFloat);
      const at::Tensor flat = x.reshape({-1, x.size(-1)});
      const at::Tensor absmax = flat.abs().amax(0);
      g.x_absmax = g.x_absmax.defined() ? at::maximum(g.x_absmax, absmax) : absmax;
      const std::int64_t room = kSearchRows - (g.rows.defined() ? g.rows.size(0) : 0);
      if (room > 0) {
        const at::Tensor more = flat.narrow(0, 0, std::min(room, flat.size(0)));
        g.rows = g.rows.defined() ? at::cat({g.rows, more}) : more.clone();
      }
    }
    bar.update(start + count, std::to_string(start + count) + " samples");
  }
  bar.finish(std::to_string(groups.size()) + " LayerNorm outputs");
}

// The relative squared error of the group's layers with the input uint8 per tensor (min/max; int8
// symmetric for backend=cuda) and the weights int8 per output channel, after smoothing by `s`.
double simulated_error(const at::Tensor& x, const at::Tensor& w, const at::Tensor& s, const at::Tensor& reference,
                       bool symmetric) {
  const at::Tensor xs = x / s;
  // The input's range as the rewrite computes it: affine_uint8 (observers.h), or backend=cuda's
  // symmetric int8, its bound / 127.
  const QuantRange range = affine_uint8(xs.min().item<float>(), xs.max().item<float>());
  const double bound = std::max(-double(range.min), double(range.max));
  const double x_scale = symmetric ? std::max(bound, 1e-12) / 127 : double(range.scale);
  const double zero = symmetric ? 127 : double(range.zero_point);
  const at::Tensor xq = ((xs / x_scale).round() + zero).clamp(0, symmetric ? 254 : 255).sub(zero).mul(x_scale);
  // The weight as the int8 layers hold it: int8 per output channel, symmetric.
  const at::Tensor wq = quantize_weight_per_channel(w * s).dequantize();
  return (at::matmul(xq, wq.t()) - reference).pow(2).sum().item<double>() /
         std::max(reference.pow(2).sum().item<double>(), 1e-30);
}

// Chooses alpha for one group (or none) by the simulated error of its layers.
void choose_alpha(SmoothGroup& g, const std::map<std::string, at::Tensor>& tensors, bool symmetric) {
  std::vector<at::Tensor> weights;
  for (const Layer* l : g.layers) weights.push_back(tensors.at(l->weight_path).detach().to(at::kFloat));
  const at::Tensor w = at::cat(weights);
  const at::Tensor w_absmax = w.abs().amax(0);
  const at::Tensor reference = at::matmul(g.rows, w.t());
  const at::Tensor ones = at::ones_like(g.x_absmax);
  g.unsmoothed_error = g.error = simulated_error(g.rows, w, ones, reference, symmetric);
  const at::Tensor usable = (g.x_absmax > 0) & (w_absmax > 0);
  for (double alpha : {0.4, 0.5, 0.6, 0.7, 0.8, 0.9}) {
    at::Tensor s = (g.x_absmax.pow(alpha) / w_absmax.pow(1 - alpha)).clamp(1e-5, 1e5);
    s = at::where(usable, s, ones);
    const double error = simulated_error(g.rows, w, s, reference, symmetric);
    if (error < g.error) {
      g.error = error;
      g.alpha = alpha;
      g.scale = s;
    }
  }
  if (g.error >= kClearGain * g.unsmoothed_error) g.scale = at::Tensor();
}

// Scales the chosen groups in `module` (a clone): x / s before the layers, W * s in them.
void apply_smoothing(torch::jit::Module& module, const std::shared_ptr<Graph>& graph,
                     std::map<std::string, at::Tensor>& tensors, const std::vector<SmoothGroup>& groups) {
  at::NoGradGuard no_grad;
  Value* self = graph->inputs()[0];
  for (const auto& g : groups) {
    if (!g.scale.defined()) continue;
    const std::string name = root_attribute_name(kSmoothing, std::to_string(g.index));
    const at::Tensor weight0 = tensors.at(g.layers.front()->weight_path);
    module.register_buffer(name, (1 / g.scale).to(weight0.scalar_type()).contiguous());
    torch::jit::WithInsertPoint guard(g.source->node()->next());
    Value* scaled = graph->insert(c10::aten::mul, {g.source, graph->insertGetAttr(self, name)});
    for (const Layer* l : g.layers) {
      l->node->replaceInput(0, scaled);
      at::Tensor weight = tensors.at(l->weight_path);
      weight.mul_(g.scale.to(weight.scalar_type()));
    }
  }
  replace_forward(module, graph);
}

std::string smoothing_note(const std::vector<SmoothGroup>& groups, int smoothed_layers, double cosine) {
  std::vector<std::string> alphas;
  double kept = 0;
  int smoothed = 0;
  for (const auto& g : groups) {
    if (!g.scale.defined()) continue;
    ++smoothed;
    kept += g.error / std::max(g.unsmoothed_error, 1e-30);
    alphas.push_back(format("%.1f", g.alpha));
  }
  std::sort(alphas.begin(), alphas.end());
  alphas.erase(std::unique(alphas.begin(), alphas.end()), alphas.end());
  return format("smoothing (SmoothQuant): %d of %zu LayerNorm outputs read by Linear layers scaled per channel into "
                "%d layers' weights (alpha %s, chosen per output), their simulated int8 error %.0f%% of unsmoothed "
                "on average; the smoothed fp32 model's cosine to the original %.6f",
                smoothed, groups.size(), smoothed_layers, join(alphas, ", ").c_str(), 100 * kept / smoothed, cosine);
}

// Layers whose weight tensor another parameter shares (a tied embedding) are left out: scaling
// it would change the other reader too.
void drop_tied_weights(std::vector<SmoothGroup>& groups, const std::map<std::string, at::Tensor>& tensors) {
  std::map<const void*, int> readers;
  for (const auto& [path, tensor] : tensors) ++readers[tensor.data_ptr()];
  for (auto& g : groups)
    g.layers.erase(std::remove_if(g.layers.begin(), g.layers.end(),
                                  [&](const Layer* l) { return readers[tensors.at(l->weight_path).data_ptr()] > 1; }),
                   g.layers.end());
  groups.erase(std::remove_if(groups.begin(), groups.end(), [](const SmoothGroup& g) { return g.layers.empty(); }),
               groups.end());
}

Smoothing smooth(const torch::jit::Module& input, const StaticQuantizeOptions& options, const TensorDataset& calibration,
                 bool progress) {
  Smoothing result{input, ""};
  torch::jit::Module smoothed = clone_for_transform(input);
  // In eval mode, as probe_module numbers values (training branches specialized away).
  if (smoothed.hasattr("training")) smoothed.eval();
  auto graph = inlined_forward(smoothed, StaticQuantizePass::kName, GraphUse::inference);
  const auto layers = find_layers(*graph, smoothed, StaticQuantizePass::kName, options.backend == "onednn");
  auto groups = layer_norm_groups(*graph, layers, options);
  std::map<std::string, at::Tensor> tensors;
  for (const auto& p : smoothed.named_parameters(true)) tensors[p.name] = p.value;
  drop_tied_weights(groups, tensors);
  if (groups.empty()) return result;  // no LayerNorm feeds a Linear layer: nothing to smooth
  observe_groups(smoothed, groups, calibration, options, progress);
  int smoothed_layers = 0;
  for (auto& g : groups) {
    choose_alpha(g, tensors, options.backend == "cuda");
    if (g.scale.defined()) smoothed_layers += int(g.layers.size());
  }
  if (smoothed_layers == 0) {
    result.note = format("smoothing: none of %zu LayerNorm outputs read by Linear layers gains clearly from it "
                         "(simulated int8 error)", groups.size());
    return result;
  }
  apply_smoothing(smoothed, graph, tensors, groups);
  // The smoothed fp32 model computes what the original does: checked, never assumed.
  torch::jit::Module original = input.clone();
  const Fidelity same = fidelity(original, smoothed, slice(calibration, 0, std::min<std::int64_t>(16, calibration.size())));
  if (same.cosine.mean < 0.99999 || same.snr_db < 50) {
    result.note = format("smoothing: not applied: the smoothed fp32 model differs from the original (cosine %.6f, "
                         "SNR %.1f dB)", same.cosine.mean, same.snr_db);
    return result;
  }
  result.module = smoothed;
  result.note = smoothing_note(groups, smoothed_layers, same.cosine.mean) + format(", SNR %.0f dB", same.snr_db);
  return result;
}

}  // namespace

Smoothing smooth_activations(const torch::jit::Module& input, const StaticQuantizeOptions& options,
                             const TensorDataset& calibration, bool progress) {
  if (options.smooth == "off") return {input, ""};
  // An optional step: what stops it is said, and int8 goes on without it.
  try {
    return smooth(input, options, calibration, progress);
  } catch (const std::exception& e) {
    return {input, "smoothing: not applied: " + torch_error_summary(e)};
  }
}

}  // namespace joulecut::static_quant
