#pragma once
// Per-layer parameters, MACs and bytes of a TorchScript model, found by running it once on
// an example input and observing the operators it dispatches (RecordFunction), so it works
// on any TorchScript file, ours or Python's, with control flow resolved as it really runs.
// Counted: convolution, linear and matrix products (aten and quantized). Element-wise ops,
// pooling and normalization are not counted as MACs.
#include <ATen/core/Tensor.h>
#include <torch/script.h>

#include <cstdint>
#include <string>
#include <vector>

namespace joulecut {

struct LayerStats {
  // parameter path of the weight ("features.0"); "activation product #k" for a product of two
  // activations (attention's scores and mixing: no parameters, no weight shape); "op#k" otherwise
  std::string name;
  std::string op;    // e.g. "aten::conv2d"
  std::vector<std::int64_t> input_shape, weight_shape, output_shape;
  std::int64_t params = 0;  // weight + bias elements
  std::int64_t macs = 0;    // multiply-accumulates for the example input
  std::int64_t weight_zeros = 0;
  std::int64_t weight_bytes = 0;
  std::int64_t activation_bytes = 0;  // input read + output written
  std::string dtype;
};

struct ModelStats {
  std::vector<LayerStats> layers;
  std::int64_t batch = 1;            // batch size of the example input
  std::int64_t parameters = 0;       // all parameters of the module (0 once frozen), CSR weights included
  std::int64_t parameter_bytes = 0;  // parameters + buffers
  std::int64_t macs = 0;             // sum over layers, for the whole example batch
  std::int64_t layer_params = 0;     // params of the counted layers
  std::int64_t layer_weight_zeros = 0;
  std::vector<std::string> dtypes;   // distinct parameter dtypes
  double weight_sparsity() const;    // zeros / elements over the counted layers' weights
};

// Runs `module` once on `example` (no grad, module's current mode) and returns its stats.
// Throws UserError if the model fails on the input.
ModelStats analyze_model(torch::jit::Module& module, const at::Tensor& example);
// The same for a forward() of several arguments, each [batch, ...]; the batch is the first's.
ModelStats analyze_model(torch::jit::Module& module, const std::vector<at::Tensor>& arguments);

}  // namespace joulecut
