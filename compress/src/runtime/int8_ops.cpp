// joulecut's int8 runtime on oneDNN (see joulecut/int8.h). Weights are int8 per output channel,
// activations uint8 per tensor. Each layer keeps, per input shape, a oneDNN primitive whose
// weights were reordered into the layout that primitive wants once, so a call is one primitive
// execution: no weight reorder, no separate requantize or ReLU pass over the output.
#include <ATen/ATen.h>
#include <ATen/Parallel.h>
#include <torch/custom_class.h>
#include <torch/library.h>

#include <oneapi/dnnl/dnnl.hpp>

#include <algorithm>
#include <cmath>
#include <chrono>
#include <functional>
#include <cstdio>
#include <cstdlib>
#include <map>
#include <memory>
#include <mutex>
#include <set>
#include <tuple>
#include <unordered_map>

#include "int8_kernels.h"
#include "joulecut/int8.h"

namespace joulecut {
namespace {

using dnnl::memory;
using tag = memory::format_tag;
using dt = memory::data_type;

dnnl::engine& cpu_engine() {
  static dnnl::engine engine(dnnl::engine::kind::cpu, 0);
  return engine;
}

std::mutex implementations_mutex;
std::set<std::string> implementations_seen;

void remember_implementation(const std::string& name) {
  std::lock_guard<std::mutex> lock(implementations_mutex);
  implementations_seen.insert(name);
}
void remember_implementation(const dnnl::primitive_desc_base& pd) { remember_implementation(pd.impl_info_str()); }

// Which kernel runs the convolutions that joulecut's own kernels fit (SmallChannelConv on
// AVX-512 VNNI, AmxConv on AMX tiles): the fastest of them and oneDNN's, timed on the layer's
// first input of each shape (the default), or one forced where it fits, for comparisons and
// tests: JOULECUT_INT8_SMALL_CONV=auto|direct|amx|onednn, read when a layer first sees an input
// shape.
enum class SmallConvChoice { timed, direct, amx, onednn };
constexpr const char* kDirectImplementation = "joulecut:small_channels_vnni";
constexpr const char* kAmxImplementation = "joulecut:small_channels_amx";
SmallConvChoice small_conv_choice() {
  const char* value = std::getenv("JOULECUT_INT8_SMALL_CONV");
  const std::string v = value ? value : "";
  if (v == "direct") return SmallConvChoice::direct;
  if (v == "amx") return SmallConvChoice::amx;
  if (v == "onednn") return SmallConvChoice::onednn;
  TORCH_CHECK(v == "auto" || v.empty(), "JOULECUT_INT8_SMALL_CONV must be auto, direct, amx or onednn, not '", v,
              "'");
  return SmallConvChoice::timed;
}

template <class T>
struct type_tag {
  using type = T;
};

// One of joulecut's own kernels, built for a layer and input shape: images [begin, end) of
// the channels-last input into the output, the residual read in place.
struct OwnConv {
  std::string implementation;  // the manifest's name for it
  std::function<void(const std::uint8_t* in, const std::uint8_t* residual, void* out, std::int64_t begin,
                     std::int64_t end)>
      run;
};

// A 4-D activation is channels-last for oneDNN's int8 kernels; anything else row-major.
at::MemoryFormat activation_format(const at::Tensor& t) {
  return t.dim() == 4 ? at::MemoryFormat::ChannelsLast : at::MemoryFormat::Contiguous;
}

memory zero_point_memory(std::int32_t value) {
  memory m({{1}, dt::s32, tag::x}, cpu_engine());
  *static_cast<std::int32_t*>(m.get_data_handle()) = value;
  return m;
}

}  // namespace

// ---- the layer object ---------------------------------------------------------------------
struct Int8Layer : torch::CustomClassHolder {
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
    memory weights, bias;
    memory::desc src, dst;
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

  std::string pickled_kind() const {
    if (activation.empty()) return kind;
    if (activation != "hardtanh") return kind + "+" + activation;
    char bounds[64];
    std::snprintf(bounds, sizeof bounds, "(%.17g,%.17g)", activation_min, activation_max);
    return kind + "+hardtanh" + bounds;
  }

  // Splits "conv2d+hardtanh(0,6)" into kind and activation.
  void unpickle_kind(const std::string& text) {
    const auto plus = text.find('+');
    kind = text.substr(0, plus);
    if (plus == std::string::npos) return;
    activation = text.substr(plus + 1);
    const auto open = activation.find('(');
    if (open == std::string::npos) return;
    TORCH_CHECK(std::sscanf(activation.c_str() + open, "(%lf,%lf)", &activation_min, &activation_max) == 2,
                "joulecut.Int8Layer: bad activation '", activation, "'");
    activation.resize(open);
  }

  State state() const {
    return State{kStateVersion, pickled_kind(), weight, weight_scales, bias, stride, padding, dilation, groups, input_scale,
                 input_zero_point, output_scale, output_zero_point, relu, output_float, residual, residual_scale,
                 residual_zero_point};
  }

  static c10::intrusive_ptr<Int8Layer> from_state(State s) {
    auto layer = c10::make_intrusive<Int8Layer>();
    TORCH_CHECK(std::get<0>(s) == kStateVersion, "joulecut.Int8Layer: state version ", std::get<0>(s),
                " is not supported by this libjoulecut_ops (", kStateVersion, ")");
    std::string kind;
    std::tie(std::ignore, kind, layer->weight, layer->weight_scales, layer->bias, layer->stride, layer->padding,
             layer->dilation, layer->groups, layer->input_scale, layer->input_zero_point, layer->output_scale,
             layer->output_zero_point, layer->relu, layer->output_float, layer->residual, layer->residual_scale,
             layer->residual_zero_point) = std::move(s);
    layer->unpickle_kind(kind);
    layer->validate();
    return layer;
  }

  void validate() const {
    TORCH_CHECK(kind == "conv2d" || kind == "linear", "joulecut.Int8Layer: unknown kind '", kind, "'");
    TORCH_CHECK(weight.scalar_type() == at::kChar && weight.dim() == (kind == "conv2d" ? 4 : 2),
                "joulecut.Int8Layer: weight must be int8 ", kind == "conv2d" ? "4-D" : "2-D");
    const std::int64_t out = weight.size(0);
    TORCH_CHECK(weight_scales.scalar_type() == at::kFloat && weight_scales.numel() == out,
                "joulecut.Int8Layer: one float32 weight scale per output channel expected");
    TORCH_CHECK(bias.numel() == 0 || (bias.scalar_type() == at::kFloat && bias.numel() == out),
                "joulecut.Int8Layer: bias must be float32 [", out, "]");
    TORCH_CHECK(input_scale > 0 && (output_float || output_scale > 0), "joulecut.Int8Layer: scales must be positive");
    TORCH_CHECK(input_zero_point >= 0 && input_zero_point <= 255 && output_zero_point >= 0 && output_zero_point <= 255,
                "joulecut.Int8Layer: zero points must be in [0, 255]");
    TORCH_CHECK(!residual || (kind == "conv2d" && !output_float && residual_scale > 0 && residual_zero_point >= 0 &&
                               residual_zero_point <= 255),
                "joulecut.Int8Layer: bad residual (conv2d with uint8 output, positive scale, zero point in [0, 255])");
    TORCH_CHECK(activation.empty() || (int8_activation_supported(activation) && !relu && !residual),
                "joulecut.Int8Layer: activation '", activation, "' is unknown or combined with relu or a residual");
    TORCH_CHECK(activation != "hardtanh" || activation_min < activation_max,
                "joulecut.Int8Layer: hardtanh needs min < max");
    if (kind == "conv2d")
      TORCH_CHECK(stride.size() == 2 && padding.size() == 2 && dilation.size() == 2 && groups >= 1 && out % groups == 0,
                  "joulecut.Int8Layer: bad convolution geometry");
  }

  // The int32 accumulator times these gives the output in its own quantized units (or float).
  // With a fused activation other than ReLU, real units: the activation is not scale-invariant,
  // and its post-op scales the result to output units.
  std::vector<float> output_scales() const {
    const float* w = weight_scales.data_ptr<float>();
    std::vector<float> scales(weight_scales.numel());
    const double divisor = output_float || !activation.empty() ? 1.0 : output_scale;
    for (std::size_t i = 0; i < scales.size(); ++i) scales[i] = float(input_scale * w[i] / divisor);
    return scales;
  }

  // oneDNN 2.x applies each eltwise post-op as dst = scale * f(dst; alpha, beta).
  void append_activation(dnnl::post_ops& ops) const {
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
  memory scaled_bias(const memory::desc& desc) const {
    memory m(desc, cpu_engine());
    float* out = static_cast<float*>(m.get_data_handle());
    const float* w = weight_scales.data_ptr<float>();
    for (std::int64_t i = 0; i < weight.size(0); ++i)
      out[i] = bias.numel() ? float(bias.data_ptr<float>()[i] / (input_scale * w[i])) : 0.f;
    return m;
  }

  dnnl::primitive_attr attributes() const {
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

  memory packed_weights(const memory::desc& wanted, const memory::desc& plain) const {
    memory user(plain, cpu_engine(), weight.data_ptr());
    memory packed(wanted, cpu_engine());
    dnnl::stream stream(cpu_engine());
    dnnl::reorder(user, packed).execute(stream, user, packed);
    stream.wait();
    return packed;
  }

  std::shared_ptr<Plan> conv_plan(const std::vector<std::int64_t>& shape) const {
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
    const SmallConvChoice choice = small_conv_choice();  // a bad value fails on every convolution
    if (groups == 1 && dilation[0] == 1 && dilation[1] == 1 && activation.empty() && choice != SmallConvChoice::onednn) {
      const std::vector<float> scales = output_scales();
      const float* bias_in_accumulator_units = static_cast<const float*>(plan->bias.get_data_handle());
      const at::Tensor plain = weight.contiguous();
      const kernels::SmallConvResidual sum{float(residual_scale), float(residual_zero_point)};
      const auto zero_point_out = std::uint8_t(output_float ? 0 : output_zero_point);
      // Built with the same arguments; a kernel is kept alive by its run function.
      auto add = [&](auto tag, const char* implementation) {
        using Kernel = typename decltype(tag)::type;
        auto kernel = std::make_shared<const Kernel>(small, plain.data_ptr<std::int8_t>(), scales.data(),
                                                     bias_in_accumulator_units, std::uint8_t(input_zero_point),
                                                     zero_point_out, relu, output_float, residual ? &sum : nullptr);
        plan->own.push_back({implementation, [kernel](const std::uint8_t* in, const std::uint8_t* r, void* out,
                                                      std::int64_t begin, std::int64_t end) {
                               kernel->run(in, r, out, begin, end);
                             }});
      };
      if (choice != SmallConvChoice::amx && kernels::SmallChannelConv::fits(small))
        add(type_tag<kernels::SmallChannelConv>{}, kDirectImplementation);
      if (choice != SmallConvChoice::direct && kernels::AmxConv::fits(small))
        add(type_tag<kernels::AmxConv>{}, kAmxImplementation);
    }
    plan->forced = choice != SmallConvChoice::timed && !plan->own.empty();
    if (plan->own.empty()) remember_implementation(plan->onednn_implementation);
    return plan;
  }

  std::shared_ptr<Plan> linear_plan(const std::vector<std::int64_t>& shape) const {
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

  void run_onednn(const Plan& plan, const at::Tensor& x, at::Tensor& y) const {
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

  // `residual`: uint8, the output's shape, for layers made with one. oneDNN's sum post-op reads
  // it from the output, where it is copied first; joulecut's kernels read it in place (copied only
  // if it is not channels-last). `own`: one of plan.own, or null for oneDNN.
  void execute(const Plan& plan, const OwnConv* own, const at::Tensor& x, const at::Tensor* residual,
               at::Tensor& y) const {
    if (own) {
      const std::uint8_t* in = x.data_ptr<std::uint8_t>();
      const at::Tensor channels_last = residual ? residual->contiguous(at::MemoryFormat::ChannelsLast) : at::Tensor();
      const std::uint8_t* sum = residual ? channels_last.data_ptr<std::uint8_t>() : nullptr;
      void* out = y.data_ptr();
      at::parallel_for(0, x.size(0), 1, [&](std::int64_t begin, std::int64_t end) { own->run(in, sum, out, begin, end); });
      return;
    }
    if (residual) y.copy_(*residual);
    run_onednn(plan, x, y);
  }

  // Times oneDNN's kernel and each of joulecut's on this input (after one untimed call each:
  // oneDNN compiles on its first) and keeps the fastest; once per layer and input shape. A
  // kernel forced by the environment is the only one of joulecut's built.
  void choose_kernel(Plan& plan, const at::Tensor& x, const at::Tensor* residual, at::Tensor& y) const {
    plan.use = plan.forced ? &plan.own.front() : nullptr;
    if (!plan.forced) {
      using clock = std::chrono::steady_clock;
      std::vector<const OwnConv*> candidates{nullptr};
      for (const OwnConv& own : plan.own) candidates.push_back(&own);
      std::vector<double> best(candidates.size(), 1e300);
      for (int round = 0; round < 4; ++round)
        for (std::size_t k = 0; k < candidates.size(); ++k) {
          const auto start = clock::now();
          execute(plan, candidates[k], x, residual, y);
          const double seconds = std::chrono::duration<double>(clock::now() - start).count();
          if (round > 0) best[k] = std::min(best[k], seconds);
        }
      plan.use = candidates[static_cast<std::size_t>(std::min_element(best.begin(), best.end()) - best.begin())];
    }
    plan.chosen = true;  // only once timing succeeded: a call that threw chooses again next time
    remember_implementation(plan.use ? plan.use->implementation : plan.onednn_implementation);
  }

  static void check_residual(const Plan& plan, const at::Tensor* residual) {
    if (!residual) return;
    TORCH_CHECK(residual->scalar_type() == at::kByte && residual->sizes() == c10::IntArrayRef(plan.dst_shape) &&
                    residual->device().is_cpu(),
                "joulecut::int8_conv2d_add: the residual must be uint8 ", c10::IntArrayRef(plan.dst_shape),
                " on the CPU, got ", residual->scalar_type(), " ", residual->sizes(), " on ", residual->device());
  }

  // `residual_input`: the tensor added by the sum post-op, for layers made with a residual.
  at::Tensor run(const at::Tensor& input, bool conv, const at::Tensor* residual_input = nullptr) {
    TORCH_CHECK(kind == (conv ? "conv2d" : "linear"), "joulecut: an Int8Layer of kind '", kind, "' was given to ",
                conv ? "int8_conv2d" : "int8_linear");
    TORCH_CHECK(residual == (residual_input != nullptr), "joulecut: an Int8Layer ", residual ? "with" : "without",
                " a residual was given to ", residual ? "int8_conv2d" : "int8_conv2d_add");
    TORCH_CHECK(input.device().is_cpu() && input.scalar_type() == at::kByte, "joulecut::int8_", kind,
                " takes a uint8 CPU tensor, got ", input.scalar_type(), " on ", input.device());
    at::Tensor x;
    if (conv) {
      TORCH_CHECK(input.dim() == 4, "joulecut::int8_conv2d: input must be 4-D, got ", input.sizes());
      x = input.contiguous(at::MemoryFormat::ChannelsLast);
    } else {
      TORCH_CHECK(input.dim() >= 1, "joulecut::int8_linear: input must have a feature dimension");
      x = input.reshape({-1, input.size(-1)}).contiguous();
    }
    const std::vector<std::int64_t> shape(x.sizes().begin(), x.sizes().end());
    const at::Tensor* residual_values = residual_input;
    std::shared_ptr<Plan> plan;
    {
      std::lock_guard<std::mutex> lock(mutex);
      auto& slot = plans[shape];
      if (!slot) slot = conv ? conv_plan(shape) : linear_plan(shape);
      check_residual(*slot, residual_values);
      if (!slot->own.empty() && !slot->chosen && x.numel() > 0) {
        at::Tensor scratch = at::empty(slot->dst_shape, x.options().dtype(output_float ? at::kFloat : at::kByte),
                                       at::MemoryFormat::ChannelsLast);
        choose_kernel(*slot, x, residual_values, scratch);
      }
      plan = slot;
    }
    at::Tensor y = at::empty(plan->dst_shape, x.options().dtype(output_float ? at::kFloat : at::kByte),
                             conv ? at::MemoryFormat::ChannelsLast : at::MemoryFormat::Contiguous);
    if (x.numel() > 0) execute(*plan, plan->use, x, residual_values, y);
    if (conv || input.dim() == 2) return y;
    std::vector<std::int64_t> out_shape(input.sizes().begin(), input.sizes().end());
    out_shape.back() = weight.size(0);
    return y.view(out_shape);
  }
};

c10::IValue make_int8_layer(const Int8LayerSpec& spec) {
  TORCH_CHECK(spec.kind == "conv2d" || spec.kind == "linear", "make_int8_layer: kind must be conv2d or linear");
  auto layer = c10::make_intrusive<Int8Layer>();
  const at::Tensor w = spec.weight.detach().to(at::kFloat).contiguous();
  const at::Tensor rows = w.reshape({w.size(0), -1});
  // Symmetric per-channel scales: max|w| / 127, 1 for an all-zero channel.
  at::Tensor scales = rows.abs().amax(1).div(127.0);
  scales = at::where(scales.gt(0), scales, at::ones_like(scales)).contiguous();
  layer->kind = spec.kind;
  layer->weight_scales = scales;
  const std::vector<std::int64_t> per_channel =
      spec.kind == "conv2d" ? std::vector<std::int64_t>{-1, 1, 1, 1} : std::vector<std::int64_t>{-1, 1};
  layer->weight = at::round(w / scales.view(per_channel)).clamp(-127, 127).to(at::kChar).contiguous();
  layer->bias = spec.bias.defined() ? spec.bias.detach().to(at::kFloat).contiguous().clone() : at::empty({0});
  layer->stride = spec.stride;
  layer->padding = spec.padding;
  layer->dilation = spec.dilation;
  layer->groups = spec.groups;
  layer->input_scale = spec.input_scale;
  layer->input_zero_point = spec.input_zero_point;
  layer->output_scale = spec.output_scale;
  layer->output_zero_point = spec.output_zero_point;
  layer->relu = spec.relu;
  layer->activation = spec.activation;
  layer->activation_min = spec.activation_min;
  layer->activation_max = spec.activation_max;
  layer->output_float = spec.output_float;
  layer->residual = spec.residual;
  layer->residual_scale = spec.residual_scale;
  layer->residual_zero_point = spec.residual_zero_point;
  layer->validate();
  return c10::IValue(layer);
}

bool int8_activation_supported(const std::string& activation) {
  static const std::set<std::string> supported{"hardtanh", "hardswish", "hardsigmoid", "silu", "sigmoid", "gelu",
                                               "gelu_tanh"};
  return supported.count(activation) > 0;
}

double int8_weight_error(const c10::IValue& value) {
  const auto layer = value.toCustomClass<Int8Layer>();
  return 0.5 * layer->weight_scales.max().item<double>();  // round to nearest: at most half a step per weight
}

Int8Geometry int8_layer_geometry(const c10::IValue& value) {
  const auto layer = value.toCustomClass<Int8Layer>();
  if (layer->kind != "conv2d") return {};
  return {layer->stride, layer->padding, layer->dilation, layer->groups};
}

std::pair<at::Tensor, at::Tensor> int8_layer_tensors(const c10::IValue& value) {
  const auto layer = value.toCustomClass<Int8Layer>();
  return {layer->weight, layer->bias.numel() ? layer->bias : at::Tensor()};
}

std::string int8_implementations() {
  std::lock_guard<std::mutex> lock(implementations_mutex);
  std::string out;
  for (const auto& s : implementations_seen) out += (out.empty() ? "" : ", ") + s;
  return out;
}

namespace {

at::Tensor quantize_u8(const at::Tensor& input, double scale, std::int64_t zero_point) {
  TORCH_CHECK(input.device().is_cpu() && input.scalar_type() == at::kFloat, "joulecut::quantize_u8 takes float32 CPU input");
  TORCH_CHECK(scale > 0 && zero_point >= 0 && zero_point <= 255, "joulecut::quantize_u8: bad scale or zero point");
  const at::MemoryFormat format = activation_format(input);
  const at::Tensor x = input.contiguous(format);
  at::Tensor q = at::empty(x.sizes(), x.options().dtype(at::kByte), format);
  const float* in = x.data_ptr<float>();
  std::uint8_t* out = q.data_ptr<std::uint8_t>();
  const float inverse = float(1.0 / scale), zp = float(zero_point);
  at::parallel_for(0, x.numel(), 16384, [&](std::int64_t begin, std::int64_t end) {
    kernels::quantize_u8(in + begin, out + begin, end - begin, inverse, zp);
  });
  return q;
}

at::Tensor dequantize_u8(const at::Tensor& input, double scale, std::int64_t zero_point) {
  TORCH_CHECK(input.device().is_cpu() && input.scalar_type() == at::kByte, "joulecut::dequantize_u8 takes uint8 CPU input");
  const at::MemoryFormat format = input.is_contiguous(at::MemoryFormat::ChannelsLast) && input.dim() == 4
                                      ? at::MemoryFormat::ChannelsLast
                                      : at::MemoryFormat::Contiguous;
  const at::Tensor q = input.contiguous(format);
  at::Tensor x = at::empty(q.sizes(), q.options().dtype(at::kFloat), format);
  const std::uint8_t* in = q.data_ptr<std::uint8_t>();
  float* out = x.data_ptr<float>();
  const float s = float(scale), zp = float(zero_point);
  at::parallel_for(0, q.numel(), 16384, [&](std::int64_t begin, std::int64_t end) {
    kernels::dequantize_u8(in + begin, out + begin, end - begin, s, zp);
  });
  return x;
}

at::Tensor int8_conv2d(const at::Tensor& input, const c10::intrusive_ptr<Int8Layer>& layer) {
  return layer->run(input, true);
}

at::Tensor int8_conv2d_add(const at::Tensor& input, const c10::intrusive_ptr<Int8Layer>& layer, const at::Tensor& residual) {
  return layer->run(input, true, &residual);
}

at::Tensor int8_linear(const at::Tensor& input, const c10::intrusive_ptr<Int8Layer>& layer) {
  return layer->run(input, false);
}

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

at::Tensor int8_max_pool2d(const at::Tensor& input, std::vector<std::int64_t> kernel, std::vector<std::int64_t> stride,
                           std::vector<std::int64_t> padding) {
  if (stride.empty()) stride = kernel;  // torch's default
  TORCH_CHECK(input.device().is_cpu() && input.scalar_type() == at::kByte && input.dim() == 4,
              "joulecut::int8_max_pool2d takes a 4-D uint8 CPU tensor, got ", input.scalar_type(), " ", input.sizes());
  TORCH_CHECK(kernel.size() == 2 && stride.size() == 2 && padding.size() == 2 && kernel[0] > 0 && kernel[1] > 0 &&
                  stride[0] > 0 && stride[1] > 0 && padding[0] >= 0 && padding[1] >= 0 &&
                  2 * padding[0] <= kernel[0] && 2 * padding[1] <= kernel[1],
              "joulecut::int8_max_pool2d: bad kernel, stride or padding");
  const at::Tensor x = input.contiguous(at::MemoryFormat::ChannelsLast);
  kernels::MaxPoolShape s{x.size(0), x.size(2), x.size(3), x.size(1), 0, 0, kernel[0], kernel[1], stride[0], stride[1],
                          padding[0], padding[1]};
  s.oh = (s.h + 2 * s.ph - s.kh) / s.sh + 1;
  s.ow = (s.w + 2 * s.pw - s.kw) / s.sw + 1;
  TORCH_CHECK(s.oh > 0 && s.ow > 0, "joulecut::int8_max_pool2d: input ", s.h, "x", s.w, " is smaller than the kernel");
  at::Tensor y = at::empty({s.n, s.c, s.oh, s.ow}, x.options(), at::MemoryFormat::ChannelsLast);
  const std::uint8_t* in = x.data_ptr<std::uint8_t>();
  std::uint8_t* out = y.data_ptr<std::uint8_t>();
  at::parallel_for(0, s.n, 8, [&](std::int64_t begin, std::int64_t end) { kernels::max_pool_u8_nhwc(in, out, s, begin, end); });
  return y;
}

at::Tensor int8_adaptive_avg_pool2d(const at::Tensor& input, std::vector<std::int64_t> output_size) {
  TORCH_CHECK(input.dim() == 4 && output_size.size() == 2 && output_size[0] > 0 && output_size[1] > 0,
              "joulecut::int8_adaptive_avg_pool2d: 4-D input and two output sizes expected");
  const std::int64_t h = input.size(2), w = input.size(3);
  TORCH_CHECK(h % output_size[0] == 0 && w % output_size[1] == 0, "joulecut::int8_adaptive_avg_pool2d: input ", h, "x",
              w, " is not a multiple of the output size ", output_size[0], "x", output_size[1]);
  const std::vector<std::int64_t> kernel{h / output_size[0], w / output_size[1]};
  return int8_pool(input, dnnl::algorithm::pooling_avg_exclude_padding, kernel, kernel, {0, 0},
                   "int8_adaptive_avg_pool2d");
}

at::Tensor int8_add(const at::Tensor& a, double a_scale, std::int64_t a_zero_point, const at::Tensor& b, double b_scale,
                    std::int64_t b_zero_point, double scale, std::int64_t zero_point, bool relu) {
  TORCH_CHECK(a.scalar_type() == at::kByte && b.scalar_type() == at::kByte && a.device().is_cpu() && b.device().is_cpu(),
              "joulecut::int8_add takes uint8 CPU tensors");
  TORCH_CHECK(a.sizes() == b.sizes(), "joulecut::int8_add: shapes differ: ", a.sizes(), " and ", b.sizes());
  TORCH_CHECK(scale > 0, "joulecut::int8_add: scale must be positive");
  const at::MemoryFormat format = activation_format(a);
  const at::Tensor x = a.contiguous(format), y = b.contiguous(format);
  at::Tensor out = at::empty(x.sizes(), x.options(), format);
  const std::uint8_t *pa = x.data_ptr<std::uint8_t>(), *pb = y.data_ptr<std::uint8_t>();
  std::uint8_t* po = out.data_ptr<std::uint8_t>();
  // out = round((sa (a - za) + sb (b - zb)) / s) + z, in one multiply-add per input.
  const float ka = float(a_scale / scale), kb = float(b_scale / scale);
  const float offset = float(zero_point) - ka * float(a_zero_point) - kb * float(b_zero_point);
  const float low = relu ? float(zero_point) : 0.f;
  at::parallel_for(0, x.numel(), 16384, [&](std::int64_t begin, std::int64_t end) {
    kernels::add_u8(pa + begin, pb + begin, po + begin, end - begin, ka, kb, offset, low);
  });
  return out;
}

// Squeeze-and-excitation's `scale * x` on a uint8 channels-last x: each image's channels scaled
// by its float [N, C, 1, 1] scale, requantized to the output's scale and zero point in one pass.
at::Tensor int8_scale_channels(const at::Tensor& input, double input_scale, std::int64_t input_zero_point,
                               const at::Tensor& scale, double output_scale, std::int64_t output_zero_point) {
  TORCH_CHECK(input.device().is_cpu() && input.scalar_type() == at::kByte && input.dim() == 4,
              "joulecut::int8_scale_channels takes a 4-D uint8 CPU tensor, got ", input.scalar_type(), " ", input.sizes());
  const std::int64_t n = input.size(0), c = input.size(1), hw = input.size(2) * input.size(3);
  TORCH_CHECK(scale.numel() == n * c && (scale.dim() == 4 || scale.dim() == 2) && scale.size(0) == n && scale.size(1) == c,
              "joulecut::int8_scale_channels: the scale must be [N, C, 1, 1] for input ", input.sizes(), ", got ",
              scale.sizes());
  TORCH_CHECK(output_scale > 0, "joulecut::int8_scale_channels: output scale must be positive");
  const at::Tensor x = input.contiguous(at::MemoryFormat::ChannelsLast);
  const at::Tensor k = (scale.reshape({n, c}).to(at::kFloat) * float(input_scale / output_scale)).contiguous();
  at::Tensor y = at::empty(x.sizes(), x.options(), at::MemoryFormat::ChannelsLast);
  const std::uint8_t* in = x.data_ptr<std::uint8_t>();
  std::uint8_t* out = y.data_ptr<std::uint8_t>();
  const float* factors = k.data_ptr<float>();
  at::parallel_for(0, n * hw, std::max<std::int64_t>(1, 16384 / std::max<std::int64_t>(c, 1)),
                   [&](std::int64_t begin, std::int64_t end) {
                     for (std::int64_t row = begin; row < end;) {
                       const std::int64_t image = row / hw, stop = std::min(end, (image + 1) * hw);
                       kernels::scale_channels_u8(in + row * c, out + row * c, stop - row, c, factors + image * c,
                                                  float(input_zero_point), float(output_zero_point));
                       row = stop;
                     }
                   });
  return y;
}

}  // namespace
}  // namespace joulecut

TORCH_LIBRARY_FRAGMENT(joulecut, m) {
  m.class_<joulecut::Int8Layer>("Int8Layer")
      .def_pickle([](const c10::intrusive_ptr<joulecut::Int8Layer>& self) { return self->state(); },
                  [](joulecut::Int8Layer::State state) { return joulecut::Int8Layer::from_state(std::move(state)); });
  m.def("quantize_u8(Tensor x, float scale, int zero_point) -> Tensor", &joulecut::quantize_u8);
  m.def("dequantize_u8(Tensor q, float scale, int zero_point) -> Tensor", &joulecut::dequantize_u8);
  m.def("int8_conv2d(Tensor q, __torch__.torch.classes.joulecut.Int8Layer layer) -> Tensor", &joulecut::int8_conv2d);
  m.def("int8_conv2d_add(Tensor q, __torch__.torch.classes.joulecut.Int8Layer layer, Tensor residual) -> Tensor",
        &joulecut::int8_conv2d_add);
  m.def("int8_linear(Tensor q, __torch__.torch.classes.joulecut.Int8Layer layer) -> Tensor", &joulecut::int8_linear);
  m.def("int8_max_pool2d(Tensor q, int[] kernel, int[] stride, int[] padding) -> Tensor", &joulecut::int8_max_pool2d);
  m.def("int8_adaptive_avg_pool2d(Tensor q, int[] output_size) -> Tensor", &joulecut::int8_adaptive_avg_pool2d);
  m.def("int8_scale_channels(Tensor q, float q_scale, int q_zero_point, Tensor scale, float out_scale, "
        "int out_zero_point) -> Tensor",
        &joulecut::int8_scale_channels);
  m.def("int8_add(Tensor a, float a_scale, int a_zero_point, Tensor b, float b_scale, int b_zero_point, float scale, "
        "int zero_point, bool relu) -> Tensor",
        &joulecut::int8_add);
}
