// Affine group scales/biases of one row converted to fp32, 16 groups per instruction (AVX-512 BW).
// Include only from *_avx512.cpp TUs (internal linkage; see kernels_internal.h).
#pragma once

#include "kernels/cpu/simd_driver.h"

namespace flashmoe::cpu {
namespace {

inline __m512 avx512_load_params16(const uint8_t* p, DType dtype, __mmask16 m) {
    switch (dtype) {
        case DType::BF16:
            return _mm512_castsi512_ps(_mm512_slli_epi32(_mm512_cvtepu16_epi32(_mm256_maskz_loadu_epi16(m, p)), 16));
        case DType::F16: return _mm512_cvtph_ps(_mm256_maskz_loadu_epi16(m, p));
        default: return _mm512_maskz_loadu_ps(m, p);
    }
}

// sc[g], bi[g] for g in [0, groups) of `row`.
inline void avx512_load_params(const Matrix& w, int64_t row, int64_t groups, float* sc, float* bi) {
    const int64_t es = int64_t(dtype_size(w.scale_dtype));
    const auto* s = static_cast<const uint8_t*>(w.scales) + row * groups * es;
    const auto* b = static_cast<const uint8_t*>(w.biases) + row * groups * es;
    for (int64_t g = 0; g < groups; g += 16) {
        const int64_t left = groups - g;
        const __mmask16 m = left >= 16 ? __mmask16(0xffff) : __mmask16((1u << left) - 1u);
        _mm512_mask_storeu_ps(sc + g, m, avx512_load_params16(s + g * es, w.scale_dtype, m));
        _mm512_mask_storeu_ps(bi + g, m, avx512_load_params16(b + g * es, w.scale_dtype, m));
    }
}

}  // namespace
}  // namespace flashmoe::cpu
