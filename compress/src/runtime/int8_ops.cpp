// joulecut's int8 runtime on oneDNN (see joulecut/int8.h): the TorchScript ops and their
// registration. Weights are int8 per output channel, activations uint8 per tensor. Each layer
// keeps, per input shape, a oneDNN primitive whose weights were reordered into the layout that
// primitive wants once, so a call is one primitive execution: no weight reorder, no separate
// requantize or ReLU pass over the output (int8_layer.h, int8_onednn.cpp); convolutions with few
// channels may run joulecut's own kernels instead (int8_conv_choice.cpp).
#include <ATen/ATen.h>
#include <ATen/Parallel.h>
#include <torch/custom_class.h>
#include <torch/library.h>

#include <oneapi/dnnl/dnnl.hpp>

#include <algorithm>
#include <cstdint>
#include <utility>
#include <vector>

#include "int8_kernels.h"
#include "int8_layer.h"
#include "joulecut/int8.h"

namespace joulecut {
namespace {

using int8_runtime::int8_pool;

// A 4-D activation is channels-last for oneDNN's int8 kernels; anything else row-major.
at::MemoryFormat activation_format(const at::Tensor& t) {
  return t.dim() == 4 ? at::MemoryFormat::ChannelsLast : at::MemoryFormat::Contiguous;
}

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
// mapping (average up to rounding). Max pooling runs joulecut's kernel, average pooling oneDNN's.
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
