// convert-precision: weights and activations in bfloat16 or float16, chosen layers kept fp32.
#include <ATen/ATen.h>
#include <torch/csrc/jit/ir/ir.h>
#include <torch/csrc/jit/runtime/graph_iterator.h>
#include <torch/csrc/jit/passes/dead_code_elimination.h>

#include <algorithm>
#include <cstdio>
#include <fstream>
#include <map>
#include <set>
#include <string>
#include <vector>

#include "joulecut/error.h"
#include "joulecut/model.h"
#include "joulecut/quantize.h"
#include "joulecut/text.h"
#include "graph/layer_selection.h"
#include "graph/module_graph.h"

namespace joulecut {
using namespace graph;
using torch::jit::Node;
using torch::jit::Value;

namespace {

// The CPU's own word on native fp16 arithmetic (AVX512-FP16); Zen 4 has BF16 but not FP16.
bool cpu_has_native_fp16() {
  std::ifstream in("/proc/cpuinfo");
  std::string line;
  while (std::getline(in, line))
    if (line.rfind("flags", 0) == 0) return line.find(" avx512_fp16") != std::string::npos;
  return false;
}

// Inserts `v.to(dtype)` after v's definition (or at the graph's start for an input) and makes
// `user` read it instead of v.
Value* cast_for(Value* v, Node* user, at::ScalarType dtype) {
  auto& graph = *v->owningGraph();
  torch::jit::WithInsertPoint guard(user);
  Value* cast = graph.insert(c10::aten::to, {v, dtype, false, false});
  user->replaceInputWith(v, cast);
  return cast;
}

bool is_float_tensor(const Value* v) {
  const auto type = v->type()->cast<c10::TensorType>();
  return type && (!type->scalarType() || at::isFloatingType(*type->scalarType()));
}

// A Conv2d/Linear layer whose weight the module holds.
struct PrecisionLayer {
  Node* node;
  std::string name, weight;
};

std::vector<PrecisionLayer> precision_layers(const std::shared_ptr<torch::jit::Graph>& graph, Value* self) {
  std::vector<PrecisionLayer> layers;
  for (const auto kind : {c10::aten::conv2d, c10::aten::_convolution, c10::aten::linear})
    for (Node* n : nodes_of_kind(graph->block(), kind)) {
      const auto weight = attribute_path(n->input(1), self);
      if (weight) layers.push_back({n, weight->substr(0, weight->rfind('.')), *weight});
    }
  return layers;
}

// Floating parameters and buffers go down, but those of fp32 layers. Returns how many did.
std::int64_t convert_tensors(torch::jit::Module& module, const std::set<std::string>& kept_prefixes,
                             at::ScalarType low) {
  std::int64_t converted = 0;
  auto convert = [&](const std::string& path, const at::Tensor& t) {
    for (const auto& prefix : kept_prefixes)
      if (path.rfind(prefix, 0) == 0) return;
    if (!at::isFloatingType(t.scalar_type()) || t.scalar_type() == low) return;
    auto [owner, attribute] = owner_of(module, path);
    owner.setattr(attribute, t.to(low));
    ++converted;
  };
  for (const auto& p : module.named_parameters(true)) convert(p.name, p.value);
  for (const auto& b : module.named_buffers(true)) convert(b.name, b.value);
  return converted;
}

// `v.to(dtype)` when v holds floating-point numbers, else v itself, decided when the model runs:
// token ids, masks and indices keep their integer type (a traced graph's inputs carry no dtype).
Value* cast_if_floating(torch::jit::Graph& graph, Value* v, at::ScalarType dtype) {
  Value* floating = graph.insert(c10::aten::is_floating_point, {v});
  Node* branch = graph.insertNode(graph.create(c10::prim::If, {floating}, 1));
  branch->output()->setType(v->type());
  torch::jit::Block* cast = branch->addBlock();
  {
    torch::jit::WithInsertPoint inside(cast);
    cast->registerOutput(graph.insert(c10::aten::to, {v, dtype, false, false}));
  }
  branch->addBlock()->registerOutput(v);
  return branch->output();
}

// Activations: down where the model reads its floating-point inputs, up where it returns.
void cast_inputs_and_outputs(const std::shared_ptr<torch::jit::Graph>& graph, Value* self, at::ScalarType low) {
  for (Value* in : graph->inputs()) {
    if (in == self || !is_float_tensor(in)) continue;
    const std::vector<torch::jit::Use> uses = in->uses();
    if (uses.empty()) continue;
    torch::jit::WithInsertPoint guard(graph->block()->nodes().front());
    Value* cast = cast_if_floating(*graph, in, low);
    for (const auto& use : uses) use.user->replaceInput(use.offset, cast);
  }
  Node* ret = graph->return_node();
  auto cast_up = [&](Value* out, Node* user) {
    torch::jit::WithInsertPoint guard(user);
    user->replaceInputWith(out, cast_if_floating(*graph, out, at::kFloat));
  };
  for (std::size_t i = 0; i < ret->inputs().size(); ++i) {
    Value* out = ret->input(i);
    if (out->node()->kind() == c10::prim::TupleConstruct) {
      Node* tuple = out->node();
      for (Value* item : tuple->inputs())
        if (is_float_tensor(item)) cast_up(item, tuple);
    } else if (is_float_tensor(out)) {
      cast_up(out, ret);
    }
  }
}

// The model's own float32 tensors (a traced attention mask: `mask.to(float32)`, or
// `zeros(..., dtype=float32)` then filled with float32's minimum) go to the lower type, or they
// would meet lower-precision activations in one op. Index ranges (arange) stay: bf16 counts
// exactly only to 256.
int lower_float32_tensors(const std::shared_ptr<torch::jit::Graph>& graph, at::ScalarType low) {
  int lowered = 0;
  std::shared_ptr<torch::jit::Graph> walked = graph;
  for (torch::jit::DepthFirstGraphNodeIterator it(walked); Node* n = it.next();) {
    const c10::FunctionSchema* schema = n->maybeSchema();
    if (!schema || n->kind() == c10::aten::arange || n->kind() == c10::aten::linspace) continue;
    const auto& arguments = schema->arguments();
    for (std::size_t i = 0; i < arguments.size() && i < n->inputs().size(); ++i) {
      Value* dtype = n->input(i);
      if (arguments[i].name() != "dtype" || dtype->node()->kind() != c10::prim::Constant) continue;
      const auto value = torch::jit::toIValue(dtype);
      if (!value || !value->isInt() || value->toInt() != std::int64_t(at::kFloat)) continue;
      torch::jit::WithInsertPoint guard(n);
      n->replaceInput(i, graph->insertConstant(std::int64_t(low)));
      ++lowered;
    }
  }
  return lowered;
}

// An fp32 layer casts its input up and its output back down.
void keep_layer_fp32(const std::shared_ptr<torch::jit::Graph>& graph, Node* layer, at::ScalarType low) {
  cast_for(layer->input(0), layer, at::kFloat);
  Value* out = layer->output();
  torch::jit::WithInsertPoint guard(layer->next());
  Value* down = graph->insert(c10::aten::to, {out, low, false, false});
  out->replaceAllUsesAfterNodeWith(down->node(), down);
}

// The model must run as converted (ops that make float32 tensors of their own can meet
// lower-precision weights): checked on two test images when the pipeline has them.
void check_runs(torch::jit::Module& module, const PassContext& context, const std::string& dtype, PassReport& report) {
  if (context.test && context.test->size() > 0) {
    try {
      module.forward(context.test->inputs(0, std::min<std::int64_t>(2, context.test->size())));
    } catch (const std::exception& e) {
      throw pass_error(ConvertPrecisionPass::kName, "the model does not run in " + dtype + " (" +
                                                        torch_error_summary(e) +
                                                        "); keep the layer involved in fp32 with exclude=");
    }
  } else {
    report.notes.push_back("not run on data here (no test set in the pipeline): the measurement runs it");
  }
}

std::string precision_summary(const PassReport& report, const std::string& dtype, std::int64_t converted) {
  std::int64_t total = 0, low_layers = 0;
  for (const auto& l : report.layers) {
    ++total;
    low_layers += l.after == 16;
  }
  return format("%lld of %lld Conv2d/Linear layer(s) in %s, %lld tensor(s) converted; input and output stay float32",
                (long long)low_layers, (long long)total, dtype.c_str(), (long long)converted);
}

}  // namespace

ConvertPrecisionPass::ConvertPrecisionPass(ConvertPrecisionOptions options) : options_(std::move(options)) {
  options_table().check(options_);
}

const OptionTable<ConvertPrecisionOptions>& ConvertPrecisionPass::options_table() {
  using O = ConvertPrecisionOptions;
  static const OptionTable<O> table(ConvertPrecisionPass::kName,
      {choice_option("dtype", "bf16 (CPUs with AVX-512 BF16, GPUs) or fp16 (GPUs)", &O::dtype, {{"bf16", ""}, {"fp16", ""}}),
       option("exclude", "keep Conv2d/Linear layers matching these '|'-separated globs in fp32", &O::exclude)});
  return table;
}

ConvertPrecisionOptions ConvertPrecisionPass::parse(const PassOptionMap& map) { return options_table().parse(map); }

std::string ConvertPrecisionPass::options_text() const { return options_table().print(options_); }

PassResult ConvertPrecisionPass::run(const torch::jit::Module& input, PassContext& context) const {
  const at::ScalarType low = options_.dtype == "bf16" ? at::kBFloat16 : at::kHalf;
  torch::jit::Module module = clone_for_transform(input);
  auto graph = inlined_forward(module, name(), GraphUse::inference);
  Value* self = graph->inputs()[0];

  // The layers, and which stay fp32.
  const std::vector<PrecisionLayer> layers = precision_layers(graph, self);
  if (layers.empty())
    throw pass_error(ConvertPrecisionPass::kName, "the model has no Conv2d/Linear layer with its weight in the module");
  std::vector<std::string> names;
  for (const auto& l : layers) names.push_back(l.name);
  check_patterns({"", options_.exclude, false}, names, name());
  std::set<std::string> kept_prefixes;
  for (const auto& l : layers)
    if (matches_any(l.name, options_.exclude)) kept_prefixes.insert(l.name + ".");

  PassReport report;
  report.pass = text();
  at::NoGradGuard no_grad;
  const std::int64_t converted = convert_tensors(module, kept_prefixes, low);
  const int lowered = lower_float32_tensors(graph, low);
  cast_inputs_and_outputs(graph, self, low);
  for (const auto& l : layers) {
    const bool kept = matches_any(l.name, options_.exclude);
    if (kept) keep_layer_fp32(graph, l.node, low);
    report.layers.push_back({l.name, "bits", 32, kept ? 32.0 : 16.0,
                             kept ? "kept fp32 (exclude)" : options_.dtype});
  }
  torch::jit::EliminateDeadCode(graph);
  replace_forward(module, graph);
  module.eval();

  check_runs(module, context, options_.dtype, report);
  report.summary = precision_summary(report, options_.dtype, converted);
  report.notes.push_back("integer and bool inputs (token ids, masks) and what reads them keep their type; floating-point "
                         "inputs go to " + options_.dtype + " as the model runs");
  if (lowered > 0)
    report.notes.push_back(format("%d float32 tensor(s) the model's own graph makes (e.g. an attention mask) now made in %s",
                                  lowered, options_.dtype.c_str()));
  if (low == at::kHalf && !cpu_has_native_fp16())
    report.notes.push_back(
        "this CPU has no native fp16 arithmetic (no AVX512-FP16): fp16 runs emulated here, slower than "
        "fp32; it is meant for GPUs (measure it on a CUDA device)");
  if (low == at::kBFloat16)
    report.notes.push_back("bf16 keeps fp32's exponent range (8 bits of mantissa): LayerNorm/softmax-heavy models may "
                           "want some layers kept fp32 (exclude=)");
  return {module, report};
}

}  // namespace joulecut
