#pragma once
// Internal: LibTorch's quantized engine and packed-parameter builders, shared by the passes that
// emit quantized::* ops (quantize-dynamic, quantize-static with backend=torch).
#include <ATen/ATen.h>
#include <ATen/core/ivalue.h>

#include <cstdint>
#include <string>
#include <vector>

namespace joulecut::graph {

// Selects the best quantized engine this LibTorch has (FBGEMM, else ONEDNN, else QNNPACK) and
// returns its name. Throws UserError naming `pass` when there is none.
std::string choose_engine(const std::string& pass);

// Calls a registered op (`joulecut::quantize_u8`, `quantized::linear_prepack`, ...) through the
// dispatcher with a boxed stack; returns its first output.
c10::IValue call_op(const char* op, std::vector<c10::IValue> stack);

// Per-output-channel symmetric int8 weight ([out, ...] float32) as a qint8 tensor.
at::Tensor quantize_weight_per_channel(const at::Tensor& weight);

// quantized::linear_prepack and quantized::conv2d_prepack through the dispatcher (their C++
// signatures are not public). Prepack separately for each use: shared packs break.
c10::IValue prepack_linear(const at::Tensor& qweight, const c10::optional<at::Tensor>& bias);
c10::IValue prepack_conv2d(const at::Tensor& qweight, const c10::optional<at::Tensor>& bias,
                           const std::vector<std::int64_t>& stride, const std::vector<std::int64_t>& padding,
                           const std::vector<std::int64_t>& dilation, std::int64_t groups);

}  // namespace joulecut::graph
