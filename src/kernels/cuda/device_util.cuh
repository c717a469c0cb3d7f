// Device helpers shared by the kernel files: scale and bias reads in any of their dtypes, the
// activation functions, warp reductions, and the int8 quantisation of activations.
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
__device__ __forceinline__ float sigmoid(float x) { return 1.0f / (1.0f + expf(-x)); }
__device__ __forceinline__ float softplus(float x) { return x > 20.0f ? x : log1pf(expf(x)); }

__device__ __forceinline__ float warp_sum(float v) {
#pragma unroll
    for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
    return v;
}
__device__ __forceinline__ float warp_max(float v) {
#pragma unroll
    for (int o = 16; o > 0; o >>= 1) v = fmaxf(v, __shfl_xor_sync(0xffffffffu, v, o));
    return v;
}

// Eight activations of a group whose max |x| is amax as int8 codes, the CPU's bits
// (kernels/cpu/matmul.h): round-half-even(x * (127 / amax)) clamped to [-127, 127]. Returns their sum.
__device__ __forceinline__ int quantize8(const float (&v)[8], float amax, int (&q)[8]) {
    const float inv = amax > 0.0f ? 127.0f / amax : 0.0f;
    int sum = 0;
#pragma unroll
    for (int e = 0; e < 8; ++e) {
        q[e] = int(fminf(fmaxf(rintf(v[e] * inv), -127.0f), 127.0f));
        sum += q[e];
    }
    return sum;
}

__device__ __forceinline__ uint32_t pack_s8(int a, int b, int c, int d) {
    return (uint32_t(a) & 0xffu) | (uint32_t(b) & 0xffu) << 8 | (uint32_t(c) & 0xffu) << 16 | uint32_t(d) << 24;
}

}  // namespace flashmoe::cuda
