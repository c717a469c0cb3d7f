// Device helpers shared by the weight kernels (matmul.cu, mma.cu): scale and bias reads in any of
// their dtypes, and SiLU.
#pragma once

#include "kernels/cuda/dmat.h"

#include <cuda_fp16.h>

#include <cstdint>

namespace flashmoe::cuda {

__device__ __forceinline__ float bf16f(uint16_t h) { return __uint_as_float(uint32_t(h) << 16); }
__device__ __forceinline__ float f16f(uint16_t h) { return __half2float(__ushort_as_half(h)); }

__device__ __forceinline__ float load_scale(const void* p, int dtype, int64_t i) {
    if (dtype == kBF16) return bf16f(static_cast<const uint16_t*>(p)[i]);
    if (dtype == kF16) return f16f(static_cast<const uint16_t*>(p)[i]);
    return static_cast<const float*>(p)[i];
}

__device__ __forceinline__ float silu(float x) { return x / (1.0f + expf(-x)); }

}  // namespace flashmoe::cuda
