// Device helpers shared by the kernel files: scale and bias reads in any of their dtypes, the
// activation functions, warp and block reductions, the int8 quantisation of activations, the pieces
// that fused launches share with the kernels of the ops they fold in (norm, conv step, router top-k),
// and the last-block hand-off those fusions use.
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

// Sum over the block (blockDim.x a multiple of 32, at most 1024); every thread gets the result.
// (Threads beyond a row's length add zeros: a block of 256 threads sums a 128-wide row bit for bit
// as a block of 128 does.)
__device__ __forceinline__ float block_sum(float v) {
    __shared__ float part[32];
    __shared__ float total;
    const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
    v = warp_sum(v);
    __syncthreads();  // `part` may still be read by a previous call
    if (lane == 0) part[warp] = v;
    __syncthreads();
    if (warp == 0) {
        float s = lane < int(blockDim.x >> 5) ? part[lane] : 0.0f;
        s = warp_sum(s);
        if (lane == 0) total = s;
    }
    __syncthreads();
    return total;
}

// out = rmsnorm(x + add) * w over one row of dim (add null: x), by the whole block; x is not
// changed. Every kernel running it with the same block size gets the same bits.
__device__ __forceinline__ void add_rmsnorm_row(const float* x, const float* add, const float* w, int64_t dim,
                                                float eps, float* out) {
    float ss = 0;
    for (int64_t i = threadIdx.x; i < dim; i += blockDim.x) {
        const float v = add ? x[i] + add[i] : x[i];
        ss += v * v;
    }
    ss = block_sum(ss);
    const float inv = 1.0f / sqrtf(ss / float(dim) + eps);
    for (int64_t i = threadIdx.x; i < dim; i += blockDim.x) out[i] = ((add ? x[i] + add[i] : x[i]) * inv) * w[i];
}

// o = w * rmsnorm(o) * silu(z) over one row of dim, by the whole block (the DeltaNet's output norm).
__device__ __forceinline__ void gated_rmsnorm_row(float* o, const float* z, const float* w, int64_t dim, float eps) {
    float ss = 0;
    for (int64_t i = threadIdx.x; i < dim; i += blockDim.x) {
        const float v = __ldcg(o + i);  // (may have been written by another block)
        ss += v * v;
    }
    ss = block_sum(ss);
    const float inv = 1.0f / sqrtf(ss / float(dim) + eps);
    for (int64_t i = threadIdx.x; i < dim; i += blockDim.x) o[i] = ((__ldcg(o + i) * inv) * w[i]) * silu(z[i]);
}

// One token of the DeltaNet's causal conv on channel ch (of C): silu of sum_j taps[ch, j] * window[j]
// over the window [state rows 0 .. K-2 ; v], then the state advanced to end with v.
__device__ __forceinline__ float conv_step(float v, float* state, const float* taps, int64_t ch, int64_t C,
                                           int64_t K) {
    float s = 0;
    for (int64_t j = 0; j < K; ++j) s = fmaf(taps[ch * K + j], j < K - 1 ? state[j * C + ch] : v, s);
    for (int64_t i = 0; i + 1 < K; ++i) state[i * C + ch] = i + 2 < K ? state[(i + 1) * C + ch] : v;
    return silu(s);
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
// calls it; lane j < k gets choice j. (The logits are read from L2: another block may have just
// written them.)
constexpr int kTopKPerLane = 16;
__device__ __forceinline__ void warp_top_k(const float* logits, int64_t experts, int64_t k, int32_t& id,
                                           float& weight) {
    const int lane = threadIdx.x & 31;
    float p[kTopKPerLane];
    float mx = -FLT_MAX;
#pragma unroll
    for (int i = 0; i < kTopKPerLane; ++i) {
        const int64_t e = lane + int64_t(i) * 32;
        p[i] = e < experts ? __ldcg(logits + e) : -FLT_MAX;
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

// Whether this block is the last of `blocks` to arrive on `counter`; if so, every write the others
// made before arriving is visible to it (read them from L2: __ldcg), and the counter is back at zero
// for the next launch. Every thread of the block calls it, after its last write the others need.
__device__ __forceinline__ bool last_to_arrive(unsigned* counter, unsigned blocks) {
    __shared__ bool last;
    __threadfence();
    __syncthreads();
    if (threadIdx.x == 0) {
        last = atomicAdd(counter, 1u) == blocks - 1;
        if (last) *counter = 0;  // every block has arrived
    }
    __syncthreads();
    if (last) __threadfence();
    return last;
}

}  // namespace flashmoe::cuda
