#pragma once
// Internal to joulecut's int8 runtime on oneDNN (see joulecut/int8.h): the Int8Layer object the
// int8 ops take, and what its files share. int8_layer.cpp: the layer's state, its pickling and
// the joulecut/int8.h functions on it; int8_onednn.cpp: its oneDNN primitives, and average
// pooling's; int8_conv_choice.cpp: joulecut's own convolutions, the choice among them per input
// shape, and a layer's call; int8_ops.cpp: the TorchScript ops and their registration.
#include <ATen/ATen.h>
#include <torch/custom_class.h>

#include <oneapi/dnnl/dnnl.hpp>

#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <tuple>
#include <vector>

#include "int8_kernels.h"

namespace joulecut {
namespace int8_runtime {

dnnl::engine& cpu_engine();

// Records an implementation that ran, for int8_implementations() (int8_layer.cpp).
void remember_implementation(const std::string& name);
void remember_implementation(const dnnl::primitive_desc_base& pd);

// One of joulecut's own kernels, built for a layer and input shape: images [begin, end) of
// the channels-last input into the output, the residual read in place.
struct OwnConv {
  std::string implementation;  // the manifest's name for it
  std::function<void(const std::uint8_t* in, const std::uint8_t* residual, void* out, std::int64_t begin,
                     std::int64_t end)>
      run;
};

// Pooling of a 4-D uint8 tensor (average pooling's) on a oneDNN primitive cached by geometry
// (int8_onednn.cpp); `op` names the op in errors.
at::Tensor int8_pool(const at::Tensor& input, dnnl::algorithm algorithm, std::vector<std::int64_t> kernel,
                     std::vector<std::int64_t> stride, std::vector<std::int64_t> padding, const char* op);

}  // namespace int8_runtime

// The layer object of int8_conv2d and int8_linear (__torch__.torch.classes.joulecut.Int8Layer):
// the quantized weights and terms, and per input shape a plan.
struct Int8Layer : torch::CustomClassHolder {
  using OwnConv = int8_runtime::OwnConv;
  using State = std::tuple<std::int64_t, std::string, at::Tensor, at::Tensor, at::Tensor, std::vector<std::int64_t>,
                           std::vector<std::int64_t>, std::vector<std::int64_t>, std::int64_t, double, std::int64_t,
                           double, std::int64_t, bool, bool, bool, double, std::int64_t>;
  static constexpr std::int64_t kStateVersion = 1;

  std::string kind;
  at::Tensor weight;         // int8, [out, in/groups, kh, kw] or [out, in]
  at::Tensor weight_scales;  // float32 [out]
  at::Tensor bias;           // float32 [out]; numel 0 when the layer has none
  std::vector<std::int64_t> stride, padding, dilation;
  std::int64_t groups = 1;
  double input_scale = 1;
  std::int64_t input_zero_point = 0;
  double output_scale = 1;
  std::int64_t output_zero_point = 0;
  bool relu = false, output_float = false;
  // A residual added to the output before the ReLU (oneDNN's sum post-op): output +=
  // residual_scale * (residual - residual_zero_point), in output units.
  bool residual = false;
  double residual_scale = 1;
  std::int64_t residual_zero_point = 0;
  // A fused activation other than ReLU ("" for none), computed in real units before the output
  // is scaled to its uint8 units. Pickled inside `kind` ("conv2d+hardtanh(0,6)") so that the
  // state tuple, and files written before activations were fused, stay as they were.
  std::string activation;
  double activation_min = 0, activation_max = 6;

  struct Plan {
    dnnl::primitive primitive;
    dnnl::memory weights, bias;
    dnnl::memory::desc src, dst;
    std::vector<std::int64_t> dst_shape;
    // joulecut's kernels that fit the shape (and the environment allows); `use` once timing (or
    // the environment) chose one of them over the oneDNN primitive, which is always built.
    std::vector<OwnConv> own;
    bool forced = false;  // the environment forced one of joulecut's kernels: `own` holds it alone
    bool chosen = false;
    const OwnConv* use = nullptr;
    std::string onednn_implementation;
  };
  std::mutex mutex;
  std::map<std::vector<std::int64_t>, std::shared_ptr<Plan>> plans;  // by input shape

  // The state, pickled (int8_layer.cpp).
  std::string pickled_kind() const;
  void unpickle_kind(const std::string& text);
  State state() const;
  static c10::intrusive_ptr<Int8Layer> from_state(State s);
  void validate() const;

  // oneDNN's primitives for an input shape, and a call of one (int8_onednn.cpp).
  std::vector<float> output_scales() const;
  void append_activation(dnnl::post_ops& ops) const;
  dnnl::memory scaled_bias(const dnnl::memory::desc& desc) const;
  dnnl::primitive_attr attributes() const;
  dnnl::memory packed_weights(const dnnl::memory::desc& wanted, const dnnl::memory::desc& plain) const;
  std::shared_ptr<Plan> conv_plan(const std::vector<std::int64_t>& shape) const;
  std::shared_ptr<Plan> linear_plan(const std::vector<std::int64_t>& shape) const;
  void run_onednn(const Plan& plan, const at::Tensor& x, at::Tensor& y) const;

  // joulecut's convolutions for a plan, the choice of a kernel, and a call (int8_conv_choice.cpp).
  void add_own_convs(Plan& plan, const kernels::SmallConvShape& small) const;
  void execute(const Plan& plan, const OwnConv* own, const at::Tensor& x, const at::Tensor* residual,
               at::Tensor& y) const;
  void choose_kernel(Plan& plan, const at::Tensor& x, const at::Tensor* residual, at::Tensor& y) const;
  static void check_residual(const Plan& plan, const at::Tensor* residual);
  // `residual_input`: the tensor added by the sum post-op, for layers made with a residual.
  at::Tensor run(const at::Tensor& input, bool conv, const at::Tensor* residual_input = nullptr);
};

}  // namespace joulecut
