#pragma once
// joulecut's int8 runtime (in libjoulecut_ops.so, the `onednn` backend of static quantization):
// TorchScript ops backed by oneDNN primitives whose weights are reordered and packed once per
// input shape, with the requantization scale, the bias and the activation (ReLU, ReLU6/hardtanh,
// hardswish, hardsigmoid, SiLU, sigmoid, GELU) fused into the primitive.
//
// Activations between layers are uint8 tensors (affine: x = scale * (q - zero_point)); 4-D
// activations are channels-last. Ops, as registered with TorchScript:
//   joulecut::quantize_u8(Tensor x, float scale, int zero_point) -> Tensor
//   joulecut::dequantize_u8(Tensor q, float scale, int zero_point) -> Tensor
//   joulecut::int8_conv2d(Tensor q, __torch__.torch.classes.joulecut.Int8Layer layer) -> Tensor
//   joulecut::int8_conv2d_add(Tensor q, __torch__.torch.classes.joulecut.Int8Layer layer,
//                             Tensor residual) -> Tensor       (ResNet: conv + add (+ ReLU) as one op)
//   joulecut::int8_linear(Tensor q, __torch__.torch.classes.joulecut.Int8Layer layer) -> Tensor
//   joulecut::int8_max_pool2d(Tensor q, int[] kernel, int[] stride, int[] padding) -> Tensor
//   joulecut::int8_adaptive_avg_pool2d(Tensor q, int[] output_size) -> Tensor
//   joulecut::int8_add(Tensor a, float a_scale, int a_zero_point, Tensor b, float b_scale,
//                      int b_zero_point, float scale, int zero_point, bool relu) -> Tensor
//   joulecut::int8_scale_channels(Tensor q, float q_scale, int q_zero_point, Tensor scale,
//                      float out_scale, int out_zero_point) -> Tensor   (squeeze-and-excitation:
//                      q's channels times a float [N, C, 1, 1] scale, requantized)
// Int8Layer pickles its int8 weights, scales, bias and geometry, so a quantized TorchScript file
// saves and loads (C++: link libjoulecut_ops; Python: torch.ops.load_library first).
#include <ATen/core/Tensor.h>
#include <ATen/core/ivalue.h>

#include <cstdint>
#include <string>
#include <utility>
#include <vector>

namespace joulecut {

struct Int8LayerSpec {
  std::string kind;     // "conv2d" or "linear"
  at::Tensor weight;    // float32: [out, in/groups, kh, kw] or [out, in]
  at::Tensor bias;      // float32 [out], or undefined
  std::vector<std::int64_t> stride{1, 1}, padding{0, 0}, dilation{1, 1};  // conv2d only
  std::int64_t groups = 1;                                                  // conv2d only
  double input_scale = 1;
  std::int64_t input_zero_point = 0;
  double output_scale = 1;  // ignored when output_float
  std::int64_t output_zero_point = 0;
  bool relu = false;          // ReLU fused after the layer
  // Another activation fused after the layer (oneDNN eltwise post-ops, computed in real units):
  // "hardtanh" (clamp to [activation_min, activation_max]: ReLU6 is hardtanh(0, 6)), "hardswish",
  // "hardsigmoid", "silu", "sigmoid", "gelu" (erf) or "gelu_tanh"; "" for none. Not with relu
  // or residual.
  std::string activation;
  double activation_min = 0, activation_max = 6;
  bool output_float = false;  // dequantized float32 output (a model's last layer)
  // conv2d only: a residual added before the ReLU (joulecut::int8_conv2d_add); its uint8 scale
  // relative to the output's, and its zero point.
  bool residual = false;
  double residual_scale = 1;
  std::int64_t residual_zero_point = 0;
};

// Quantizes the weight per output channel (symmetric int8) and returns the
// __torch__.torch.classes.joulecut.Int8Layer object. Throws c10::Error on bad shapes.
c10::IValue make_int8_layer(const Int8LayerSpec& spec);

// Whether make_int8_layer fuses this activation name (see Int8LayerSpec::activation).
bool int8_activation_supported(const std::string& activation);

// The largest |w - dequantized int8 w| of a layer object made by make_int8_layer.
double int8_weight_error(const c10::IValue& layer);

// A conv2d Int8Layer's stride, padding, dilation and groups (empty lists for a linear one).
struct Int8Geometry {
  std::vector<std::int64_t> stride, padding, dilation;
  std::int64_t groups = 1;
};
Int8Geometry int8_layer_geometry(const c10::IValue& layer);

// The int8 weight and the bias (undefined when the layer has none) of an Int8Layer object.
std::pair<at::Tensor, at::Tensor> int8_layer_tensors(const c10::IValue& layer);

// The implementations the int8 ops have run so far in this process, oneDNN's and joulecut's
// own, e.g. "brg:avx512_core_vnni, joulecut:small_channels_vnni"; "" before the first call.
// Convolutions with few channels (a network's first layer, a channel-pruned model's thin
// layers) may run one of joulecut's kernels instead of oneDNN's (AVX-512 VNNI:
// joulecut:small_channels_vnni; AMX tiles: joulecut:small_channels_amx): the fastest, timed on
// the first input of each shape; the environment variable JOULECUT_INT8_SMALL_CONV=
// direct|amx|onednn forces one where it fits (all compute the same outputs, to one step).
std::string int8_implementations();

}  // namespace joulecut
