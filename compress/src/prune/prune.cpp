#include "joulecut/prune.h"

#include <ATen/ATen.h>
#include <fnmatch.h>

#include <cstdio>
#include <sstream>

#include "joulecut/error.h"
#include "joulecut/train_loop.h"

namespace joulecut {
namespace {

// ---- option text -----------------------------------------------------------------------

std::string number_text(double v) {
  char buffer[32];
  std::snprintf(buffer, sizeof buffer, "%.15g", v);
  return buffer;
}

// Reads one pass's options; unknown keys are an error naming the pass.
class OptionReader {
 public:
  OptionReader(std::string pass, const PassOptionMap& options) : pass_(std::move(pass)), options_(options) {}
  double number(const std::string& key, double fallback) {
    used_.push_back(key);
    const auto it = options_.find(key);
    if (it == options_.end()) return fallback;
    try {
      std::size_t used = 0;
      const double v = std::stod(it->second, &used);
      if (used != it->second.size()) throw std::invalid_argument(it->second);
      return v;
    } catch (const std::exception&) {
      throw UserError(pass_ + ": " + key + "='" + it->second + "' is not a number");
    }
  }
  int integer(const std::string& key, int fallback) {
    const double v = number(key, fallback);
    if (v != double(int(v))) throw UserError(pass_ + ": " + key + " must be an integer");
    return int(v);
  }
  std::string text(const std::string& key, const std::string& fallback) {
    used_.push_back(key);
    const auto it = options_.find(key);
    return it == options_.end() ? fallback : it->second;
  }
  bool flag(const std::string& key, bool fallback) {
    const std::string v = text(key, fallback ? "true" : "false");
    if (v == "true" || v == "1") return true;
    if (v == "false" || v == "0") return false;
    throw UserError(pass_ + ": " + key + "='" + v + "' must be true or false");
  }
  void finish() const {
    for (const auto& [key, value] : options_) {
      if (std::find(used_.begin(), used_.end(), key) != used_.end()) continue;
      std::string known;
      for (const auto& k : used_) known += (known.empty() ? "" : ", ") + k;
      throw UserError(pass_ + ": unknown option '" + key + "' (known: " + known + ")");
    }
  }

 private:
  std::string pass_;
  const PassOptionMap& options_;
  std::vector<std::string> used_;
};

LayerSelection read_selection(OptionReader& reader) {
  LayerSelection s;
  s.include = reader.text("include", "");
  s.exclude = reader.text("exclude", "");
  s.include_first_last = reader.flag("first-last", false);
  return s;
}

void append(std::vector<std::string>& out, const std::string& key, const std::string& value) {
  out.push_back(key + "=" + value);
}

void print_selection(std::vector<std::string>& out, const LayerSelection& s) {
  if (!s.include.empty()) append(out, "include", s.include);
  if (!s.exclude.empty()) append(out, "exclude", s.exclude);
  if (s.include_first_last) append(out, "first-last", "true");
}

// Fine-tuning options, shared by every pruning pass.
void read_finetune(OptionReader& r, int* epochs, double* lr) {
  *epochs = r.integer("finetune-epochs", *epochs);
  *lr = r.number("finetune-lr", *lr);
}

// Prints only what differs from the options struct's defaults (`defaults`).
template <typename Options>
void print_finetune(std::vector<std::string>& out, const Options& options, const Options& defaults) {
  if (options.finetune_epochs != defaults.finetune_epochs)
    append(out, "finetune-epochs", std::to_string(options.finetune_epochs));
  if (options.finetune_lr != defaults.finetune_lr) append(out, "finetune-lr", number_text(options.finetune_lr));
}

void check_finetune(const std::string& pass, int epochs) {
  if (epochs < 0) throw UserError(pass + ": finetune-epochs must be >= 0");
}

std::string join(const std::vector<std::string>& items) {
  std::string out;
  for (const auto& i : items) out += (out.empty() ? "" : ",") + i;
  return out;
}

// ---- layer selection --------------------------------------------------------------------

struct PrunableLayer {
  std::string name;  // "features.0"
  at::Tensor weight;
};

bool matches_any(const std::string& name, const std::string& patterns) {
  std::stringstream in(patterns);
  std::string pattern;
  while (std::getline(in, pattern, '|'))
    if (!pattern.empty() && fnmatch(pattern.c_str(), name.c_str(), 0) == 0) return true;
  return false;
}

std::vector<PrunableLayer> select_layers(const torch::jit::Module& module, const LayerSelection& selection,
                                         const std::string& pass) {
  std::vector<PrunableLayer> all;
  for (const auto& p : module.named_parameters(/*recurse=*/true)) {
    const std::string suffix = ".weight";
    if (p.value.dim() < 2 || p.name.size() <= suffix.size() ||
        p.name.compare(p.name.size() - suffix.size(), suffix.size(), suffix) != 0)
      continue;
    all.push_back({p.name.substr(0, p.name.size() - suffix.size()), p.value});
  }
  if (all.empty())
    throw UserError(pass + ": the model has no prunable layer (no Linear or Conv weights; a frozen model "
                           "keeps its weights as constants: prune before freezing)");
  for (const auto* patterns : {&selection.include, &selection.exclude}) {
    std::stringstream in(*patterns);
    std::string pattern;
    while (std::getline(in, pattern, '|')) {
      bool any = false;
      for (const auto& l : all) any = any || fnmatch(pattern.c_str(), l.name.c_str(), 0) == 0;
      if (!pattern.empty() && !any) {
        std::string names;
        for (const auto& l : all) names += (names.empty() ? "" : ", ") + l.name;
        throw UserError(pass + ": layer pattern '" + pattern + "' matches no layer (layers: " + names + ")");
      }
    }
  }
  std::vector<PrunableLayer> chosen;
  for (std::size_t i = 0; i < all.size(); ++i) {
    const bool edge = i == 0 || i + 1 == all.size();
    const bool included = selection.include.empty() ? (!edge || selection.include_first_last)
                                                    : matches_any(all[i].name, selection.include);
    if (included && !matches_any(all[i].name, selection.exclude)) chosen.push_back(all[i]);
  }
  if (chosen.empty())
    throw UserError(pass + ": no layer left to prune after include/exclude (the first and last layers are "
                           "excluded unless first-last=true)");
  return chosen;
}

// Clone, then transform: copies made without autograd history, so the copy's parameters are
// plain leaves and the input's are untouched.
torch::jit::Module clone_for_transform(const torch::jit::Module& input) {
  at::NoGradGuard no_grad;
  return input.clone();
}

double zero_fraction(const at::Tensor& w) { return (w == 0).sum().item<double>() / double(w.numel()); }

// The pruned weights stay zero while fine-tuning: masks are re-applied after every step.
void finetune_with_masks(torch::jit::Module& module, const std::vector<PrunableLayer>& layers, int epochs, double lr,
                         PassContext& context, PassReport& report, const std::string& pass) {
  if (epochs <= 0) return;
  if (!context.train) throw UserError(pass + ": finetune-epochs needs training data (--data)");
  std::vector<std::pair<at::Tensor, at::Tensor>> masks;
  for (const auto& l : layers) masks.emplace_back(l.weight, l.weight.ne(0).to(l.weight.scalar_type()));
  at::AutoGradMode grad_enabled(true);  // callers prune under no_grad
  LoopOptions loop;
  loop.epochs = epochs;
  loop.learning_rate = lr;
  loop.seed = context.seed;
  loop.progress = context.progress;
  const auto result = train_loop(module, *context.train, context.test, loop, [&] {
    at::NoGradGuard no_grad;
    for (auto& [weight, mask] : masks) weight.mul_(mask);
  });
  char note[160];
  std::snprintf(note, sizeof note, "fine-tuned %d epoch(s), lr %g, seed %llu, zeros kept by masks", epochs, lr,
                (unsigned long long)context.seed);
  report.notes.push_back(note);
  if (context.test) {
    std::snprintf(note, sizeof note, "test accuracy after fine-tuning %.2f%%", 100 * result.test_accuracy);
    report.notes.push_back(note);
  }
}

PassResult finish(torch::jit::Module module, PassReport report, const std::vector<PrunableLayer>& layers) {
  std::int64_t zeros = 0, total = 0;
  for (const auto& l : layers) {
    zeros += (l.weight == 0).sum().item<std::int64_t>();
    total += l.weight.numel();
  }
  char summary[200];
  std::snprintf(summary, sizeof summary, "%.2f%% of %lld weights in %zu layers are zero", 100.0 * double(zeros) / double(total),
                (long long)total, layers.size());
  report.summary = summary;
  report.notes.push_back(
      "no speedup expected: masked zeros (dense kernels still multiply them; a sparse runtime is needed)");
  module.eval();
  return {module, report};
}

}  // namespace

// ---- prune-magnitude ----------------------------------------------------------------------

MagnitudePrunePass::MagnitudePrunePass(MagnitudePruneOptions options) : options_(std::move(options)) {
  if (!(options_.sparsity >= 0 && options_.sparsity < 1))
    throw UserError("prune-magnitude: sparsity=" + number_text(options_.sparsity) + " must be in [0, 1)");
  if (options_.scope != "layer" && options_.scope != "global")
    throw UserError("prune-magnitude: scope='" + options_.scope + "' must be layer or global");
  check_finetune("prune-magnitude", options_.finetune_epochs);
}

MagnitudePruneOptions MagnitudePrunePass::parse(const PassOptionMap& map) {
  OptionReader r("prune-magnitude", map);
  MagnitudePruneOptions o;
  o.sparsity = r.number("sparsity", o.sparsity);
  o.scope = r.text("scope", o.scope);
  o.layers = read_selection(r);
  read_finetune(r, &o.finetune_epochs, &o.finetune_lr);
  r.finish();
  return o;
}

std::string MagnitudePrunePass::options_text() const {
  const MagnitudePruneOptions d;
  std::vector<std::string> out;
  if (options_.sparsity != d.sparsity) append(out, "sparsity", number_text(options_.sparsity));
  if (options_.scope != d.scope) append(out, "scope", options_.scope);
  print_selection(out, options_.layers);
  print_finetune(out, options_, d);
  return join(out);
}

PassResult MagnitudePrunePass::run(const torch::jit::Module& input, PassContext& context) const {
  torch::jit::Module module = clone_for_transform(input);
  const auto layers = select_layers(module, options_.layers, name());
  PassReport report;
  report.pass = text();
  at::NoGradGuard no_grad;
  double global_threshold = 0;
  if (options_.scope == "global") {
    std::vector<at::Tensor> magnitudes;
    for (const auto& l : layers) magnitudes.push_back(l.weight.abs().flatten());
    const at::Tensor all = at::cat(magnitudes);
    const auto k = std::int64_t(options_.sparsity * double(all.numel()));
    global_threshold = k > 0 ? std::get<0>(all.kthvalue(k)).item<double>() : -1;
  }
  for (const auto& l : layers) {
    const double before = zero_fraction(l.weight);
    const at::Tensor magnitude = l.weight.abs().flatten();
    // Rank by magnitude, ties broken by position (stable), so exactly k weights go.
    std::int64_t k = std::int64_t(options_.sparsity * double(magnitude.numel()));
    at::Tensor mask = at::ones_like(magnitude);
    if (options_.scope == "global") {
      mask = magnitude.gt(global_threshold).to(magnitude.scalar_type());
    } else if (k > 0) {
      const at::Tensor order = std::get<1>(magnitude.sort(/*stable=*/true, 0, false));
      mask.index_fill_(0, order.narrow(0, 0, k), 0);
    }
    l.weight.mul_(mask.view_as(l.weight));
    report.layers.push_back({l.name, "sparsity", before, zero_fraction(l.weight), ""});
  }
  finetune_with_masks(module, layers, options_.finetune_epochs, options_.finetune_lr, context, report, name());
  return finish(module, report, layers);
}

// ---- prune-nm ---------------------------------------------------------------------------------

NMPrunePass::NMPrunePass(NMPruneOptions options) : options_(std::move(options)) {
  if (options_.m <= 0 || options_.n <= 0 || options_.n >= options_.m)
    throw UserError("prune-nm: n=" + std::to_string(options_.n) + " m=" + std::to_string(options_.m) +
                    ": need 0 < n < m (e.g. n=2,m=4)");
  check_finetune("prune-nm", options_.finetune_epochs);
}

NMPruneOptions NMPrunePass::parse(const PassOptionMap& map) {
  OptionReader r("prune-nm", map);
  NMPruneOptions o;
  o.n = r.integer("n", o.n);
  o.m = r.integer("m", o.m);
  o.layers = read_selection(r);
  read_finetune(r, &o.finetune_epochs, &o.finetune_lr);
  r.finish();
  return o;
}

std::string NMPrunePass::options_text() const {
  const NMPruneOptions d;
  std::vector<std::string> out;
  if (options_.n != d.n) append(out, "n", std::to_string(options_.n));
  if (options_.m != d.m) append(out, "m", std::to_string(options_.m));
  print_selection(out, options_.layers);
  print_finetune(out, options_, d);
  return join(out);
}

PassResult NMPrunePass::run(const torch::jit::Module& input, PassContext& context) const {
  torch::jit::Module module = clone_for_transform(input);
  auto layers = select_layers(module, options_.layers, name());
  PassReport report;
  report.pass = text();
  at::NoGradGuard no_grad;
  std::vector<PrunableLayer> pruned;
  for (const auto& l : layers) {
    const double before = zero_fraction(l.weight);
    // Input dimension: everything but the output channel ([out, in] or [out, in, kh, kw]).
    const std::int64_t in_flat = l.weight.numel() / l.weight.size(0);
    if (in_flat % options_.m != 0) {
      report.layers.push_back({l.name, "sparsity", before, before,
                               "skipped: " + std::to_string(in_flat) + " inputs per output is not a multiple of m=" +
                                   std::to_string(options_.m)});
      continue;
    }
    // Groups of M consecutive inputs: keep the N largest magnitudes (ties: lower index).
    const at::Tensor groups = l.weight.reshape({-1, options_.m});
    const at::Tensor order = std::get<1>(groups.abs().sort(/*stable=*/true, 1, /*descending=*/true));
    at::Tensor mask = at::zeros_like(groups);
    mask.scatter_(1, order.narrow(1, 0, options_.n), 1.0);
    l.weight.mul_(mask.view_as(l.weight));
    report.layers.push_back({l.name, "sparsity", before, zero_fraction(l.weight), ""});
    pruned.push_back(l);
  }
  if (pruned.empty())
    throw UserError("prune-nm: no selected layer has an input size divisible by m=" + std::to_string(options_.m));
  finetune_with_masks(module, pruned, options_.finetune_epochs, options_.finetune_lr, context, report, name());
  return finish(module, report, pruned);
}

}  // namespace joulecut
