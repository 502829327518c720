#pragma once
// Internal to joulecut's few-channel convolutions (small_channel_conv.cpp, amx_conv.cpp): what
// both share, the instruction-set test, the register width and oneDNN's epilogue, so that the
// two kernels agree exactly. Included by kernel files only, all compiled with the same flags
// (-march=native under JOULECUT_NATIVE_KERNELS): what this defines depends on them.
#include <cstdint>

#include "int8_kernels.h"

#if defined(__AVX512F__) && defined(__AVX512BW__) && defined(__AVX512VL__) && defined(__AVX512VNNI__)
#include <immintrin.h>
#define JOULECUT_SMALL_CONV_VNNI 1
#endif

namespace joulecut::kernels {

inline constexpr std::int64_t kLanes = 16;  // int32 lanes of an AVX-512 register

inline std::int64_t round_up(std::int64_t v, std::int64_t to) { return (v + to - 1) / to * to; }

#ifdef JOULECUT_SMALL_CONV_VNNI
// oneDNN's epilogue, in its order, on 16 sums of a channels-last output (both kernels share it,
// so they agree exactly): minus the zero point's products, plus bias, times scale, plus the
// residual (one rounding, as oneDNN's sum post-op), ReLU, then a float out, or plus the output
// zero point, saturated and rounded half to even to uint8.
struct Epilogue {
  Epilogue(bool relu, std::uint8_t output_zero_point, bool output_float, const SmallConvResidual* residual)
      : low(_mm512_set1_ps(relu ? 0.f : -3e38f)),
        zero_point(_mm512_set1_ps(float(output_zero_point))),
        residual_scale(_mm512_set1_ps(residual ? residual->scale : 0.f)),
        residual_zero_point(_mm512_set1_ps(residual ? residual->zero_point : 0.f)),
        output_float(output_float),
        with_residual(residual != nullptr) {}
  // `sums` lands at output[at, at + 16), lanes beyond `lanes` untouched; `residual` is read at
  // the same place.
  void store(__m512i sums, const std::int32_t* offset, const float* bias, const float* scale,
             const std::uint8_t* residual, void* out, std::int64_t at, __mmask16 lanes) const {
    store(sums, _mm512_loadu_si512(offset), _mm512_loadu_ps(bias), _mm512_loadu_ps(scale), residual, out, at, lanes);
  }
  void store(__m512i sums, __m512i offset, __m512 bias, __m512 scale, const std::uint8_t* residual, void* out,
             std::int64_t at, __mmask16 lanes) const {
    const __m512i exact = _mm512_sub_epi32(sums, offset);
    __m512 r = _mm512_mul_ps(_mm512_add_ps(_mm512_cvtepi32_ps(exact), bias), scale);
    if (with_residual) {
      const __m128i bytes = _mm_maskz_loadu_epi8(lanes, residual + at);
      const __m512 added = _mm512_sub_ps(_mm512_cvtepi32_ps(_mm512_cvtepu8_epi32(bytes)), residual_zero_point);
      r = _mm512_fmadd_ps(residual_scale, added, r);  // explicit: GCC contracts a mul and add only at -O3
    }
    r = _mm512_max_ps(r, low);
    if (output_float) {
      _mm512_mask_storeu_ps(static_cast<float*>(out) + at, lanes, r);
      return;
    }
    r = _mm512_min_ps(_mm512_max_ps(_mm512_add_ps(r, zero_point), _mm512_setzero_ps()), _mm512_set1_ps(255.f));
    _mm512_mask_cvtusepi32_storeu_epi8(static_cast<std::uint8_t*>(out) + at, lanes, _mm512_cvtps_epi32(r));  // nearest even
  }
  __m512 low, zero_point, residual_scale, residual_zero_point;
  bool output_float, with_residual;
};
#endif

}  // namespace joulecut::kernels
