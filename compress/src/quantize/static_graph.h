#pragma once
// Internal to quantize-static: reading the inlined forward graph (its layers, the values to
// calibrate, their ranges) before static_rewrite.cpp rewrites it. Values are numbered in graph
// order so that calibration (on one copy) and every rewrite (on a fresh clone) name the same
// values.
#include <torch/csrc/jit/ir/ir.h>
#include <torch/script.h>

#include <cstdint>
#include <map>
#include <optional>
#include <set>
#include <string>
#include <utility>
#include <vector>

#include "joulecut/data.h"
#include "joulecut/observers.h"
#include "joulecut/quantize.h"

namespace joulecut::static_quant {

using torch::jit::Graph;
using torch::jit::Node;
using torch::jit::Value;

inline const c10::Symbol kQuantizedConv = c10::Symbol::fromQualString("quantized::conv2d");
inline const c10::Symbol kQuantizedConvRelu = c10::Symbol::fromQualString("quantized::conv2d_relu");
inline const c10::Symbol kQuantizedLinear = c10::Symbol::fromQualString("quantized::linear");
inline const c10::Symbol kQuantizedLinearRelu = c10::Symbol::fromQualString("quantized::linear_relu");
inline const c10::Symbol kQuantizedAdd = c10::Symbol::fromQualString("quantized::add");
inline const c10::Symbol kQuantizedAddRelu = c10::Symbol::fromQualString("quantized::add_relu");
inline const c10::Symbol kOurQuantize = c10::Symbol::fromQualString("joulecut::quantize_u8");
inline const c10::Symbol kOurDequantize = c10::Symbol::fromQualString("joulecut::dequantize_u8");
inline const c10::Symbol kOurConv = c10::Symbol::fromQualString("joulecut::int8_conv2d");
inline const c10::Symbol kOurConvAdd = c10::Symbol::fromQualString("joulecut::int8_conv2d_add");
inline const c10::Symbol kOurLinear = c10::Symbol::fromQualString("joulecut::int8_linear");
inline const c10::Symbol kOurMaxPool = c10::Symbol::fromQualString("joulecut::int8_max_pool2d");
inline const c10::Symbol kOurAvgPool = c10::Symbol::fromQualString("joulecut::int8_adaptive_avg_pool2d");
inline const c10::Symbol kOurAdd = c10::Symbol::fromQualString("joulecut::int8_add");
inline const c10::Symbol kOurScaleChannels = c10::Symbol::fromQualString("joulecut::int8_scale_channels");
inline const c10::Symbol kOurLinearDp4a = c10::Symbol::fromQualString("joulecut::int8_linear_dp4a");
inline constexpr std::int64_t kQuint8 = 13;  // c10::ScalarType::QUInt8, as TorchScript passes dtypes

bool is_relu(const Node* n);
// The ReLU that is a node's only reader, if any: it runs fused into the node.
Node* fused_relu(Node* n);

// An activation an int8 layer can run fused: "relu", or one of Int8LayerSpec::activation's names.
struct Activation {
  std::string name;
  double min = 0, max = 6;  // hardtanh only
};
// What `n` computes when it is an activation that fuses: ReLU always; with `any` (the onednn
// backend's post-ops) also hardtanh/ReLU6 with constant bounds, hardswish, hardsigmoid, SiLU,
// sigmoid and GELU (erf or tanh).
std::optional<Activation> fusable_activation(const Node* n, bool any);
// A constant int list, written as a constant or as a list of constants (inlined code has both).
std::optional<std::vector<std::int64_t>> int_list(Value* v);
// a + b with alpha 1 on two tensors (the residual add), in place or not.
bool is_tensor_add(Node* n);
// Squeeze-and-excitation's `scale * x`: a multiply of two tensors, one of them a sigmoid or
// hardsigmoid (as an op, or fused into the layer before). Returns which input is the scale.
std::optional<int> channel_scale_input(Node* n);

// A Conv2d or Linear whose weight (and bias) the module holds.
struct Layer {
  Node* node = nullptr;
  bool conv = false;
  std::string name, weight_path;
  std::optional<std::string> bias_path;
  std::vector<std::int64_t> stride, padding, dilation;
  std::int64_t groups = 1;
  Node* activation = nullptr;  // the activation node that is the layer's only reader and fuses
  Activation activation_kind;
  std::string why_fp32;  // non-empty: stays fp32, and why
  bool relu() const { return activation && activation_kind.name == "relu"; }
  Value* output() const { return activation ? activation->output() : node->output(); }
};

// The top-level values of a graph: its inputs, then each node's outputs in order.
std::vector<Value*> numbered_values(Graph& graph);
// The layers of the inlined forward, in order, each with its geometry or the reason it stays fp32
// (layers inside a branch or loop that specialization could not remove stay fp32, and say so).
// `any_activation`: fuse every activation fusable_activation knows, else ReLU only.
std::vector<Layer> find_layers(Graph& graph, const torch::jit::Module& module, const std::string& pass,
                               bool any_activation);
// The Conv2d/Linear modules (and packed attention projections) of `module` that `layers` does not
// hold, each with the reason: forward never reads their weights where a pass can follow.
std::vector<std::pair<std::string, std::string>> unreached_layers(const torch::jit::Module& module,
                                                                  const std::vector<std::string>& reached);
// The values calibration observes: each layer's input and (fused) output, and the inputs and
// (fused) output of each residual add.
std::set<std::size_t> values_to_observe(Graph& graph, const std::vector<Layer>& layers);
// The layer inputs whose means bias correction reads (static_bias_correction.cpp): per channel
// along dim 1 for a convolution's, per feature along the last dim for a Linear's.
struct MeansToTake {
  std::set<std::size_t> conv_inputs, linear_inputs;
};
MeansToTake layer_inputs_to_average(Graph& graph, const std::vector<Layer>& layers);
// A clone of `input` with a method "joulecut_probe" returning, as a tuple, a copy of each wanted
// value; `order` receives the indices the tuple holds (values that are not tensors left out).
torch::jit::Module probe_module(const torch::jit::Module& input, const std::set<std::size_t>& wanted,
                                std::vector<std::size_t>& order);
// The values (numbered as numbered_values does) that a forward on `inputs` computes.
std::map<std::size_t, at::Tensor> capture_values(const torch::jit::Module& input, const std::set<std::size_t>& wanted,
                                                 const std::vector<c10::IValue>& inputs);
// What calibration learned of the observed values (numbered as numbered_values does): each one's
// range, and the means of those `MeansToTake` names.
struct CalibratedValues {
  std::map<std::size_t, QuantRange> ranges;
  std::map<std::size_t, at::Tensor> conv_channel_means;
  std::map<std::size_t, at::Tensor> feature_means;
};
// Runs the calibration images through a copy of the forward that returns every observed value.
CalibratedValues calibrate_values(const torch::jit::Module& input, const std::set<std::size_t>& observed,
                                  const MeansToTake& means_to_take, const TensorDataset& data,
                                  const StaticQuantizeOptions& options, bool progress);
// Drops the root's submodules and tensors that forward no longer reads. Only when forward is
// the only method.
void drop_unread_attributes(torch::jit::Module& module, Graph& forward);

}  // namespace joulecut::static_quant
