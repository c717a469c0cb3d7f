// Shared by the weight-kernel files (matmul.cu, gemv.cu): a row's fp32 dot products in any weight
// format (the generic path), and the launchers each file offers the other. Included by .cu files only.
#pragma once

#include <cuda_runtime_api.h>

#include <cstdint>

#include "kernels/cuda/device_util.cuh"
#include "kernels/cuda/dmat.h"
#include "kernels/cuda/ops.h"

namespace flashmoe::cuda {

constexpr int kWarpsPerBlock = 8;

// Element (r, c) of w in fp32 (any format; the slow, obviously right path).
__device__ inline float load_weight(const DMat& w, int64_t r, int64_t c) {
    switch (w.format) {
        case kF32:
            return static_cast<const float*>(w.data)[r * w.cols + c];
        case kF16:
            return f16f(static_cast<const uint16_t*>(w.data)[r * w.cols + c]);
        case kBF16:
            return bf16f(static_cast<const uint16_t*>(w.data)[r * w.cols + c]);
        default: {
            const uint8_t* row = static_cast<const uint8_t*>(w.data) + r * w.row_bytes;
            const int64_t bit = c * w.bits;
            const int shift = int(bit & 7);
            uint32_t v = row[bit >> 3];
            if (shift + w.bits > 8) v |= uint32_t(row[(bit >> 3) + 1]) << 8;
            const uint32_t code = (v >> shift) & ((1u << w.bits) - 1u);
            const int64_t gi = r * (w.cols / w.group) + c / w.group;
            return load_scale(w.scales, w.scale_dtype, gi) * float(code) +
                   load_scale(w.biases, w.scale_dtype, gi);
        }
    }
}

// One 32-bit word of BITS-bit codes holding columns [c0, c0 + 32/BITS): adds
// scale * sum(q x) + bias * sum(x) to each token's accumulator.
template <int BITS, int NT>
__device__ __forceinline__ void affine_word(uint32_t word, int64_t c0, float s, float b,
                                            const float* const* xs, float (&acc)[NT]) {
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
__device__ inline void affine_row(const DMat& w, int64_t r, const float* const* xs, float (&acc)[NT],
                                  int lane) {
    constexpr int kCodes = 32 / BITS;
    const uint32_t* row =
        reinterpret_cast<const uint32_t*>(static_cast<const uint8_t*>(w.data) + r * w.row_bytes);
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
__device__ inline void row_dot(const DMat& w, int64_t r, const float* const* xs, float (&acc)[NT], int lane) {
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

// matmul_multi for one token (gemv.cu).
void gemv_multi(const DMat* const* w, float* const* y, int count, const float* x, cudaStream_t stream);
// y = W x for one token through the generic kernel (one warp per row; any format).
void matmul_generic_one(const DMat& w, const float* x, float* y, cudaStream_t stream);
// moe_gate_up / moe_down for one token (b.tokens == 1, one slot per job): the single-token kernels.
void moe_gate_up_one(const MoeBatch& b, const float* x, float* act, cudaStream_t stream);
void moe_down_one(const MoeBatch& b, const float* act, const float* weights, float* routed,
                  cudaStream_t stream);

}  // namespace flashmoe::cuda
