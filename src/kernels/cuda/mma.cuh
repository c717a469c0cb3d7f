// The tensor-core products (mma.cu) as matmul.cu's launchers see them: which matrices they take,
// and their launchers. Included by .cu files only.
#pragma once

#include "kernels/cuda/dmat.h"
#include "kernels/cuda/ops.h"

#include <cuda_runtime_api.h>

#include <cstdint>

namespace flashmoe::cuda {

// Affine 4-bit rows with groups of 32, 64 or 128 columns (MLX's), 16-byte aligned codes.
__host__ __device__ inline bool mma_ok(const DMat& w) {
    // (masks, not remainders: a 64-bit remainder is a subroutine call on the device)
    return w.format == kAffine && w.bits == 4 && (w.group == 32 || w.group == 64 || w.group == 128) &&
           (w.cols & (w.group - 1)) == 0 && w.row_bytes * 2 == w.cols && w.rows > 0 &&
           (reinterpret_cast<uintptr_t>(w.data) & 15) == 0;
}

// Affine 8-bit rows of the same shapes: on the tensor cores with int8 activations only.
__host__ __device__ inline bool mma8_ok(const DMat& w) {
    return w.format == kAffine && w.bits == 8 && (w.group == 32 || w.group == 64 || w.group == 128) &&
           (w.cols & (w.group - 1)) == 0 && w.row_bytes == w.cols && w.rows > 0 &&
           (reinterpret_cast<uintptr_t>(w.data) & 15) == 0;
}

// A routed expert whose gate and up run on the tensor cores (they share the activation tiles, and
// so one group size).
__host__ __device__ inline bool mma_gate_up_ok(const ExpertJob& job) {
    return mma_ok(job.gate) && mma_ok(job.up) && job.gate.group == job.up.group;
}

// Whether mma_matmul takes w now: mma_ok, or mma8_ok with int8 activations.
bool mma_takes(const DMat& w);
// y_m = W_m x for n > 1 tokens and `count` (at most kMaxGemvMats) matrices of one input, in one
// launch; each mma_takes(w_m), all of one width of codes. Like the one-token kernels, these follow
// the process's activation semantics (cuda_int8_activations(): int8 codes, else the exact bf16 split).
void mma_matmul(const DMat* const* w, float* const* y, int count, const float* x, int64_t n, cudaStream_t stream);
// moe_gate_up / moe_down for the jobs that pass mma_gate_up_ok / mma_ok(down); the others are
// left alone. b.hidden (gate/up) or b.intermediate (down) a multiple of 32.
void mma_moe_gate_up(const MoeBatch& b, const float* x, float* act, cudaStream_t stream);
void mma_moe_down(const MoeBatch& b, const float* act, const float* weights, float* routed, cudaStream_t stream);

}  // namespace flashmoe::cuda
