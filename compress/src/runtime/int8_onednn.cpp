// joulecut's int8 runtime on oneDNN: an Int8Layer's primitives (per input shape, the weights
// reordered once into the layout the primitive wants, the requantization, bias, residual and
// activation fused into it) and their calls; average pooling's primitives, cached by geometry.
#include <cstdint>
#include <map>
#include <memory>
#include <mutex>
#include <unordered_map>
#include <vector>

#include "int8_layer.h"

namespace joulecut {
namespace int8_runtime {

dnnl::engine& cpu_engine() {
  static dnnl::engine engine(dnnl::engine::kind::cpu, 0);
  return engine;
}

}  // namespace int8_runtime

namespace {

using dnnl::memory;
using int8_runtime::cpu_engine;
using int8_runtime::remember_implementation;
using tag = memory::format_tag;
using dt = memory::data_type;

memory zero_point_memory(std::int32_t value) {
  memory m({{1}, dt::s32, tag::x}, cpu_engine());
  *static_cast<std::int32_t*>(m.get_data_handle()) = value;
  return m;
}

}  // namespace

// The int32 accumulator times these gives the output in its own quantized units (or float).
// With a fused activation other than ReLU, real units: the activation is not scale-invariant,
// and its post-op scales the result to output units.
std::vector<float> Int8Layer::output_scales() const {
  const float* w = weight_scales.data_ptr<float>();
  std::vector<float> scales(weight_scales.numel());
  const double divisor = output_float || !activation.empty() ? 1.0 : output_scale;
  for (std::size_t i = 0; i < scales.size(); ++i) scales[i] = float(input_scale * w[i] / divisor);
  return scales;
}

// oneDNN 2.x applies each eltwise post-op as dst = scale * f(dst; alpha, beta).
void Int8Layer::append_activation(dnnl::post_ops& ops) const {
  using dnnl::algorithm;
  const float to_output = output_float ? 1.f : float(1.0 / output_scale);
  if (activation == "hardtanh") {
    ops.append_eltwise(to_output, algorithm::eltwise_clip, float(activation_min), float(activation_max));
  } else if (activation == "hardswish") {
    ops.append_eltwise(to_output, algorithm::eltwise_hardswish, 0.f, 0.f);
  } else if (activation == "hardsigmoid") {  // relu6(x + 3) / 6 = clip(x / 6 + 1/2, 0, 1)
    ops.append_eltwise(1.f, algorithm::eltwise_linear, 1.f / 6, 0.5f);
    ops.append_eltwise(to_output, algorithm::eltwise_clip, 0.f, 1.f);
  } else if (activation == "silu") {
    ops.append_eltwise(to_output, algorithm::eltwise_swish, 1.f, 0.f);
  } else if (activation == "sigmoid") {
    ops.append_eltwise(to_output, algorithm::eltwise_logistic, 0.f, 0.f);
  } else if (activation == "gelu") {
    ops.append_eltwise(to_output, algorithm::eltwise_gelu_erf, 0.f, 0.f);
  } else if (activation == "gelu_tanh") {
    ops.append_eltwise(to_output, algorithm::eltwise_gelu_tanh, 0.f, 0.f);
  }
}

// oneDNN adds the bias to the accumulator before scaling: it goes in accumulator units.
memory Int8Layer::scaled_bias(const memory::desc& desc) const {
  memory m(desc, cpu_engine());
  float* out = static_cast<float*>(m.get_data_handle());
  const float* w = weight_scales.data_ptr<float>();
  for (std::int64_t i = 0; i < weight.size(0); ++i)
    out[i] = bias.numel() ? float(bias.data_ptr<float>()[i] / (input_scale * w[i])) : 0.f;
  return m;
}

dnnl::primitive_attr Int8Layer::attributes() const {
  dnnl::primitive_attr attr;
  attr.set_output_scales(1 << 1, output_scales());
  dnnl::post_ops ops;
  if (residual) ops.append_sum(float(residual_scale), std::int32_t(residual_zero_point));
  if (relu) ops.append_eltwise(1.f, dnnl::algorithm::eltwise_relu, 0.f, 0.f);
  append_activation(ops);
  if (residual || relu || !activation.empty()) attr.set_post_ops(ops);
  if (input_zero_point != 0) attr.set_zero_points(DNNL_ARG_SRC, 0, {DNNL_RUNTIME_S32_VAL});
  if (!output_float && output_zero_point != 0) attr.set_zero_points(DNNL_ARG_DST, 0, {DNNL_RUNTIME_S32_VAL});
  return attr;
}

memory Int8Layer::packed_weights(const memory::desc& wanted, const memory::desc& plain) const {
  memory user(plain, cpu_engine(), weight.data_ptr());
  memory packed(wanted, cpu_engine());
  dnnl::stream stream(cpu_engine());
  dnnl::reorder(user, packed).execute(stream, user, packed);
  stream.wait();
  return packed;
}

// A convolution's plan: oneDNN's primitive, always built, and joulecut's kernels that fit the
// shape (add_own_convs, int8_conv_choice.cpp).
std::shared_ptr<Int8Layer::Plan> Int8Layer::conv_plan(const std::vector<std::int64_t>& shape) const {
  const std::int64_t n = shape[0], c = shape[1], h = shape[2], w = shape[3];
  const std::int64_t out = weight.size(0), kh = weight.size(2), kw = weight.size(3);
  TORCH_CHECK(c == weight.size(1) * groups, "joulecut::int8_conv2d: input has ", c, " channels, the layer expects ",
              weight.size(1) * groups);
  const std::int64_t oh = (h + 2 * padding[0] - dilation[0] * (kh - 1) - 1) / stride[0] + 1;
  const std::int64_t ow = (w + 2 * padding[1] - dilation[1] * (kw - 1) - 1) / stride[1] + 1;
  TORCH_CHECK(oh > 0 && ow > 0, "joulecut::int8_conv2d: input ", h, "x", w, " is smaller than the kernel");
  auto plan = std::make_shared<Plan>();
  plan->src = memory::desc({n, c, h, w}, dt::u8, tag::nhwc);
  plan->dst = memory::desc({n, out, oh, ow}, output_float ? dt::f32 : dt::u8, tag::nhwc);
  plan->dst_shape = {n, out, oh, ow};
  memory::dims weight_dims = groups > 1 ? memory::dims{groups, out / groups, c / groups, kh, kw}
                                        : memory::dims{out, c, kh, kw};
  const memory::desc any_weights(weight_dims, dt::s8, tag::any);
  const memory::desc plain_weights(weight_dims, dt::s8, groups > 1 ? tag::goihw : tag::oihw);
  const memory::desc bias_desc({out}, dt::f32, tag::x);
  dnnl::convolution_forward::desc desc(dnnl::prop_kind::forward_inference, dnnl::algorithm::convolution_direct,
                                       plan->src, any_weights, bias_desc, plan->dst, {stride[0], stride[1]},
                                       {dilation[0] - 1, dilation[1] - 1}, {padding[0], padding[1]},
                                       {padding[0], padding[1]});
  dnnl::convolution_forward::primitive_desc pd(desc, attributes(), cpu_engine());
  plan->weights = packed_weights(pd.weights_desc(), plain_weights);
  plan->bias = scaled_bias(bias_desc);
  plan->primitive = dnnl::convolution_forward(pd);
  plan->onednn_implementation = pd.impl_info_str();
  const kernels::SmallConvShape small{n, h, w, c, oh, ow, out, kh, kw, stride[0], stride[1], padding[0], padding[1]};
  add_own_convs(*plan, small);
  return plan;
}

std::shared_ptr<Int8Layer::Plan> Int8Layer::linear_plan(const std::vector<std::int64_t>& shape) const {
  const std::int64_t m = shape[0], k = shape[1], out = weight.size(0);
  TORCH_CHECK(k == weight.size(1), "joulecut::int8_linear: input has ", k, " features, the layer expects ",
              weight.size(1));
  auto plan = std::make_shared<Plan>();
  plan->src = memory::desc({m, k}, dt::u8, tag::ab);
  plan->dst = memory::desc({m, out}, output_float ? dt::f32 : dt::u8, tag::ab);
  plan->dst_shape = {m, out};
  const memory::desc any_weights({k, out}, dt::s8, tag::any);
  const memory::desc plain_weights({k, out}, dt::s8, tag::ba);  // our [out, in] row-major is {in, out} "ba"
  const memory::desc bias_desc({1, out}, dt::f32, tag::ab);
  dnnl::matmul::desc desc(plan->src, any_weights, bias_desc, plan->dst);
  dnnl::matmul::primitive_desc pd(desc, attributes(), cpu_engine());
  remember_implementation(pd);
  plan->weights = packed_weights(pd.weights_desc(), plain_weights);
  plan->bias = scaled_bias(bias_desc);
  plan->primitive = dnnl::matmul(pd);
  return plan;
}

void Int8Layer::run_onednn(const Plan& plan, const at::Tensor& x, at::Tensor& y) const {
  memory src(plan.src, cpu_engine(), x.data_ptr());
  memory dst(plan.dst, cpu_engine(), y.data_ptr());
  std::unordered_map<int, memory> args{{DNNL_ARG_SRC, src},
                                       {DNNL_ARG_WEIGHTS, plan.weights},
                                       {DNNL_ARG_BIAS, plan.bias},
                                       {DNNL_ARG_DST, dst}};
  if (input_zero_point != 0)
    args.emplace(DNNL_ARG_ATTR_ZERO_POINTS | DNNL_ARG_SRC, zero_point_memory(std::int32_t(input_zero_point)));
  if (!output_float && output_zero_point != 0)
    args.emplace(DNNL_ARG_ATTR_ZERO_POINTS | DNNL_ARG_DST, zero_point_memory(std::int32_t(output_zero_point)));
  dnnl::stream stream(cpu_engine());
  plan.primitive.execute(stream, args);
  stream.wait();
}

namespace int8_runtime {

// Pooling keeps the input's scale and zero point: max and average commute with an affine uint8
// mapping (average up to rounding). Average pooling runs oneDNN primitives cached by geometry.
at::Tensor int8_pool(const at::Tensor& input, dnnl::algorithm algorithm, std::vector<std::int64_t> kernel,
                     std::vector<std::int64_t> stride, std::vector<std::int64_t> padding, const char* op) {
  TORCH_CHECK(input.device().is_cpu() && input.scalar_type() == at::kByte && input.dim() == 4, "joulecut::", op,
              " takes a 4-D uint8 CPU tensor, got ", input.scalar_type(), " ", input.sizes());
  TORCH_CHECK(kernel.size() == 2 && stride.size() == 2 && padding.size() == 2, "joulecut::", op,
              ": kernel, stride and padding need two values each");
  const at::Tensor x = input.contiguous(at::MemoryFormat::ChannelsLast);
  const std::int64_t n = x.size(0), c = x.size(1), h = x.size(2), w = x.size(3);
  const std::int64_t oh = (h + 2 * padding[0] - kernel[0]) / stride[0] + 1;
  const std::int64_t ow = (w + 2 * padding[1] - kernel[1]) / stride[1] + 1;
  TORCH_CHECK(oh > 0 && ow > 0, "joulecut::", op, ": input ", h, "x", w, " is smaller than the kernel");
  struct Entry {
    dnnl::pooling_forward primitive;
    memory::desc src, dst;
  };
  static std::mutex cache_mutex;
  static std::map<std::vector<std::int64_t>, std::shared_ptr<Entry>> cache;
  const std::vector<std::int64_t> key{std::int64_t(algorithm), n, c, h, w, kernel[0], kernel[1], stride[0], stride[1],
                                      padding[0], padding[1]};
  std::shared_ptr<Entry> entry;
  {
    std::lock_guard<std::mutex> lock(cache_mutex);
    auto& slot = cache[key];
    if (!slot) {
      slot = std::make_shared<Entry>();
      slot->src = memory::desc({n, c, h, w}, dt::u8, tag::nhwc);
      slot->dst = memory::desc({n, c, oh, ow}, dt::u8, tag::nhwc);
      dnnl::pooling_forward::desc desc(dnnl::prop_kind::forward_inference, algorithm, slot->src, slot->dst,
                                       {stride[0], stride[1]}, {kernel[0], kernel[1]}, {padding[0], padding[1]},
                                       {padding[0], padding[1]});
      dnnl::pooling_forward::primitive_desc pd(desc, cpu_engine());
      remember_implementation(pd);
      slot->primitive = dnnl::pooling_forward(pd);
    }
    entry = slot;
  }
  at::Tensor y = at::empty({n, c, oh, ow}, x.options(), at::MemoryFormat::ChannelsLast);
  if (x.numel() > 0) {
    memory src(entry->src, cpu_engine(), x.data_ptr()), dst(entry->dst, cpu_engine(), y.data_ptr());
    dnnl::stream stream(cpu_engine());
    entry->primitive.execute(stream, {{DNNL_ARG_SRC, src}, {DNNL_ARG_DST, dst}});
    stream.wait();
  }
  return y;
}

}  // namespace int8_runtime
}  // namespace joulecut
