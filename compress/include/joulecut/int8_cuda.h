#pragma once
// joulecut::int8_linear_dp4a: the CUDA int8 Linear kernel (compress/src/runtime/cuda/int8_linear.h) as a
// TorchScript op, for files made by quantize-static with backend=cuda. Its weights are plain
// tensors (module buffers), so `module.to("cuda")` moves them; on a CPU tensor the op runs an
// exact reference of the same arithmetic (int8 x int8 summed in integers, then the same
// dequantize), so files and tests work where no GPU is.
//
// Registered with TorchScript (libjoulecut_ops):
//   joulecut::int8_linear_dp4a(Tensor x, Tensor weight, Tensor weight_scale, Tensor? bias,
//                              float input_scale, bool relu) -> Tensor
// x: float32 [..., in]; weight: int8 [out, in rounded up to a multiple of 4] (zero padded);
// weight_scale: float32 [out]; bias: float32 [out] or None; input_scale > 0. x is quantized
// symmetrically, clamp(round(x / input_scale), -127, 127); the result is float32 [..., out].
#include <ATen/core/Tensor.h>

namespace joulecut {

struct Dp4aWeight {
  at::Tensor weight;  // int8 [out, in4], in4 = in rounded up to a multiple of 4, zero padded
  at::Tensor scale;   // float32 [out]: symmetric per output channel, max |w| / 127
};

// Packs a float Linear weight [out, in] for int8_linear_dp4a. Throws c10::Error when it is not 2-D.
Dp4aWeight pack_dp4a_weight(const at::Tensor& weight);

// The op itself (see above). Throws c10::Error naming the argument on bad shapes, dtypes or
// devices, and on a CUDA input when this build has no CUDA kernel.
at::Tensor int8_linear_dp4a(const at::Tensor& x, const at::Tensor& weight, const at::Tensor& weight_scale,
                            const c10::optional<at::Tensor>& bias, double input_scale, bool relu);

// Whether this libjoulecut_ops can run the op on CUDA tensors (nvcc and a CUDA LibTorch at build time).
bool dp4a_kernel_compiled();

}  // namespace joulecut
