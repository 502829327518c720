#include "graph/attention.h"

#include <torch/csrc/jit/api/function_impl.h>
#include <torch/csrc/jit/frontend/resolver.h>
#include <torch/csrc/jit/passes/inliner.h>
#include <torch/csrc/jit/passes/lower_tuples.h>

#include <mutex>
#include <optional>
#include <string>
#include <vector>

#include "joulecut/error.h"
#include "graph/layer_selection.h"
#include "graph/module_graph.h"

namespace joulecut::attention {
namespace {

using torch::jit::Graph;
using torch::jit::Node;
using torch::jit::Value;

// PyTorch's own arithmetic, from nn.functional.multi_head_attention_forward and
// nn.TransformerEncoderLayer, in the evaluation-mode case: no dropout, no weights returned.
// Bool masks mark the positions to ignore; float masks are added to the scores.
const char* const kSource = R"JIT(
def attention(x: Tensor, in_w: Tensor, in_b: Optional[Tensor], out_w: Tensor, out_b: Optional[Tensor], d: int,
              batch_first: bool, key_padding_mask: Optional[Tensor], attn_mask: Optional[Tensor]) -> Tensor:
    if not batch_first:
        x = x.transpose(0, 1)
    b = x.size(0)
    n = x.size(1)
    qkv = torch.linear(x, in_w, in_b)
    inner = qkv.size(2) // 3
    heads = inner // d
    qkv = qkv.reshape([b, n, 3, heads, d]).permute([2, 0, 3, 1, 4])
    q = qkv[0] / (float(d) ** 0.5)
    scores = torch.matmul(q, qkv[1].transpose(-2, -1))
    if attn_mask is not None:
        mask = attn_mask
        if mask.dim() == 3:
            mask = mask.view([b, heads, mask.size(1), mask.size(2)])
        if not mask.is_floating_point():
            scores = scores.masked_fill(mask, float("-inf"))
        else:
            scores = scores + mask
    if key_padding_mask is not None:
        padding = key_padding_mask.view([b, 1, 1, key_padding_mask.size(1)])
        if not padding.is_floating_point():
            scores = scores.masked_fill(padding, float("-inf"))
        else:
            scores = scores + padding
    out = torch.matmul(torch.softmax(scores, -1), qkv[2])
    out = torch.linear(out.transpose(1, 2).reshape([b, n, inner]), out_w, out_b)
    if not batch_first:
        out = out.transpose(0, 1)
    return out

def feed_forward(x: Tensor, w1: Tensor, b1: Optional[Tensor], w2: Tensor, b2: Optional[Tensor], gelu: bool) -> Tensor:
    h = torch.linear(x, w1, b1)
    if gelu:
        h = torch.gelu(h)
    else:
        h = torch.relu(h)
    return torch.linear(h, w2, b2)

def encoder_layer(src: Tensor, src_mask: Optional[Tensor], key_padding_mask: Optional[Tensor], in_w: Tensor,
                  in_b: Optional[Tensor], out_w: Tensor, out_b: Optional[Tensor], d: int, batch_first: bool,
                  n1_w: Optional[Tensor], n1_b: Optional[Tensor], n1_eps: float, n2_w: Optional[Tensor],
                  n2_b: Optional[Tensor], n2_eps: float, w1: Tensor, b1: Optional[Tensor], w2: Tensor,
                  b2: Optional[Tensor], norm_first: bool, gelu: bool) -> Tensor:
    x = src
    e = x.size(2)
    if norm_first:
        x = x + attention(torch.layer_norm(x, [e], n1_w, n1_b, n1_eps), in_w, in_b, out_w, out_b, d, batch_first,
                          key_padding_mask, src_mask)
        x = x + feed_forward(torch.layer_norm(x, [e], n2_w, n2_b, n2_eps), w1, b1, w2, b2, gelu)
    else:
        x = torch.layer_norm(x + attention(x, in_w, in_b, out_w, out_b, d, batch_first, key_padding_mask, src_mask),
                             [e], n1_w, n1_b, n1_eps)
        x = torch.layer_norm(x + feed_forward(x, w1, b1, w2, b2, gelu), [e], n2_w, n2_b, n2_eps)
    return x
)JIT";

// The compiled functions' graphs, inlined: inserted at each call they replace.
struct Canonical {
  std::shared_ptr<Graph> attention, encoder_layer;
};

const Canonical& canonical() {
  static const Canonical graphs = [] {
    auto unit = std::make_shared<torch::jit::CompilationUnit>();
    unit->define(c10::nullopt, kSource, torch::jit::nativeResolver(), nullptr);
    auto inlined = [&](const char* name) {
      auto graph = torch::jit::toGraphFunction(unit->get_function(name)).graph()->copy();
      torch::jit::Inline(*graph);
      return graph;
    };
    return Canonical{inlined("attention"), inlined("encoder_layer")};
  }();
  return graphs;
}

// The PyTorch class a module value's type is, "" for others: the qualified name must be
// torch.nn's ("__torch__.torch.nn.modules.activation.___torch_mangle_7.MultiheadAttention"),
// so a user's class of the same name is left alone.
std::string torch_nn_class(const Value* v) {
  const auto type = v->type()->cast<c10::ClassType>();
  if (!type || !type->name()) return "";
  const std::string qualified = type->name()->qualifiedName();
  if (qualified.rfind("__torch__.torch.nn.modules.", 0) != 0) return "";
  return type->name()->name();
}

bool constant_false(Value* v) {
  const auto constant = torch::jit::toIValue(v);
  return constant && constant->isBool() && !constant->toBool();
}

bool is_none(Value* v) { return v->type()->kind() == c10::TypeKind::NoneType; }

// A module attribute read at the call's insertion point: a tensor, or a None constant.
Value* read(Graph& graph, Value* module_value, const torch::jit::Module& module, const std::string& name) {
  if (module.attr(name).isNone()) return graph.insertConstant(c10::IValue());
  return graph.insertGetAttr(module_value, name);
}

// What a traced module keeps of the settings: the constants of the fused kernel its trace
// recorded (tracing keeps no int or bool attributes). nullptr when the trace holds none: it then
// recorded PyTorch's plain ops, which need no rewrite.
Node* fused_kernel(Node* call, const char* kernel) {
  const auto type = call->input(0)->type()->expect<c10::ClassType>();
  torch::jit::Function* method = type->findMethod(call->s(c10::attr::name));
  if (!method) return nullptr;
  const c10::Symbol symbol = c10::Symbol::fromQualString(kernel);
  for (Node* n : graph::all_nodes(torch::jit::toGraphFunction(*method).graph()->block()))
    if (n->kind() == symbol) return n;
  return nullptr;
}

// The head count a trace of F.multi_head_attention_forward recorded: `head_dim = embed_dim //
// num_heads` is the one floor division by a constant in it (aten::div(x, num_heads, "trunc")).
std::optional<std::int64_t> traced_head_count(Node* call) {
  const auto type = call->input(0)->type()->expect<c10::ClassType>();
  torch::jit::Function* method = type->findMethod(call->s(c10::attr::name));
  if (!method) return std::nullopt;
  std::optional<std::int64_t> heads;
  for (Node* n : graph::all_nodes(torch::jit::toGraphFunction(*method).graph()->block())) {
    if (n->kind() != c10::aten::div || n->inputs().size() != 3) continue;
    const auto divisor = torch::jit::toIValue(n->input(1)), mode = torch::jit::toIValue(n->input(2));
    if (!divisor || !mode || !mode->isString() || mode->toStringRef() != "trunc") continue;
    std::int64_t value = 0;
    if (divisor->isInt()) value = divisor->toInt();
    else if (divisor->isTensor() && divisor->toTensor().numel() == 1) value = divisor->toTensor().item<std::int64_t>();
    else continue;
    if (heads && *heads != value) return std::nullopt;  // two different divisions: not the pattern
    heads = value;
  }
  return heads;
}

std::optional<c10::IValue> constant_input(Node* n, std::size_t i) {
  if (i >= n->inputs().size()) return std::nullopt;
  const auto value = torch::jit::toIValue(n->input(i));
  if (!value) return std::nullopt;
  return *value;
}

// The attention module's weights and settings, or nullopt when the rewrite would not be exact.
// The graph gets the head size, not the count: the count follows from the projection's rows, so
// the graph stays right when whole heads are pruned.
std::optional<std::vector<Value*>> attention_inputs(Graph& graph, Value* attention_value,
                                                    const torch::jit::Module& attention, std::int64_t heads,
                                                    bool batch_first, std::vector<AttentionSite>* sites) {
  if (attention.is_training() || !attention.hasattr("in_proj_weight") || !attention.attr("in_proj_weight").isTensor())
    return std::nullopt;  // separate Q, K, V weights (kdim/vdim differ from the embedding): not handled
  if ((attention.hasattr("bias_k") && !attention.attr("bias_k").isNone()) ||
      (attention.hasattr("add_zero_attn") && attention.attr("add_zero_attn").toBool()))
    return std::nullopt;
  const at::Tensor in_proj = attention.attr("in_proj_weight").toTensor();
  if (heads <= 0 || in_proj.dim() != 2 || in_proj.size(0) % (3 * heads) != 0) return std::nullopt;
  const std::int64_t head_dim = in_proj.size(0) / (3 * heads);
  const auto path = graph::attribute_path(attention_value, graph.inputs()[0]);
  if (!path) return std::nullopt;
  if (sites) sites->push_back({*path, heads, head_dim});
  const torch::jit::Module projection = attention.attr("out_proj").toModule();
  Value* projection_value = graph.insertGetAttr(attention_value, "out_proj");
  return std::vector<Value*>{read(graph, attention_value, attention, "in_proj_weight"),
                             read(graph, attention_value, attention, "in_proj_bias"),
                             read(graph, projection_value, projection, "weight"),
                             read(graph, projection_value, projection, "bias"),
                             graph.insertConstant(head_dim), graph.insertConstant(batch_first)};
}

// The submodule a call's first input is (followed through prim::GetAttr from the graph's self).
std::optional<torch::jit::Module> callee_module(Graph& graph, Node* call, const torch::jit::Module& root) {
  const auto path = graph::attribute_path(call->input(0), graph.inputs()[0]);
  if (!path) return std::nullopt;
  torch::jit::Module module = root;
  std::size_t start = 0;
  while (start <= path->size()) {
    const std::size_t dot = path->find('.', start);
    const std::string name = path->substr(start, dot == std::string::npos ? std::string::npos : dot - start);
    if (!module.hasattr(name) || !module.attr(name).isModule()) return std::nullopt;
    module = module.attr(name).toModule();
    if (dot == std::string::npos) break;
    start = dot + 1;
  }
  return module;
}

Value* none(Graph& graph) { return graph.insertConstant(c10::IValue()); }

// nn.MultiheadAttention called as self-attention. Scripted: forward(query, key, value,
// key_padding_mask, need_weights, attn_mask, average_attn_weights[, is_causal]) returning
// (output, weights); traced: forward(x) returning the output alone.
bool replace_attention(Graph& graph, Node* call, const torch::jit::Module& module, std::vector<AttentionSite>* sites) {
  const auto inputs = call->inputs();
  const bool scripted = inputs.size() >= 7;
  if (scripted) {
    if (inputs[1] != inputs[2] || inputs[2] != inputs[3] || !constant_false(inputs[5])) return false;
    if (inputs.size() > 8 && !constant_false(inputs[8])) return false;
    const auto tuple = call->output()->type()->cast<c10::TupleType>();
    if (!tuple || tuple->elements().size() != 2) return false;
  } else if (inputs.size() != 2 || !call->output()->type()->cast<c10::TensorType>()) {
    return false;
  }
  std::int64_t heads = 0;
  bool batch_first = true;  // PyTorch takes its fused kernel only for batch-first input
  if (scripted) {
    heads = module.attr("num_heads").toInt();
    batch_first = module.attr("batch_first").toBool();
  } else if (Node* kernel = fused_kernel(call, "aten::_native_multi_head_attention")) {
    // aten::_native_multi_head_attention(query, key, value, embed_dim, num_head, ...)
    const auto num_head = constant_input(kernel, 4);
    if (!num_head || !num_head->isInt()) return false;
    heads = num_head->toInt();
  } else if (const auto traced = traced_head_count(call)) {
    heads = *traced;
    // Batch-first attention starts by transposing its input to sequence-first.
    const auto type = call->input(0)->type()->expect<c10::ClassType>();
    const auto callee = torch::jit::toGraphFunction(*type->findMethod("forward")).graph();
    batch_first = false;
    for (const auto& use : callee->inputs()[1]->uses())
      batch_first = batch_first || use.user->kind() == c10::aten::transpose;
  } else {
    return false;
  }
  torch::jit::WithInsertPoint guard(call);
  const auto weights = attention_inputs(graph, call->input(0), module, heads, batch_first, sites);
  if (!weights) return false;
  std::vector<Value*> args{inputs[1]};
  args.insert(args.end(), weights->begin(), weights->end());
  args.push_back(scripted ? inputs[4] : none(graph));
  args.push_back(scripted ? inputs[6] : none(graph));
  Value* out = torch::jit::insertGraph(graph, *canonical().attention, args).at(0);
  if (scripted) {
    Node* tuple = graph.insertNode(graph.createTuple({out, none(graph)}));
    tuple->output()->setType(call->output()->type());
    out = tuple->output();
  }
  call->output()->replaceAllUsesWith(out);
  call->destroy();
  return true;
}

// nn.TransformerEncoderLayer. Scripted: forward(src, src_mask, src_key_padding_mask[, is_causal]);
// traced: forward(src).
bool replace_encoder_layer(Graph& graph, Node* call, const torch::jit::Module& layer,
                           std::vector<AttentionSite>* sites) {
  const auto inputs = call->inputs();
  const bool scripted = inputs.size() >= 4;
  if (scripted && inputs.size() > 4 && !constant_false(inputs[4])) return false;
  if (!scripted && inputs.size() != 2) return false;
  if (!call->output()->type()->cast<c10::TensorType>() || layer.is_training()) return false;
  std::int64_t heads = 0;
  bool batch_first = true, norm_first = false, gelu = false;
  double eps[2] = {0, 0};
  const torch::jit::Module attention = layer.attr("self_attn").toModule();
  if (scripted) {
    if (!layer.hasattr("activation_relu_or_gelu") || !layer.hasattr("norm_first")) return false;
    const std::int64_t activation = layer.attr("activation_relu_or_gelu").toInt();  // 1 ReLU, 2 GELU, 0 other
    if (activation != 1 && activation != 2) return false;
    gelu = activation == 2;
    norm_first = layer.attr("norm_first").toBool();
    heads = attention.attr("num_heads").toInt();
    batch_first = attention.attr("batch_first").toBool();
    eps[0] = layer.attr("norm1").toModule().attr("eps").toDouble();
    eps[1] = layer.attr("norm2").toModule().attr("eps").toDouble();
  } else {
    // aten::_transformer_encoder_layer_fwd(src, embed_dim, num_heads, qkv_weight, qkv_bias,
    //   proj_weight, proj_bias, use_gelu, norm_first, eps, ...): one eps for both norms.
    Node* kernel = fused_kernel(call, "aten::_transformer_encoder_layer_fwd");
    if (!kernel) return false;
    const auto num_heads = constant_input(kernel, 2), use_gelu = constant_input(kernel, 7),
               first = constant_input(kernel, 8), epsilon = constant_input(kernel, 9);
    if (!num_heads || !num_heads->isInt() || !use_gelu || !use_gelu->isBool() || !first || !first->isBool() ||
        !epsilon || !epsilon->isDouble())
      return false;
    heads = num_heads->toInt();
    gelu = use_gelu->toBool();
    norm_first = first->toBool();
    eps[0] = eps[1] = epsilon->toDouble();
  }
  torch::jit::WithInsertPoint guard(call);
  Value* self = call->input(0);
  const auto weights =
      attention_inputs(graph, graph.insertGetAttr(self, "self_attn"), attention, heads, batch_first, sites);
  if (!weights) return false;
  std::vector<Value*> args{inputs[1], scripted ? inputs[2] : none(graph), scripted ? inputs[3] : none(graph)};
  args.insert(args.end(), weights->begin(), weights->end());
  int which = 0;
  for (const char* norm : {"norm1", "norm2"}) {
    const torch::jit::Module m = layer.attr(norm).toModule();
    Value* v = graph.insertGetAttr(self, norm);
    args.push_back(read(graph, v, m, "weight"));
    args.push_back(read(graph, v, m, "bias"));
    args.push_back(graph.insertConstant(eps[which++]));
  }
  for (const char* linear : {"linear1", "linear2"}) {
    const torch::jit::Module m = layer.attr(linear).toModule();
    Value* v = graph.insertGetAttr(self, linear);
    args.push_back(read(graph, v, m, "weight"));
    args.push_back(read(graph, v, m, "bias"));
  }
  args.push_back(graph.insertConstant(norm_first));
  args.push_back(graph.insertConstant(gelu));
  Value* out = torch::jit::insertGraph(graph, *canonical().encoder_layer, args).at(0);
  call->output()->replaceAllUsesWith(out);
  call->destroy();
  return true;
}

// A method call on `module_value`, its other arguments as given and the rest None (or False for
// a bool such as is_causal).
Value* call_forward(Graph& graph, Value* module_value, std::vector<Value*> args) {
  const auto type = module_value->type()->expect<c10::ClassType>();
  const auto& schema = type->getMethod("forward").getSchema();
  while (args.size() + 1 < schema.arguments().size()) {
    const auto& argument = schema.arguments()[args.size() + 1];
    args.push_back(argument.type()->kind() == c10::TypeKind::BoolType ? graph.insertConstant(false) : none(graph));
  }
  args.insert(args.begin(), module_value);
  Node* call = graph.insertNode(graph.create(c10::prim::CallMethod, args, 1));
  call->s_(c10::attr::name, "forward");
  call->output()->setType(schema.returns().at(0).type());
  return call->output();
}

// nn.TransformerEncoder, scripted: forward(src, mask, src_key_padding_mask[, is_causal]). Its
// code checks the first layer's weights for a nested-tensor fast path; written out, it is each
// layer in turn (each then rewritten), then the final norm.
bool replace_encoder(Graph& graph, Node* call, const torch::jit::Module& encoder) {
  const auto inputs = call->inputs();
  if (inputs.size() < 4 || (inputs.size() > 4 && !constant_false(inputs[4])) || encoder.is_training()) return false;
  if (!call->output()->type()->cast<c10::TensorType>() || !encoder.hasattr("layers")) return false;
  const torch::jit::Module layers = encoder.attr("layers").toModule();
  for (const auto& layer : layers.named_children())
    if (layer.value.type()->name()->name() != "TransformerEncoderLayer") return false;
  torch::jit::WithInsertPoint guard(call);
  Value* layers_value = graph.insertGetAttr(call->input(0), "layers");
  Value* x = inputs[1];
  for (const auto& layer : layers.named_children())
    x = call_forward(graph, graph.insertGetAttr(layers_value, layer.name), {x, inputs[2], inputs[3]});
  if (encoder.hasattr("norm") && encoder.attr("norm").isModule())
    x = call_forward(graph, graph.insertGetAttr(call->input(0), "norm"), {x});
  call->output()->replaceAllUsesWith(x);
  call->destroy();
  return true;
}

bool replace(Graph& graph, Node* call, const torch::jit::Module& root, std::vector<AttentionSite>* sites) {
  if (call->s(c10::attr::name) != "forward") return false;
  const std::string cls = torch_nn_class(call->input(0));
  if (cls != "MultiheadAttention" && cls != "TransformerEncoderLayer" && cls != "TransformerEncoder") return false;
  const auto module = callee_module(graph, call, root);
  if (!module) return false;
  if (cls == "TransformerEncoder") return replace_encoder(graph, call, *module);
  return cls == "MultiheadAttention" ? replace_attention(graph, call, *module, sites)
                                     : replace_encoder_layer(graph, call, *module, sites);
}

}  // namespace

bool has_attention(const torch::jit::Module& module) {
  for (const auto& child : module.named_modules()) {
    const auto name = child.value.type()->name();
    if (name && (name->name() == "MultiheadAttention" || name->name() == "TransformerEncoderLayer" ||
                 name->name() == "TransformerEncoder"))
      return true;
  }
  return false;
}

int canonical_inline(const std::shared_ptr<Graph>& shared, const torch::jit::Module& root,
                     std::vector<AttentionSite>* sites) {
  Graph& graph = *shared;
  int replaced = 0;
  for (;;) {
    Node* call = nullptr;
    for (Node* n : graph::all_nodes(graph.block()))
      if (n->kind() == c10::prim::CallMethod) {
        call = n;
        break;
      }
    if (!call) break;
    if (replace(graph, call, root, sites)) {
      ++replaced;
      continue;
    }
    // One level, from the callee's own graph: its calls are visited in turn.
    const auto type = call->input(0)->type()->expect<c10::ClassType>();
    torch::jit::Function* method = type->findMethod(call->s(c10::attr::name));
    JOULECUT_ASSERT(method, "a called method is missing from its class");
    torch::jit::GraphFunction& function = torch::jit::toGraphFunction(*method);
    torch::jit::inlineCallTo(call, &function, function.graph().get());
  }
  torch::jit::Inline(graph);  // function calls (prim::CallFunction)
  if (replaced > 0) torch::jit::LowerSimpleTuples(shared);
  return replaced;
}

}  // namespace joulecut::attention
