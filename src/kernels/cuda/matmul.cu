// Weight-matrix kernels: matmul (one warp per output row, up to NT tokens per pass so each weight is
// decoded once per NT tokens), embedding lookup, and the routed-expert kernels that run many experts
// in one launch. Every weight format of ops/tensor.h is decoded here: f32, f16, bf16, and MLX affine
// with 2..8 bits; 2-, 4- and 8-bit codes take a word-wise path (codes never straddle a 32-bit word),
// other widths a per-element path.
#include "kernels/cuda/cuda_util.h"
#include "kernels/cuda/ops.h"

#include <cuda_bf16.h>
#include <cuda_fp16.h>

#include <algorithm>

namespace flashmoe::cuda {

namespace {

constexpr int kWarpsPerBlock = 8;

__device__ __forceinline__ float bf16f(uint16_t h) { return __uint_as_float(uint32_t(h) << 16); }
__device__ __forceinline__ float f16f(uint16_t h) { return __half2float(__ushort_as_half(h)); }

__device__ __forceinline__ float load_scale(const void* p, int dtype, int64_t i) {
    if (dtype == kBF16) return bf16f(static_cast<const uint16_t*>(p)[i]);
    if (dtype == kF16) return f16f(static_cast<const uint16_t*>(p)[i]);
    return static_cast<const float*>(p)[i];
}

// Element (r, c) of w in fp32 (any format; the slow, obviously right path).
__device__ float load_weight(const DMat& w, int64_t r, int64_t c) {
    switch (w.format) {
        case kF32: return static_cast<const float*>(w.data)[r * w.cols + c];
        case kF16: return f16f(static_cast<const uint16_t*>(w.data)[r * w.cols + c]);
        case kBF16: return bf16f(static_cast<const uint16_t*>(w.data)[r * w.cols + c]);
        default: {
            const uint8_t* row = static_cast<const uint8_t*>(w.data) + r * w.row_bytes;
            const int64_t bit = c * w.bits;
            const int shift = int(bit & 7);
            uint32_t v = row[bit >> 3];
            if (shift + w.bits > 8) v |= uint32_t(row[(bit >> 3) + 1]) << 8;
            const uint32_t code = (v >> shift) & ((1u << w.bits) - 1u);
            const int64_t gi = r * (w.cols / w.group) + c / w.group;
            return load_scale(w.scales, w.scale_dtype, gi) * float(code) + load_scale(w.biases, w.scale_dtype, gi);
        }
    }
}

// One 32-bit word of BITS-bit codes holding columns [c0, c0 + 32/BITS): adds
// scale * sum(q x) + bias * sum(x) to each token's accumulator.
template <int BITS, int NT>
__device__ __forceinline__ void affine_word(uint32_t word, int64_t c0, float s, float b, const float* const* xs,
                                            float (&acc)[NT]) {
    constexpr int kCodes = 32 / BITS;
    constexpr uint32_t kMask = (1u << BITS) - 1u;
#pragma unroll
    for (int j = 0; j < NT; ++j) {
        const float4* xv = reinterpret_cast<const float4*>(xs[j] + c0);
        float qx = 0, sx = 0;
#pragma unroll
        for (int v = 0; v < kCodes / 4; ++v) {
            const float4 x4 = xv[v];
            const float xe[4] = {x4.x, x4.y, x4.z, x4.w};
#pragma unroll
            for (int e = 0; e < 4; ++e) {
                const float q = float((word >> ((v * 4 + e) * BITS)) & kMask);
                qx = fmaf(q, xe[e], qx);
                sx += xe[e];
            }
        }
        acc[j] = fmaf(s, qx, fmaf(b, sx, acc[j]));
    }
}

// Word-wise affine path for BITS in {4, 8} (x rows 16-byte aligned, cols a multiple of 32/BITS * ...).
template <int BITS, int NT>
__device__ void affine_row(const DMat& w, int64_t r, const float* const* xs, float (&acc)[NT], int lane) {
    constexpr int kCodes = 32 / BITS;
    const uint32_t* row = reinterpret_cast<const uint32_t*>(static_cast<const uint8_t*>(w.data) + r * w.row_bytes);
    const int64_t words = w.row_bytes / 4;
    const int64_t groups = w.cols / w.group;
    const int64_t gbase = r * groups;
    if ((w.row_bytes & 15) == 0) {
        const uint4* row4 = reinterpret_cast<const uint4*>(row);
        for (int64_t v = lane; v < words / 4; v += 32) {
            const uint4 q = row4[v];
            const uint32_t wq[4] = {q.x, q.y, q.z, q.w};
#pragma unroll
            for (int i = 0; i < 4; ++i) {
                const int64_t c0 = (v * 4 + i) * kCodes;
                const int64_t g = gbase + c0 / w.group;
                affine_word<BITS, NT>(wq[i], c0, load_scale(w.scales, w.scale_dtype, g),
                                      load_scale(w.biases, w.scale_dtype, g), xs, acc);
            }
        }
    } else {
        for (int64_t i = lane; i < words; i += 32) {
            const int64_t c0 = i * kCodes;
            const int64_t g = gbase + c0 / w.group;
            affine_word<BITS, NT>(row[i], c0, load_scale(w.scales, w.scale_dtype, g),
                                  load_scale(w.biases, w.scale_dtype, g), xs, acc);
        }
    }
}

// Partial dot products of row r with NT token vectors; lanes split the columns (reduce afterwards).
template <int NT>
__device__ void row_dot(const DMat& w, int64_t r, const float* const* xs, float (&acc)[NT], int lane) {
#pragma unroll
    for (int j = 0; j < NT; ++j) acc[j] = 0;
    const int64_t cols = w.cols;
    if (w.format == kAffine && w.bits == 4 && (cols % 8) == 0) {
        affine_row<4, NT>(w, r, xs, acc, lane);
    } else if (w.format == kAffine && w.bits == 8 && (cols % 4) == 0) {
        affine_row<8, NT>(w, r, xs, acc, lane);
    } else if (w.format == kBF16 && (cols % 8) == 0) {
        const uint4* row = reinterpret_cast<const uint4*>(static_cast<const uint16_t*>(w.data) + r * cols);
        for (int64_t v = lane; v < cols / 8; v += 32) {
            const uint4 q = row[v];
            const uint32_t wq[4] = {q.x, q.y, q.z, q.w};
#pragma unroll
            for (int j = 0; j < NT; ++j) {
                const float4* xv = reinterpret_cast<const float4*>(xs[j] + v * 8);
                const float4 a = xv[0], b = xv[1];
                const float xe[8] = {a.x, a.y, a.z, a.w, b.x, b.y, b.z, b.w};
                float s = acc[j];
#pragma unroll
                for (int e = 0; e < 4; ++e) {
                    s = fmaf(__uint_as_float(wq[e] << 16), xe[2 * e], s);
                    s = fmaf(__uint_as_float(wq[e] & 0xffff0000u), xe[2 * e + 1], s);
                }
                acc[j] = s;
            }
        }
    } else {
        for (int64_t c = lane; c < cols; c += 32) {
            const float wv = load_weight(w, r, c);
#pragma unroll
            for (int j = 0; j < NT; ++j) acc[j] = fmaf(wv, xs[j][c], acc[j]);
        }
    }
#pragma unroll
    for (int j = 0; j < NT; ++j) {
        float v = acc[j];
#pragma unroll
        for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
        acc[j] = v;
    }
}

template <int NT>
__global__ void matmul_kernel(DMat w, const float* x, int64_t n, float* y) {
    const int lane = threadIdx.x & 31;
    const int64_t r = int64_t(blockIdx.x) * kWarpsPerBlock + threadIdx.x / 32;
    if (r >= w.rows) return;
    const int64_t t0 = int64_t(blockIdx.y) * NT;
    const int nt = int(n - t0 < NT ? n - t0 : NT);
    const float* xs[NT];
#pragma unroll
    for (int j = 0; j < NT; ++j) xs[j] = x + (t0 + min(j, nt - 1)) * w.cols;
    float acc[NT];
    row_dot<NT>(w, r, xs, acc, lane);
    if (lane == 0) {
#pragma unroll
        for (int j = 0; j < NT; ++j)
            if (j < nt) y[(t0 + j) * w.rows + r] = acc[j];
    }
}

__device__ __forceinline__ float silu(float x) { return x / (1.0f + expf(-x)); }

template <int NT>
__global__ void moe_gate_up_kernel(const ExpertJob* jobs, const int32_t* slots, int64_t k, const float* x,
                                   int64_t hidden, float* act, int64_t inter) {
    const ExpertJob& job = jobs[blockIdx.z];
    const int lane = threadIdx.x & 31;
    const int64_t r = int64_t(blockIdx.x) * kWarpsPerBlock + threadIdx.x / 32;
    const int64_t c0 = int64_t(blockIdx.y) * NT;
    if (r >= inter || c0 >= job.count) return;
    const int nt = int(job.count - c0 < NT ? job.count - c0 : NT);
    const float* xs[NT];
    int32_t sl[NT];
#pragma unroll
    for (int j = 0; j < NT; ++j) {
        sl[j] = slots[job.slot_begin + c0 + min(j, nt - 1)];
        xs[j] = x + (sl[j] / k) * hidden;
    }
    float g[NT], u[NT];
    row_dot<NT>(job.gate, r, xs, g, lane);
    row_dot<NT>(job.up, r, xs, u, lane);
    if (lane == 0) {
#pragma unroll
        for (int j = 0; j < NT; ++j)
            if (j < nt) act[int64_t(sl[j]) * inter + r] = silu(g[j]) * u[j];
    }
}

template <int NT>
__global__ void moe_down_kernel(const ExpertJob* jobs, const int32_t* slots, const float* act, int64_t inter,
                                const float* weights, float* routed, int64_t hidden) {
    const ExpertJob& job = jobs[blockIdx.z];
    const int lane = threadIdx.x & 31;
    const int64_t r = int64_t(blockIdx.x) * kWarpsPerBlock + threadIdx.x / 32;
    const int64_t c0 = int64_t(blockIdx.y) * NT;
    if (r >= hidden || c0 >= job.count) return;
    const int nt = int(job.count - c0 < NT ? job.count - c0 : NT);
    const float* xs[NT];
    int32_t sl[NT];
#pragma unroll
    for (int j = 0; j < NT; ++j) {
        sl[j] = slots[job.slot_begin + c0 + min(j, nt - 1)];
        xs[j] = act + int64_t(sl[j]) * inter;
    }
    float y[NT];
    row_dot<NT>(job.down, r, xs, y, lane);
    if (lane == 0) {
#pragma unroll
        for (int j = 0; j < NT; ++j)
            if (j < nt) routed[int64_t(sl[j]) * hidden + r] = y[j] * weights[sl[j]];
    }
}

// One warp per (row, slot): expert ids[slot] from the resident table.
__global__ void moe_gate_up_routed_kernel(const ExpertJob* table, const int32_t* ids, int64_t k, const float* x,
                                          int64_t hidden, float* act, int64_t inter) {
    const int64_t slot = blockIdx.y;
    const ExpertJob& job = table[ids[slot]];
    const int lane = threadIdx.x & 31;
    const int64_t r = int64_t(blockIdx.x) * kWarpsPerBlock + threadIdx.x / 32;
    if (r >= inter) return;
    const float* xs[1] = {x + (slot / k) * hidden};
    float g[1], u[1];
    row_dot<1>(job.gate, r, xs, g, lane);
    row_dot<1>(job.up, r, xs, u, lane);
    if (lane == 0) act[slot * inter + r] = silu(g[0]) * u[0];
}

__global__ void moe_down_routed_kernel(const ExpertJob* table, const int32_t* ids, const float* act, int64_t inter,
                                       const float* weights, float* routed, int64_t hidden) {
    const int64_t slot = blockIdx.y;
    const ExpertJob& job = table[ids[slot]];
    const int lane = threadIdx.x & 31;
    const int64_t r = int64_t(blockIdx.x) * kWarpsPerBlock + threadIdx.x / 32;
    if (r >= hidden) return;
    const float* xs[1] = {act + slot * inter};
    float y[1];
    row_dot<1>(job.down, r, xs, y, lane);
    if (lane == 0) routed[slot * hidden + r] = y[0] * weights[slot];
}

__global__ void embed_kernel(DMat w, const int32_t* ids, float* out) {
    const int64_t t = blockIdx.y;
    const int64_t r = ids[t];
    for (int64_t c = int64_t(blockIdx.x) * blockDim.x + threadIdx.x; c < w.cols; c += int64_t(gridDim.x) * blockDim.x)
        out[t * w.cols + c] = load_weight(w, r, c);
}

unsigned blocks_for(int64_t rows) { return unsigned((rows + kWarpsPerBlock - 1) / kWarpsPerBlock); }

}  // namespace

void matmul(const DMat& w, const float* x, int64_t n, float* y, cudaStream_t stream) {
    if (n <= 0 || w.rows == 0) return;
    if (n == 1) {
        matmul_kernel<1><<<dim3(blocks_for(w.rows), 1), kWarpsPerBlock * 32, 0, stream>>>(w, x, n, y);
    } else {
        matmul_kernel<8><<<dim3(blocks_for(w.rows), unsigned((n + 7) / 8)), kWarpsPerBlock * 32, 0, stream>>>(w, x, n, y);
    }
    CUDA_CHECK_LAUNCH("matmul_kernel");
}

void embed_rows(const DMat& w, const int32_t* ids, int64_t n, float* out, cudaStream_t stream) {
    if (n <= 0) return;
    const unsigned bx = unsigned(std::min<int64_t>((w.cols + 255) / 256, 64));
    embed_kernel<<<dim3(bx, unsigned(n)), 256, 0, stream>>>(w, ids, out);
    CUDA_CHECK_LAUNCH("embed_kernel");
}

void moe_gate_up(const MoeBatch& b, const float* x, float* act, cudaStream_t stream) {
    if (b.njobs == 0) return;
    if (b.max_count == 1) {
        moe_gate_up_kernel<1><<<dim3(blocks_for(b.intermediate), 1, unsigned(b.njobs)), kWarpsPerBlock * 32, 0, stream>>>(
            b.jobs, b.slots, b.k, x, b.hidden, act, b.intermediate);
    } else {
        moe_gate_up_kernel<8><<<dim3(blocks_for(b.intermediate), unsigned((b.max_count + 7) / 8), unsigned(b.njobs)),
                                kWarpsPerBlock * 32, 0, stream>>>(b.jobs, b.slots, b.k, x, b.hidden, act, b.intermediate);
    }
    CUDA_CHECK_LAUNCH("moe_gate_up_kernel");
}

void moe_down(const MoeBatch& b, const float* act, const float* weights, float* routed, cudaStream_t stream) {
    if (b.njobs == 0) return;
    if (b.max_count == 1) {
        moe_down_kernel<1><<<dim3(blocks_for(b.hidden), 1, unsigned(b.njobs)), kWarpsPerBlock * 32, 0, stream>>>(
            b.jobs, b.slots, act, b.intermediate, weights, routed, b.hidden);
    } else {
        moe_down_kernel<8><<<dim3(blocks_for(b.hidden), unsigned((b.max_count + 7) / 8), unsigned(b.njobs)),
                             kWarpsPerBlock * 32, 0, stream>>>(b.jobs, b.slots, act, b.intermediate, weights, routed,
                                                               b.hidden);
    }
    CUDA_CHECK_LAUNCH("moe_down_kernel");
}

void moe_gate_up_routed(const ExpertJob* table, const int32_t* ids, int64_t slots, int64_t k, int64_t hidden,
                        int64_t intermediate, const float* x, float* act, cudaStream_t stream) {
    if (slots <= 0) return;
    moe_gate_up_routed_kernel<<<dim3(blocks_for(intermediate), unsigned(slots)), kWarpsPerBlock * 32, 0, stream>>>(
        table, ids, k, x, hidden, act, intermediate);
    CUDA_CHECK_LAUNCH("moe_gate_up_routed_kernel");
}

void moe_down_routed(const ExpertJob* table, const int32_t* ids, int64_t slots, int64_t hidden, int64_t intermediate,
                     const float* act, const float* weights, float* routed, cudaStream_t stream) {
    if (slots <= 0) return;
    moe_down_routed_kernel<<<dim3(blocks_for(hidden), unsigned(slots)), kWarpsPerBlock * 32, 0, stream>>>(
        table, ids, act, intermediate, weights, routed, hidden);
    CUDA_CHECK_LAUNCH("moe_down_routed_kernel");
}

}  // namespace flashmoe::cuda
