// Weight-matrix launchers and the generic kernels: matmul (one warp per output row, up to NT tokens
// per pass so each weight is decoded once per NT tokens), embedding lookup, and the routed-expert
// kernels that run many experts in one launch. Every weight format of ops/tensor.h is decoded (the
// row products in weights.cuh). One token goes to gemv.cu's register kernels where the shape allows;
// several tokens with affine 4-bit weights to the tensor cores (mma.cu).
#include "kernels/cuda/cuda_util.h"
#include "kernels/cuda/launch.cuh"
#include "kernels/cuda/mma.cuh"
#include "kernels/cuda/weights.cuh"

#include <algorithm>

namespace flashmoe::cuda {

namespace {

template <int NT>
__global__ void matmul_kernel(DMat w, const float* x, int64_t n, float* y) {
    pdl_wait();
    pdl_trigger();
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

template <int NT>
__global__ void moe_gate_up_kernel(const ExpertJob* jobs, const int32_t* slots, int64_t k, const float* x,
                                   int64_t hidden, float* act, int64_t inter, bool skip_mma) {
    const ExpertJob& job = jobs[blockIdx.z];
    if (skip_mma && mma_gate_up_ok(job)) return;  // done by the tensor-core kernel
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
                                const float* weights, float* routed, int64_t hidden, bool skip_mma) {
    const ExpertJob& job = jobs[blockIdx.z];
    if (skip_mma && mma_ok(job.down)) return;
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


__global__ void embed_kernel(DMat w, const int32_t* ids, float* out) {
    pdl_wait();
    pdl_trigger();
    const int64_t t = blockIdx.y;
    const int64_t r = ids[t];
    for (int64_t c = int64_t(blockIdx.x) * blockDim.x + threadIdx.x; c < w.cols; c += int64_t(gridDim.x) * blockDim.x)
        out[t * w.cols + c] = load_weight(w, r, c);
}

unsigned blocks_for(int64_t rows) { return unsigned((rows + kWarpsPerBlock - 1) / kWarpsPerBlock); }

}  // namespace

void matmul_generic_one(const DMat& w, const float* x, float* y, cudaStream_t stream) {
    launch("matmul_kernel", matmul_kernel<1>, blocks_for(w.rows), kWarpsPerBlock * 32, 0, stream, w, x, int64_t(1), y);
}

void matmul(const DMat& w, const float* x, int64_t n, float* y, cudaStream_t stream) {
    const DMat* ws[1] = {&w};
    float* ys[1] = {y};
    matmul_multi(ws, ys, 1, x, n, stream);
}

void matmul_multi(const DMat* const* w, float* const* y, int count, const float* x, int64_t n, cudaStream_t stream) {
    if (n <= 0) return;
    if (n == 1) {
        gemv_multi(w, y, count, x, stream);
        return;
    }
    // Several tokens: the matrices the tensor cores take with the first one's code width share a
    // launch; the others run on their own.
    const DMat* tw[kMaxGemvMats];
    float* ty[kMaxGemvMats];
    int taken = 0;
    for (int i = 0; i < count; ++i) {
        const DMat& m = *w[i];
        if (m.rows == 0) continue;
        if (!mma_takes(m)) {
            launch("matmul_kernel", matmul_kernel<8>, dim3(blocks_for(m.rows), unsigned((n + 7) / 8)),
                   kWarpsPerBlock * 32, 0, stream, m, x, n, y[i]);
        } else if (taken == 0 || m.bits == tw[0]->bits) {
            tw[taken] = &m;
            ty[taken++] = y[i];
            if (taken == kMaxGemvMats) {
                mma_matmul(tw, ty, taken, x, n, stream);
                taken = 0;
            }
        } else {
            mma_matmul(w + i, y + i, 1, x, n, stream);
        }
    }
    mma_matmul(tw, ty, taken, x, n, stream);
}

void embed_rows(const DMat& w, const int32_t* ids, int64_t n, float* out, cudaStream_t stream) {
    if (n <= 0) return;
    const unsigned bx = unsigned(std::min<int64_t>((w.cols + 255) / 256, 64));
    launch("embed_kernel", embed_kernel, dim3(bx, unsigned(n)), 256, 0, stream, w, ids, out);
}

void moe_gate_up(const MoeBatch& b, const float* x, float* act, cudaStream_t stream) {
    if (b.njobs == 0) return;
    if (b.max_count == 1 && b.tokens == 1) {
        moe_gate_up_one(b, x, act, stream);
        return;
    } else {
        // Several tokens: jobs whose matrices are 4-bit affine run on the tensor cores (any count,
        // so a slot's result does not depend on how the experts were split into waves), the others
        // on the fp32 kernels.
        const bool mma = b.tokens > 1 && (b.hidden % 32) == 0;
        if (mma) mma_moe_gate_up(b, x, act, stream);
        if (mma && !b.needs_fp32) return;
        if (b.max_count == 1) {
            moe_gate_up_kernel<1><<<dim3(blocks_for(b.intermediate), 1, unsigned(b.njobs)), kWarpsPerBlock * 32, 0, stream>>>(
                b.jobs, b.slots, b.k, x, b.hidden, act, b.intermediate, mma);
        } else {
            moe_gate_up_kernel<8><<<dim3(blocks_for(b.intermediate), unsigned((b.max_count + 7) / 8), unsigned(b.njobs)),
                                    kWarpsPerBlock * 32, 0, stream>>>(b.jobs, b.slots, b.k, x, b.hidden, act,
                                                                      b.intermediate, mma);
        }
    }
    CUDA_CHECK_LAUNCH("moe_gate_up_kernel");
}

void moe_down(const MoeBatch& b, const float* act, const float* weights, float* routed, cudaStream_t stream) {
    if (b.njobs == 0) return;
    if (b.max_count == 1 && b.tokens == 1) {
        moe_down_one(b, act, weights, routed, stream);
        return;
    } else {
        const bool mma = b.tokens > 1 && (b.intermediate % 32) == 0;
        if (mma) mma_moe_down(b, act, weights, routed, stream);
        if (mma && !b.needs_fp32) return;
        if (b.max_count == 1) {
            moe_down_kernel<1><<<dim3(blocks_for(b.hidden), 1, unsigned(b.njobs)), kWarpsPerBlock * 32, 0, stream>>>(
                b.jobs, b.slots, act, b.intermediate, weights, routed, b.hidden, mma);
        } else {
            moe_down_kernel<8><<<dim3(blocks_for(b.hidden), unsigned((b.max_count + 7) / 8), unsigned(b.njobs)),
                                 kWarpsPerBlock * 32, 0, stream>>>(b.jobs, b.slots, act, b.intermediate, weights,
                                                                   routed, b.hidden, mma);
        }
    }
    CUDA_CHECK_LAUNCH("moe_down_kernel");
}

}  // namespace flashmoe::cuda
