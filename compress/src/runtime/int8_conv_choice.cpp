// joulecut's int8 runtime: joulecut's own convolutions (SmallChannelConv, AmxConv) where they fit
// a layer and input shape, the choice between them and oneDNN's primitive (timed, or forced by
// the environment), and a layer's call.
#include <ATen/Parallel.h>

#include <algorithm>
#include <chrono>
#include <cstdint>
#include <cstdlib>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "int8_kernels.h"
#include "int8_layer.h"

namespace joulecut {
namespace {

using int8_runtime::remember_implementation;

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

}  // namespace

// After conv_plan built oneDNN's primitive for the input shape `small`: joulecut's kernels that
// fit it, and whether the environment forced one.
void Int8Layer::add_own_convs(Plan& plan, const kernels::SmallConvShape& small) const {
  const SmallConvChoice choice = small_conv_choice();  // a bad value fails on every convolution
  if (groups == 1 && dilation[0] == 1 && dilation[1] == 1 && activation.empty() && choice != SmallConvChoice::onednn) {
    const std::vector<float> scales = output_scales();
    const float* bias_in_accumulator_units = static_cast<const float*>(plan.bias.get_data_handle());
    const at::Tensor plain = weight.contiguous();
    const kernels::SmallConvResidual sum{float(residual_scale), float(residual_zero_point)};
    const auto zero_point_out = std::uint8_t(output_float ? 0 : output_zero_point);
    // Built with the same arguments; a kernel is kept alive by its run function.
    auto add = [&](auto tag, const char* implementation) {
      using Kernel = typename decltype(tag)::type;
      auto kernel = std::make_shared<const Kernel>(small, plain.data_ptr<std::int8_t>(), scales.data(),
                                                   bias_in_accumulator_units, std::uint8_t(input_zero_point),
                                                   zero_point_out, relu, output_float, residual ? &sum : nullptr);
      plan.own.push_back({implementation, [kernel](const std::uint8_t* in, const std::uint8_t* r, void* out,
                                                   std::int64_t begin, std::int64_t end) {
                            kernel->run(in, r, out, begin, end);
                          }});
    };
    if (choice != SmallConvChoice::amx && kernels::SmallChannelConv::fits(small))
      add(type_tag<kernels::SmallChannelConv>{}, kDirectImplementation);
    if (choice != SmallConvChoice::direct && kernels::AmxConv::fits(small))
      add(type_tag<kernels::AmxConv>{}, kAmxImplementation);
  }
  plan.forced = choice != SmallConvChoice::timed && !plan.own.empty();
  if (plan.own.empty()) remember_implementation(plan.onednn_implementation);
}

// `residual`: uint8, the output's shape, for layers made with one. oneDNN's sum post-op reads
// it from the output, where it is copied first; joulecut's kernels read it in place (copied only
// if it is not channels-last). `own`: one of plan.own, or null for oneDNN.
void Int8Layer::execute(const Plan& plan, const OwnConv* own, const at::Tensor& x, const at::Tensor* residual,
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
void Int8Layer::choose_kernel(Plan& plan, const at::Tensor& x, const at::Tensor* residual, at::Tensor& y) const {
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

void Int8Layer::check_residual(const Plan& plan, const at::Tensor* residual) {
  if (!residual) return;
  TORCH_CHECK(residual->scalar_type() == at::kByte && residual->sizes() == c10::IntArrayRef(plan.dst_shape) &&
                  residual->device().is_cpu(),
              "joulecut::int8_conv2d_add: the residual must be uint8 ", c10::IntArrayRef(plan.dst_shape),
              " on the CPU, got ", residual->scalar_type(), " ", residual->sizes(), " on ", residual->device());
}

// `residual_input`: the tensor added by the sum post-op, for layers made with a residual.
at::Tensor Int8Layer::run(const at::Tensor& input, bool conv, const at::Tensor* residual_input) {
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

}  // namespace joulecut
