#pragma once
// Attention written out as plain ops, so that every pass can read its layers.
//
// PyTorch runs nn.MultiheadAttention, nn.TransformerEncoderLayer and nn.TransformerEncoder through code with
// data-dependent branches (a "fast path" into fused kernels such as
// aten::_transformer_encoder_layer_fwd or aten::_native_multi_head_attention, a slow path
// through F.multi_head_attention_forward). Scripted, both paths are in the graph behind
// prim::If; traced under no_grad, only the fused kernel is. Neither shows a pass the attention's
// Linear layers. Here a call to such a module is replaced, while the graph is inlined, by the
// same computation in straight-line ops: the packed Q/K/V projection as one aten::linear on
// `in_proj_weight`, scaled dot-product attention as matmul, softmax, matmul, and the output
// projection as aten::linear on `out_proj.weight`; an encoder becomes its layers in turn and its
// final norm (its code reads the first layer's weights to decide on a nested-tensor fast path).
//
// Only calls that this rewrite computes exactly are replaced (evaluation mode, self-attention,
// no attention weights returned, no causal flag, ReLU or GELU feed-forward); any other call is
// inlined as PyTorch wrote it, and a pass reports its layers as not reached.
#include <torch/csrc/jit/ir/ir.h>
#include <torch/script.h>

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

namespace joulecut::attention {

// Whether `module` holds a submodule that canonical_inline may rewrite.
bool has_attention(const torch::jit::Module& module);

// Inlines every call in `graph` (as torch::jit::Inline does), replacing the calls to
// nn.MultiheadAttention, nn.TransformerEncoderLayer and nn.TransformerEncoder that it can compute
// exactly by plain ops.
// Returns how many calls were replaced, and adds each rewritten attention to `sites`.
// Precondition: `graph` is a method graph of `root` (its first input is `root`).
struct AttentionSite {
  std::string path;  // the nn.MultiheadAttention module ("encoder.layers.0.self_attn")
  std::int64_t heads = 0, head_dim = 0;
};
int canonical_inline(const std::shared_ptr<torch::jit::Graph>& graph, const torch::jit::Module& root,
                     std::vector<AttentionSite>* sites = nullptr);

}  // namespace joulecut::attention
