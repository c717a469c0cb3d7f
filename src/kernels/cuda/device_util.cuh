// Device helpers shared by the kernel files: scale and bias reads in any of their dtypes, the
// activation functions, warp reductions, the router's top k, and the int8 quantisation of activations.
#pragma once

#include "kernels/cuda/dmat.h"

#include <cuda_fp16.h>

#include <cfloat>
#include <climits>

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

// The largest (v, i) over the warp, ties to the lower index; every lane gets it.
__device__ __forceinline__ void warp_arg_max(float& v, int32_t& i) {
#pragma unroll
    for (int o = 16; o > 0; o >>= 1) {
        const float ov = __shfl_xor_sync(0xffffffffu, v, o);
        const int32_t oi = __shfl_xor_sync(0xffffffffu, i, o);
        if (ov > v || (ov == v && oi < i)) {
            v = ov;
            i = oi;
        }
    }
}

// The router of one token: softmax over `experts` logits (at most kTopKPerLane * 32), the k largest
// (at most 32; ties: the lower index), their weights renormalised to sum 1. Every lane of a warp
// calls it; lane j < k gets choice j.
constexpr int kTopKPerLane = 16;
__device__ __forceinline__ void warp_top_k(const float* logits, int64_t experts, int64_t k, int32_t& id,
                                           float& weight) {
    const int lane = threadIdx.x & 31;
    float p[kTopKPerLane];
    float mx = -FLT_MAX;
#pragma unroll
    for (int i = 0; i < kTopKPerLane; ++i) {
        const int64_t e = lane + int64_t(i) * 32;
        p[i] = e < experts ? logits[e] : -FLT_MAX;
        mx = fmaxf(mx, p[i]);
    }
    mx = warp_max(mx);
    float sum = 0;
#pragma unroll
    for (int i = 0; i < kTopKPerLane; ++i) {
        const int64_t e = lane + int64_t(i) * 32;
        if (e < experts) {
            p[i] = expf(p[i] - mx);
            sum += p[i];
        } else {
            p[i] = -1.0f;  // never chosen
        }
    }
    sum = warp_sum(sum);
    const float inv = 1.0f / sum;
#pragma unroll
    for (int i = 0; i < kTopKPerLane; ++i)
        if (lane + int64_t(i) * 32 < experts) p[i] *= inv;
    float chosen_sum = 0;
    for (int64_t j = 0; j < k; ++j) {
        float bv = -1.0f;
        int32_t bi = INT32_MAX;
#pragma unroll
        for (int i = 0; i < kTopKPerLane; ++i) {
            if (p[i] > bv) {  // ascending index within a lane: ties keep the lower index
                bv = p[i];
                bi = lane + i * 32;
            }
        }
        warp_arg_max(bv, bi);
        if (lane == j) {
            id = bi;
            weight = bv;
        }
        chosen_sum += bv;
        if ((bi & 31) == lane) {
#pragma unroll
            for (int i = 0; i < kTopKPerLane; ++i)
                if (i == (bi >> 5)) p[i] = -2.0f;
        }
    }
    if (lane < k) weight = weight / chosen_sum;
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
