// The element-wise, normalisation, attention, Gated DeltaNet and router kernels of the CUDA
// forward (the weight-matrix kernels are in gemv.cu, matmul.cu and mma.cu). Each mirrors a loop of the CPU forward;
// reductions are fp32 tree reductions (the CPU sums some in double: results differ by rounding).
#include "kernels/cuda/cuda_util.h"
#include "kernels/cuda/device_util.cuh"
#include "kernels/cuda/launch.cuh"
#include "kernels/cuda/ops.h"

#include <algorithm>
#include <cfloat>
#include <climits>

namespace flashmoe::cuda {

namespace {

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

// Sum over the block (blockDim.x a multiple of 32, at most 1024); every thread gets the result.
__device__ float block_sum(float v) {
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

__device__ float block_max(float v) {
    __shared__ float part[32];
    __shared__ float total;
    const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
    v = warp_max(v);
    __syncthreads();
    if (lane == 0) part[warp] = v;
    __syncthreads();
    if (warp == 0) {
        float s = lane < int(blockDim.x >> 5) ? part[lane] : -FLT_MAX;
        s = warp_max(s);
        if (lane == 0) total = s;
    }
    __syncthreads();
    return total;
}

// A row in registers: thread t keeps elements t + u * blockDim.x (u < kRowRegs), so that all of its
// loads are in flight at once (a strided loop waits on each in turn).
constexpr int kRowRegs = 16;

__global__ void __launch_bounds__(1024) rmsnorm_kernel(const float* x, const float* add, const float* w, int64_t dim,
                                                       float eps, float* out) {
    pdl_wait();
    pdl_trigger();
    const int64_t r = blockIdx.x;
    x += r * dim;
    add = add ? add + r * dim : nullptr;
    out += r * dim;
    float v[kRowRegs], wv[kRowRegs];
    float ss = 0;
#pragma unroll
    for (int u = 0; u < kRowRegs; ++u) {
        const int64_t i = threadIdx.x + u * int64_t(blockDim.x);
        v[u] = i >= dim ? 0.0f : add ? x[i] + add[i] : x[i];
        wv[u] = i < dim ? w[i] : 0.0f;
        ss += v[u] * v[u];
    }
    ss = block_sum(ss);
    const float inv = 1.0f / sqrtf(ss / float(dim) + eps);
#pragma unroll
    for (int u = 0; u < kRowRegs; ++u) {
        const int64_t i = threadIdx.x + u * int64_t(blockDim.x);
        if (i < dim) out[i] = (v[u] * inv) * wv[u];
    }
}

// The end of a MoE block, one block per token: moe = sum_j routed[j] (+ sigmoid(g) * shared y), then
// x = (x + mix) + moe and out = rmsnorm(x) * w (w null: x only). A thread takes kFinishPer elements a
// pass and loads all of them before its first store (a store between loads would order them).
constexpr int kFinishThreads = 1024, kFinishPer = 4;
__global__ void __launch_bounds__(kFinishThreads) moe_finish_kernel(const float* routed, int64_t k,
                                                                    const float* shared_y, const float* shared_g,
                                                                    float* x, const float* mix, const float* w,
                                                                    int64_t dim, float eps, float* out) {
    pdl_wait();
    pdl_trigger();
    const int64_t t = blockIdx.x, pass = kFinishPer * int64_t(blockDim.x);
    routed += t * k * dim;
    x += t * dim;
    mix += t * dim;
    out += t * dim;
    const float sig = shared_y ? sigmoid(shared_g[t]) : 0.0f;
    float ss = 0;
    for (int64_t c = threadIdx.x; c < dim; c += pass) {
        float v[kFinishPer];
#pragma unroll
        for (int u = 0; u < kFinishPer; ++u) {
            const int64_t i = c + u * int64_t(blockDim.x);
            v[u] = 0.0f;
            if (i >= dim) continue;
            float m = 0;
            for (int64_t j = 0; j < k; ++j) m += routed[j * dim + i];
            if (shared_y) m += sig * shared_y[t * dim + i];
            v[u] = (x[i] + mix[i]) + m;
        }
#pragma unroll
        for (int u = 0; u < kFinishPer; ++u) {
            const int64_t i = c + u * int64_t(blockDim.x);
            if (i < dim) x[i] = v[u];
            ss += v[u] * v[u];
        }
    }
    if (!w) return;  // (uniform)
    ss = block_sum(ss);
    const float inv = 1.0f / sqrtf(ss / float(dim) + eps);
    for (int64_t c = threadIdx.x; c < dim; c += pass) {
        float v[kFinishPer], wv[kFinishPer];
#pragma unroll
        for (int u = 0; u < kFinishPer; ++u) {
            const int64_t i = c + u * int64_t(blockDim.x);
            v[u] = i < dim ? x[i] : 0.0f;
            wv[u] = i < dim ? w[i] : 0.0f;
        }
#pragma unroll
        for (int u = 0; u < kFinishPer; ++u) {
            const int64_t i = c + u * int64_t(blockDim.x);
            if (i < dim) out[i] = (v[u] * inv) * wv[u];
        }
    }
}

// One block per (token, head): heads [0, heads) are query halves (normalised and rotated in place),
// [heads, heads + kv_heads) keys (normalised and rotated into the cache, with the head's values).
__global__ void attention_prepare_kernel(AttentionShape s, float* q, const float* k, const float* v,
                                         const float* q_norm, const float* k_norm, float* keys, float* values) {
    pdl_wait();
    pdl_trigger();
    extern __shared__ float head[];
    const int64_t t = blockIdx.x, h = blockIdx.y, hd = s.head_dim;
    const bool is_q = h < s.heads;
    const int64_t kvh = h - s.heads, row = s.kv_heads * hd;
    const int64_t cached = ((s.d_position ? *s.d_position : s.position) + t) * row + kvh * hd;
    const float* in = is_q ? q + t * s.heads * 2 * hd + h * 2 * hd : k + t * row + kvh * hd;
    float* dst = is_q ? q + t * s.heads * 2 * hd + h * 2 * hd : keys + cached;
    const float* w = is_q ? q_norm : k_norm;
    if (!is_q)
        for (int64_t i = threadIdx.x; i < hd; i += blockDim.x) values[cached + i] = v[t * row + kvh * hd + i];
    float ss = 0;
    for (int64_t i = threadIdx.x; i < hd; i += blockDim.x) {
        head[i] = in[i];
        ss += head[i] * head[i];
    }
    ss = block_sum(ss);
    const float inv = 1.0f / sqrtf(ss / float(hd) + s.eps);
    for (int64_t i = threadIdx.x; i < hd; i += blockDim.x) head[i] = (head[i] * inv) * w[i];
    __syncthreads();
    const int64_t half = s.rotary_dim / 2;
    const float pos = float((s.d_position ? *s.d_position : s.position) + t);
    for (int64_t i = threadIdx.x; i < hd; i += blockDim.x) {
        float out = head[i];
        if (i < s.rotary_dim) {
            const int64_t p = i < half ? i : i - half;
            const float inv_freq = 1.0f / powf(s.rope_theta, float(2 * p) / float(s.rotary_dim));
            const float angle = pos * inv_freq;
            const float c = cosf(angle), sn = sinf(angle);
            out = i < half ? head[i] * c - head[i + half] * sn : head[i] * c + head[i - half] * sn;
        }
        dst[i] = out;
    }
}

constexpr int kAttnThreads = 128;
constexpr int kAttnMaxDimPerThread = 4;  // head_dim <= 512

// One block's online softmax of query qh over cache rows [pb, pe) of KV head kvh, chunk by chunk:
// acc (this thread's dims d = threadIdx.x + u * kAttnThreads) = the unnormalised output, m its running
// max, l its running sum. qs [head_dim] and prob [kAttnThreads] are shared memory.
struct AttendRange {
    float acc[kAttnMaxDimPerThread] = {0, 0, 0, 0};
    float m = -FLT_MAX, l = 0;
};
__device__ __forceinline__ AttendRange attend_range(const AttentionShape& s, const float* qh, const float* keys,
                                                    const float* values, int64_t kvh, int64_t pb, int64_t pe,
                                                    float* qs, float* prob) {
    const int64_t hd = s.head_dim;
    const float scale = 1.0f / sqrtf(float(hd));
    for (int64_t i = threadIdx.x; i < hd; i += blockDim.x) qs[i] = qh[i];
    __syncthreads();
    AttendRange r;
    const int64_t row = s.kv_heads * hd;
    const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
    constexpr int kWarps = kAttnThreads / 32;
    for (int64_t p0 = pb; p0 < pe; p0 += kAttnThreads) {
        // Scores of this chunk: each warp takes groups of kGroup positions (their loads in flight
        // together), lanes split head_dim.
        constexpr int kGroup = 4;
        const int64_t valid = min(int64_t(kAttnThreads), pe - p0);
        for (int j0 = warp * kGroup; j0 < kAttnThreads; j0 += kWarps * kGroup) {
            float d[kGroup] = {0, 0, 0, 0};
            if (j0 < valid) {
                for (int64_t i = lane; i < hd; i += 32) {
#pragma unroll
                    for (int g = 0; g < kGroup; ++g)
                        if (j0 + g < valid) d[g] = fmaf(qs[i], keys[(p0 + j0 + g) * row + kvh * hd + i], d[g]);
                }
#pragma unroll
                for (int g = 0; g < kGroup; ++g) d[g] = warp_sum(d[g]);
            }
            if (lane < kGroup) {
                float dl = d[0];
#pragma unroll
                for (int g = 1; g < kGroup; ++g)
                    if (lane == g) dl = d[g];
                prob[j0 + lane] = j0 + lane < valid ? dl * scale : -FLT_MAX;
            }
        }
        __syncthreads();
        const int64_t p = p0 + threadIdx.x;
        const float score = prob[threadIdx.x];
        const float cm = block_max(score);
        const float nm = fmaxf(r.m, cm);
        const float corr = expf(r.m - nm);
        const float e = p < pe ? expf(score - nm) : 0.0f;
        prob[threadIdx.x] = e;
        const float cs = block_sum(e);  // (its barriers also publish prob[])
        r.l = r.l * corr + cs;
        const int64_t chunk = pe - p0 < kAttnThreads ? pe - p0 : kAttnThreads;
#pragma unroll
        for (int u = 0; u < kAttnMaxDimPerThread; ++u) {
            const int64_t d = threadIdx.x + int64_t(u) * kAttnThreads;
            if (d < hd) {
                float a = r.acc[u] * corr;
                const float* vp = values + p0 * row + kvh * hd + d;
#pragma unroll 8
                for (int64_t j = 0; j < chunk; ++j) a = fmaf(prob[j], vp[j * row], a);
                r.acc[u] = a;
            }
        }
        r.m = nm;
        __syncthreads();  // prob[] is rewritten by the next chunk
    }
    return r;
}

// One block per (token, query head): every cached position up to the token's.
__global__ void attention_kernel(AttentionShape s, const float* q, const float* keys, const float* values, float* out) {
    pdl_wait();
    pdl_trigger();
    extern __shared__ float smem[];
    const int64_t t = blockIdx.x, h = blockIdx.y, hd = s.head_dim;
    const int64_t kvh = h / (s.heads / s.kv_heads);
    const int64_t len = (s.d_position ? *s.d_position : s.position) + t + 1;
    const float* qh = q + t * s.heads * 2 * hd + h * 2 * hd;
    const AttendRange r = attend_range(s, qh, keys, values, kvh, 0, len, smem, smem + hd);
    const float* gate = qh + hd;
    float* o = out + (t * s.heads + h) * hd;
#pragma unroll
    for (int u = 0; u < kAttnMaxDimPerThread; ++u) {
        const int64_t d = threadIdx.x + int64_t(u) * kAttnThreads;
        if (d < hd) o[d] = (r.acc[u] / r.l) * sigmoid(gate[d]);
    }
}

// Several new tokens (prefill), head_dim a power of two from 32 to kTiledMaxDim: block (16 queries,
// head); every key and value row a block needs is staged in shared memory once per tile of 32
// positions and used by all 16 queries (the one-block-per-query kernel reads it 16 times from L2).
// Warp w takes queries 2w and 2w + 1 of the tile; lane j scores position j of a key tile (rows
// padded by four floats: the 16-byte reads of 8 lanes fall on distinct banks), then lanes split
// head_dim for the value sums.
constexpr int kTiledQueries = 16, kTiledKeys = 32, kTiledMaxDim = 256;
constexpr int kTiledThreads = kTiledQueries / 2 * 32;

__global__ void __launch_bounds__(kTiledThreads) attention_tiled_kernel(AttentionShape s, const float* q,
                                                                        const float* keys, const float* values,
                                                                        float* out) {
    pdl_wait();
    pdl_trigger();
    extern __shared__ float smem[];
    const int hd = int(s.head_dim), kstride = hd + 4;
    float* qs = smem;                                  // [16][hd]
    float* ks = qs + kTiledQueries * hd;               // [32][hd + 4]
    float* vs = ks + kTiledKeys * kstride;             // [32][hd]
    const int64_t t0 = int64_t(blockIdx.x) * kTiledQueries, h = blockIdx.y;
    const int64_t kvh = h / (s.heads / s.kv_heads), row = s.kv_heads * hd;
    const int64_t position = s.d_position ? *s.d_position : s.position;
    const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
    const float scale = 1.0f / sqrtf(float(hd));
    for (int i = threadIdx.x; i < kTiledQueries * hd; i += kTiledThreads) {
        const int64_t t = min(t0 + i / hd, s.n - 1);
        qs[i] = q[t * s.heads * 2 * hd + h * 2 * hd + i % hd];
    }
    // positions query t sees: position + t + 1
    const int64_t last = min(t0 + kTiledQueries, s.n) - 1;
    const int64_t len_block = position + last + 1;
    int64_t len[2];
    float m[2], l[2], acc[2][kTiledMaxDim / 32];
#pragma unroll
    for (int j = 0; j < 2; ++j) {
        len[j] = position + min(t0 + 2 * warp + j, last) + 1;
        m[j] = -FLT_MAX;
        l[j] = 0;
#pragma unroll
        for (int u = 0; u < kTiledMaxDim / 32; ++u) acc[j][u] = 0;
    }
    const int dims = hd / 32;
    for (int64_t p0 = 0; p0 < len_block; p0 += kTiledKeys) {
        __syncthreads();  // (first pass: qs is in; later: every warp is done with the last tile)
        const int count = int(min(int64_t(kTiledKeys), len_block - p0));
        // 16 bytes a thread and row: hd / 4 threads a row (a power of two dividing the block)
        const int per_row = hd >> 2, d4 = threadIdx.x & (per_row - 1);
#pragma unroll 4
        for (int j = threadIdx.x / per_row; j < kTiledKeys; j += kTiledThreads / per_row) {
            float4 kv = make_float4(0, 0, 0, 0), vv = kv;
            if (j < count) {
                kv = reinterpret_cast<const float4*>(keys + (p0 + j) * row + kvh * hd)[d4];
                vv = reinterpret_cast<const float4*>(values + (p0 + j) * row + kvh * hd)[d4];
            }
            reinterpret_cast<float4*>(ks + j * kstride)[d4] = kv;
            reinterpret_cast<float4*>(vs + j * hd)[d4] = vv;
        }
        __syncthreads();
#pragma unroll
        for (int j = 0; j < 2; ++j) {
            const float4* qq = reinterpret_cast<const float4*>(qs + (2 * warp + j) * hd);
            const float4* kk = reinterpret_cast<const float4*>(ks + lane * kstride);
            float d = 0;
            for (int i = 0; i < hd / 4; ++i) {
                const float4 a = qq[i], b = kk[i];
                d = fmaf(a.x, b.x, fmaf(a.y, b.y, fmaf(a.z, b.z, fmaf(a.w, b.w, d))));
            }
            const bool seen = p0 + lane < len[j];
            const float score = seen ? d * scale : -FLT_MAX;
            const float nm = fmaxf(m[j], warp_max(score));
            const float corr = expf(m[j] - nm);
            const float e = seen ? expf(score - nm) : 0.0f;
            l[j] = l[j] * corr + warp_sum(e);
            m[j] = nm;
#pragma unroll
            for (int u = 0; u < kTiledMaxDim / 32; ++u) acc[j][u] *= corr;
            for (int k = 0; k < count; ++k) {
                const float pk = __shfl_sync(0xffffffffu, e, k);
                const float* vv = vs + k * hd + lane;
#pragma unroll
                for (int u = 0; u < kTiledMaxDim / 32; ++u)
                    if (u < dims) acc[j][u] = fmaf(pk, vv[u * 32], acc[j][u]);
            }
        }
    }
#pragma unroll
    for (int j = 0; j < 2; ++j) {
        const int64_t t = t0 + 2 * warp + j;
        if (t >= s.n) continue;
        const float* gate = q + t * s.heads * 2 * hd + h * 2 * hd + hd;
        float* o = out + (t * s.heads + h) * hd;
#pragma unroll
        for (int u = 0; u < kTiledMaxDim / 32; ++u)
            if (u < dims) o[lane + u * 32] = (acc[j][u] / l[j]) * sigmoid(gate[lane + u * 32]);
    }
}

// A single token's attention split over blocks (flash-decoding): block (head, split) takes cache
// rows [split * chunk, min(len, (split + 1) * chunk)) and leaves its running max, sum and unnormalised
// output in part[(head * splits + split) * (head_dim + 2)]; the last block of a head to finish
// merges them into o (counters: one per head, zero between launches).
__global__ void attention_split_kernel(AttentionShape s, const float* q, const float* keys, const float* values,
                                       int64_t chunk, float* part, float* o, unsigned* counters) {
    pdl_wait();
    pdl_trigger();
    extern __shared__ float smem[];
    const int64_t h = blockIdx.x, split = blockIdx.y, splits = gridDim.y, hd = s.head_dim;
    const int64_t kvh = h / (s.heads / s.kv_heads);
    const int64_t len = (s.d_position ? *s.d_position : s.position) + 1;
    const int64_t pb = split * chunk, pe = min(len, pb + chunk);
    const AttendRange r = attend_range(s, q + h * 2 * hd, keys, values, kvh, pb, pe, smem, smem + hd);
    float* out = part + (h * splits + split) * (hd + 2);
#pragma unroll
    for (int u = 0; u < kAttnMaxDimPerThread; ++u) {
        const int64_t d = threadIdx.x + int64_t(u) * kAttnThreads;
        if (d < hd) out[d] = r.acc[u];
    }
    if (threadIdx.x == 0) {
        out[hd] = r.m;  // -FLT_MAX with l = 0 for a split past the end
        out[hd + 1] = r.l;
    }
    if (!last_to_arrive(counters + h, unsigned(splits))) return;
    // the head's splits merged by the last of them to finish
    const float* ph = part + h * splits * (hd + 2);
    float M = -FLT_MAX;
    for (int64_t i = 0; i < splits; ++i) M = fmaxf(M, __ldcg(ph + i * (hd + 2) + hd));
    float L = 0;
    for (int64_t i = 0; i < splits; ++i) L += __ldcg(ph + i * (hd + 2) + hd + 1) * expf(__ldcg(ph + i * (hd + 2) + hd) - M);
    const float* gate = q + h * 2 * hd + hd;
    for (int64_t d = threadIdx.x; d < hd; d += blockDim.x) {
        float a = 0;
        for (int64_t i = 0; i < splits; ++i) a += __ldcg(ph + i * (hd + 2) + d) * expf(__ldcg(ph + i * (hd + 2) + hd) - M);
        o[h * hd + d] = (a / L) * sigmoid(gate[d]);
    }
}

// One token of the causal conv (kernel K <= kMaxConvKernel) on channel ch (of C): silu of sum_j
// taps[ch, j] * window[j] over the window [state rows 0 .. K-2 ; v], then the state advanced to end
// with v. Every load is issued before the first use.
constexpr int kMaxConvKernel = 8;
__device__ __forceinline__ float conv_step(float v, float* state, const float* taps, int64_t ch, int64_t C,
                                           int64_t K) {
    float win[kMaxConvKernel], tap[kMaxConvKernel];
#pragma unroll
    for (int j = 0; j < kMaxConvKernel; ++j) {
        tap[j] = j < K ? taps[ch * K + j] : 0.0f;
        win[j] = j + 1 < K ? state[j * C + ch] : v;
    }
    float s = 0;
#pragma unroll
    for (int j = 0; j < kMaxConvKernel; ++j)
        if (j < K) s = fmaf(tap[j], win[j], s);
#pragma unroll
    for (int j = 0; j + 1 < kMaxConvKernel; ++j)
        if (j + 1 < K) state[j * C + ch] = win[j + 1];
    return silu(s);
}

__global__ void conv1d_silu_kernel(const float* x, float* state, const float* taps, int64_t C, int64_t K, float* out) {
    pdl_wait();
    pdl_trigger();
    const int64_t ch = int64_t(blockIdx.x) * blockDim.x + threadIdx.x;
    if (ch < C) out[ch] = conv_step(x[ch], state, taps, ch, C, K);
}

// Many tokens: one thread per (channel, token) (each output depends only on the inputs), then
// conv_state_kernel advances the state once every output has read it.
__global__ void conv1d_silu_tokens_kernel(const float* x, const float* state, const float* taps, int64_t n, int64_t C,
                                          int64_t K, float* out) {
    pdl_wait();
    pdl_trigger();
    const int64_t ch = int64_t(blockIdx.x) * blockDim.x + threadIdx.x;
    const int64_t t = blockIdx.y;
    if (ch >= C) return;
    float s = 0;
    for (int64_t j = 0; j < K; ++j) {
        const int64_t w = t + j;
        const float v = w < K - 1 ? state[w * C + ch] : x[(w - (K - 1)) * C + ch];
        s = fmaf(taps[ch * K + j], v, s);
    }
    out[t * C + ch] = silu(s);
}

__global__ void conv_state_kernel(const float* x, float* state, int64_t n, int64_t C, int64_t K) {
    pdl_wait();
    pdl_trigger();
    const int64_t ch = int64_t(blockIdx.x) * blockDim.x + threadIdx.x;
    if (ch >= C) return;
    float old[kMaxConvKernel - 1];
#pragma unroll
    for (int i = 0; i < kMaxConvKernel - 1; ++i) old[i] = i < K - 1 ? state[i * C + ch] : 0.0f;
    for (int64_t i = 0; i < K - 1; ++i) {
        const int64_t w = n + i;  // window index
        float v = 0;
        if (w < K - 1) {
#pragma unroll
            for (int q = 0; q < kMaxConvKernel - 1; ++q)
                if (q == w) v = old[q];
        } else {
            v = x[(w - (K - 1)) * C + ch];
        }
        state[i * C + ch] = v;
    }
}

// One block per (value head, 32 value columns), kDeltaWarps warps: lane = value column, warp w
// keeps key rows w, w + kDeltaWarps, ... of the state slice in registers. Per token the two sums
// over key rows (S k and S q) are per-warp partial sums combined in shared memory, so the state is
// read from and written to device memory once per launch, however many tokens it runs.
constexpr int kDeltaWarps = 8;
constexpr int kDeltaMaxKey = 256;
constexpr int kDeltaRows = kDeltaMaxKey / kDeltaWarps;  // state rows per thread, at most

__global__ void __launch_bounds__(kDeltaWarps * 32) deltanet_kernel(DeltaNetArgs a) {
    pdl_wait();
    pdl_trigger();
    __shared__ float qs[kDeltaMaxKey], ks[kDeltaMaxKey];
    __shared__ float part_mem[kDeltaWarps][32], part_o[kDeltaWarps][32];
    const int64_t Dk = a.key_dim, Dv = a.value_dim;
    const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
    const int64_t h = blockIdx.x;
    const int64_t j = int64_t(blockIdx.y) * 32 + lane;
    const bool valid = j < Dv;
    const int64_t kh = h / (a.value_heads / a.key_heads);
    const int64_t kd = a.key_heads * Dk, vd = a.value_heads * Dv;
    float* Sg = a.state + h * Dk * Dv;
    float S[kDeltaRows];
#pragma unroll
    for (int m = 0; m < kDeltaRows; ++m) {
        const int64_t i = warp + int64_t(m) * kDeltaWarps;
        S[m] = valid && i < Dk ? Sg[i * Dv + j] : 0.0f;
    }
    const float A = expf(a.A_log[h]);
    const float q_scale = 1.0f / sqrtf(float(Dk));
    // This token's inputs are loaded while the previous token is computed (registers: a thread
    // holds q and k element threadIdx.x, Dk <= blockDim.x).
    const int64_t e = threadIdx.x;
    const bool holds = e < Dk;
    float nq = 0, nk = 0, nv = 0, nb = 0, na = 0;
    auto fetch = [&](int64_t t) {
        const float* row = a.qkv + t * a.conv_dim;
        if (holds) {
            nq = row[kh * Dk + e];
            nk = row[kd + kh * Dk + e];
        }
        nv = valid ? row[2 * kd + h * Dv + j] : 0.0f;
        nb = a.b[t * a.value_heads + h];
        na = a.a[t * a.value_heads + h];
    };
    fetch(0);
    const float dt_bias = a.dt_bias[h];
    for (int64_t t = 0; t < a.n; ++t) {
        if (holds) {
            qs[e] = nq;
            ks[e] = nk;
        }
        const float v = nv;
        const float beta = sigmoid(nb);
        const float decay = expf(-A * softplus(na + dt_bias));
        if (t + 1 < a.n) fetch(t + 1);
        __syncthreads();
        // l2 norms (every warp computes them: no extra barrier)
        float sq = 0, sk = 0;
        for (int64_t i = lane; i < Dk; i += 32) {
            sq += qs[i] * qs[i];
            sk += ks[i] * ks[i];
        }
        sq = warp_sum(sq);
        sk = warp_sum(sk);
        const float qi = 1.0f / sqrtf(sq + 1e-6f), ki = 1.0f / sqrtf(sk + 1e-6f);
        float mem = 0;
#pragma unroll
        for (int m = 0; m < kDeltaRows; ++m) {
            const int64_t i = warp + int64_t(m) * kDeltaWarps;
            if (i < Dk) {
                S[m] *= decay;
                mem = fmaf(S[m], ks[i] * ki, mem);
            }
        }
        part_mem[warp][lane] = mem;
        __syncthreads();
        mem = 0;
#pragma unroll
        for (int w = 0; w < kDeltaWarps; ++w) mem += part_mem[w][lane];
        const float delta = (v - mem) * beta;
        float o = 0;
#pragma unroll
        for (int m = 0; m < kDeltaRows; ++m) {
            const int64_t i = warp + int64_t(m) * kDeltaWarps;
            if (i < Dk) {
                S[m] = fmaf(ks[i] * ki, delta, S[m]);
                o = fmaf(S[m], (qs[i] * qi) * q_scale, o);
            }
        }
        part_o[warp][lane] = o;
        __syncthreads();
        if (warp == 0) {
            float sum = 0;
#pragma unroll
            for (int w = 0; w < kDeltaWarps; ++w) sum += part_o[w][lane];
            if (valid) a.out[t * vd + h * Dv + j] = sum;
        }
        // The next token's first barrier orders these reads before qs/ks/part_* are rewritten.
    }
#pragma unroll
    for (int m = 0; m < kDeltaRows; ++m) {
        const int64_t i = warp + int64_t(m) * kDeltaWarps;
        if (valid && i < Dk) Sg[i * Dv + j] = S[m];
    }
}

__global__ void gated_rmsnorm_kernel(float* o, const float* z, const float* w, int64_t dim, float eps) {
    pdl_wait();
    pdl_trigger();
    float* orow = o + int64_t(blockIdx.x) * dim;
    const float* zr = z + int64_t(blockIdx.x) * dim;
    float ss = 0;
    for (int64_t i = threadIdx.x; i < dim; i += blockDim.x) ss += orow[i] * orow[i];
    ss = block_sum(ss);
    const float inv = 1.0f / sqrtf(ss / float(dim) + eps);
    for (int64_t i = threadIdx.x; i < dim; i += blockDim.x) orow[i] = ((orow[i] * inv) * w[i]) * silu(zr[i]);
}

// One block per token: softmax in shared memory, then k rounds of arg-max.
__global__ void router_kernel(const float* logits, int64_t E, int64_t k, int32_t* ids, float* weights, int32_t extra_id) {
    pdl_wait();
    pdl_trigger();
    if (extra_id >= 0 && blockIdx.x == 0 && threadIdx.x == 0) {
        ids[int64_t(gridDim.x) * k] = extra_id;
        weights[int64_t(gridDim.x) * k] = 1.0f;
    }
    extern __shared__ float p[];
    const int64_t t = blockIdx.x;
    const float* row = logits + t * E;
    float mx = -FLT_MAX;
    for (int64_t e = threadIdx.x; e < E; e += blockDim.x) mx = fmaxf(mx, row[e]);
    mx = block_max(mx);
    float sum = 0;
    for (int64_t e = threadIdx.x; e < E; e += blockDim.x) {
        p[e] = expf(row[e] - mx);
        sum += p[e];
    }
    sum = block_sum(sum);
    const float inv = 1.0f / sum;
    for (int64_t e = threadIdx.x; e < E; e += blockDim.x) p[e] *= inv;
    __syncthreads();
    __shared__ float best_v[32];
    __shared__ int32_t best_i[32];
    __shared__ float chosen_sum;
    if (threadIdx.x == 0) chosen_sum = 0;
    for (int64_t j = 0; j < k; ++j) {
        float bv = -1.0f;
        int32_t bi = INT32_MAX;
        for (int64_t e = threadIdx.x; e < E; e += blockDim.x) {
            if (p[e] > bv || (p[e] == bv && int32_t(e) < bi)) {
                bv = p[e];
                bi = int32_t(e);
            }
        }
        warp_arg_max(bv, bi);
        const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
        if (lane == 0) {
            best_v[warp] = bv;
            best_i[warp] = bi;
        }
        __syncthreads();
        if (threadIdx.x == 0) {
            float v = best_v[0];
            int32_t i = best_i[0];
            for (int w = 1; w < int(blockDim.x >> 5); ++w) {
                if (best_v[w] > v || (best_v[w] == v && best_i[w] < i)) {
                    v = best_v[w];
                    i = best_i[w];
                }
            }
            ids[t * k + j] = i;
            weights[t * k + j] = v;  // the probability for now
            chosen_sum += v;
            p[i] = -2.0f;  // never chosen again
        }
        __syncthreads();
    }
    if (threadIdx.x == 0) {
        for (int64_t j = 0; j < k; ++j) weights[t * k + j] = weights[t * k + j] / chosen_sum;
    }
}

// The same for up to kTopKPerLane * 32 experts and k <= 32 with the probabilities in registers
// (warp_top_k): one warp per token, no shared memory and no barriers (same sums in the same order
// as router_kernel).
__global__ void router_warp_kernel(const float* logits, int64_t E, int64_t k, int32_t* ids, float* weights,
                                   int32_t extra_id) {
    pdl_wait();
    pdl_trigger();
    if (extra_id >= 0 && blockIdx.x == 0 && threadIdx.x == 0) {
        ids[int64_t(gridDim.x) * k] = extra_id;
        weights[int64_t(gridDim.x) * k] = 1.0f;
    }
    const int64_t t = blockIdx.x;
    int32_t id = 0;
    float weight = 0;
    warp_top_k(logits + t * E, E, k, id, weight);
    if (threadIdx.x < k) {
        ids[t * k + threadIdx.x] = id;
        weights[t * k + threadIdx.x] = weight;
    }
}

constexpr int kGroupThreads = 256;

// Block e: the slots routed to expert e, in order. Their place in the list is the number of slots
// routed to lower experts; each pass over the ids is a block-wide stable compaction.
__global__ void __launch_bounds__(kGroupThreads) group_by_expert_kernel(const ExpertJob* table, const int32_t* ids,
                                                                        int32_t slots, ExpertJob* jobs,
                                                                        int32_t* slot_list) {
    constexpr int kWarps = kGroupThreads / 32;
    __shared__ int32_t warp_counts[kWarps];
    __shared__ int32_t total;
    pdl_wait();
    pdl_trigger();
    const int32_t e = int32_t(blockIdx.x);
    const int lane = threadIdx.x & 31, wi = threadIdx.x >> 5;
    int32_t below = 0;
    for (int32_t s = threadIdx.x; s < slots; s += kGroupThreads) below += ids[s] < e;
    for (int o = 16; o > 0; o >>= 1) below += __shfl_xor_sync(0xffffffffu, below, o);
    if (threadIdx.x == 0) total = 0;
    __syncthreads();
    if (lane == 0) atomicAdd(&total, below);
    __syncthreads();
    const int32_t begin = total;
    int32_t count = 0;  // found so far (the same in every thread)
    for (int32_t s0 = 0; s0 < slots; s0 += kGroupThreads) {
        const int32_t s = s0 + int32_t(threadIdx.x);
        const bool mine = s < slots && ids[s] == e;
        const unsigned ballot = __ballot_sync(0xffffffffu, mine);
        __syncthreads();  // warp_counts of the previous pass are read
        if (lane == 0) warp_counts[wi] = __popc(ballot);
        __syncthreads();
        int32_t before = count + __popc(ballot & ((1u << lane) - 1u));
        for (int w = 0; w < kWarps; ++w) {
            before += w < wi ? warp_counts[w] : 0;
            count += warp_counts[w];
        }
        if (mine) slot_list[begin + before] = s;
    }
    if (threadIdx.x == 0) {
        ExpertJob job = table[e];
        job.slot_begin = begin;
        job.count = count;
        jobs[e] = job;
    }
}

}  // namespace

void rmsnorm(const float* x, const float* w, int64_t rows, int64_t dim, float eps, float* out, cudaStream_t stream,
             const float* add) {
    if (rows <= 0) return;
    if (dim > kRowRegs * 1024) CUDA_CHECK(cudaErrorInvalidValue);  // rows beyond 16,384 floats
    const int64_t threads = std::max<int64_t>(256, (dim + kRowRegs * 32 - 1) / (kRowRegs * 32) * 32);
    launch("rmsnorm_kernel", rmsnorm_kernel, unsigned(rows), unsigned(threads), 0, stream, x, add, w, dim, eps, out);
}

void moe_finish(const float* routed, int64_t n, int64_t k, const float* shared_y, const float* shared_g, float* x,
                const float* mix, const float* w, int64_t dim, float eps, float* out, cudaStream_t stream) {
    if (n <= 0) return;
    // one token: its row over the most threads (the step's critical path); prompts: more blocks an SM
    launch("moe_finish_kernel", moe_finish_kernel, unsigned(n), n == 1 ? kFinishThreads : 256, 0, stream, routed, k,
           shared_y, shared_g, x, mix, w, dim, eps, out);
}

void attention_prepare(const AttentionShape& s, float* q, const float* k, const float* v, const float* q_norm,
                       const float* k_norm, float* keys, float* values, cudaStream_t stream) {
    if (s.n <= 0) return;
    launch("attention_prepare_kernel", attention_prepare_kernel, dim3(unsigned(s.n), unsigned(s.heads + s.kv_heads)),
           128, size_t(s.head_dim) * sizeof(float), stream, s, q, k, v, q_norm, k_norm, keys, values);
}

void attention(const AttentionShape& s, const float* q, const float* keys, const float* values, float* out,
               cudaStream_t stream) {
    if (s.n <= 0) return;
    if (s.head_dim > kAttnThreads * kAttnMaxDimPerThread) {
        CUDA_CHECK(cudaErrorInvalidValue);  // head_dim beyond 512 is not supported
    }
    const size_t smem = size_t(s.head_dim + kAttnThreads) * sizeof(float);
    const int64_t bound = s.d_position && s.max_len > 0 ? s.max_len : s.position + s.n;
    if (s.n == 1 && bound > 64) {
        // Splits of at least 32 rows, at most 32 splits (fixed by the bound: a captured graph replays
        // at every position up to it).
        const int64_t splits = std::min<int64_t>(32, (bound + 31) / 32);
        const int64_t chunk = (bound + splits - 1) / splits;
        // grown only while uncaptured: the forward runs a configuration before it captures it
        float* part = static_cast<float*>(
            stream_scratch(stream, Scratch::AttentionSplits, size_t(s.heads * splits * (s.head_dim + 2)) * 4));
        launch("attention_split_kernel", attention_split_kernel, dim3(unsigned(s.heads), unsigned(splits)), kAttnThreads,
               smem, stream, s, q, keys, values, chunk, part, out, stream_counters(stream, s.heads));
        return;
    }
    if (s.n > 1 && s.head_dim >= 32 && s.head_dim <= kTiledMaxDim && (s.head_dim & (s.head_dim - 1)) == 0) {
        const size_t tiled = size_t((kTiledQueries + 2 * kTiledKeys) * s.head_dim + 4 * kTiledKeys) * sizeof(float);
        allow_smem(attention_tiled_kernel, int(tiled));  // head_dim 256: 98.5 KiB (never captured: several tokens)
        launch("attention_tiled_kernel", attention_tiled_kernel,
               dim3(unsigned((s.n + kTiledQueries - 1) / kTiledQueries), unsigned(s.heads)), kTiledThreads, tiled,
               stream, s, q, keys, values, out);
        return;
    }
    launch("attention_kernel", attention_kernel, dim3(unsigned(s.n), unsigned(s.heads)), kAttnThreads, smem, stream, s, q, keys, values, out);
}

void conv1d_silu(const float* x, float* state, const float* taps, int64_t n, int64_t C, int64_t K, float* out,
                 cudaStream_t stream) {
    if (n <= 0) return;
    if (K < 1 || K > kMaxConvKernel) CUDA_CHECK(cudaErrorInvalidValue);  // conv kernel beyond 8
    if (n == 1) {
        launch("conv1d_silu_kernel", conv1d_silu_kernel, unsigned((C + 127) / 128), 128, 0, stream, x, state, taps, C, K, out);
        return;
    }
    launch("conv1d_silu_tokens_kernel", conv1d_silu_tokens_kernel, dim3(unsigned((C + 127) / 128), unsigned(n)), 128, 0, stream, x, state, taps, n, C, K, out);
    launch("conv_state_kernel", conv_state_kernel, unsigned((C + 127) / 128), 128, 0, stream, x, state, n, C, K);
}

void deltanet_recurrence(const DeltaNetArgs& a, cudaStream_t stream) {
    if (a.n <= 0) return;
    if (a.n >= kDeltaChunkedMinTokens && a.key_dim <= kDeltaChunkedMaxKey) {
        deltanet_chunked(a, stream);
        return;
    }
    if (a.key_dim > kDeltaMaxKey) CUDA_CHECK(cudaErrorInvalidValue);  // key heads beyond 256
    launch("deltanet_kernel", deltanet_kernel, dim3(unsigned(a.value_heads), unsigned((a.value_dim + 31) / 32)),
           kDeltaWarps * 32, 0, stream, a);
}

void gated_rmsnorm(float* o, const float* z, const float* w, int64_t rows, int64_t dim, float eps, cudaStream_t stream) {
    if (rows <= 0) return;
    launch("gated_rmsnorm_kernel", gated_rmsnorm_kernel, unsigned(rows), 128, 0, stream, o, z, w, dim, eps);
}

void router_top_k(const float* logits, int64_t n, int64_t experts, int64_t k, int32_t* ids, float* weights,
                  cudaStream_t stream, int32_t extra_id) {
    if (n <= 0) return;
    // One warp per token: the k rounds of arg-max need no block-wide barriers then.
    if (experts <= kTopKPerLane * 32 && k <= 32) {
        launch("router_warp_kernel", router_warp_kernel, unsigned(n), 32, 0, stream, logits, experts, k, ids, weights, extra_id);
        return;
    }
    launch("router_kernel", router_kernel, unsigned(n), 32, size_t(experts) * sizeof(float), stream, logits, experts, k, ids, weights, extra_id);
}

void group_by_expert(const ExpertJob* table, const int32_t* ids, int64_t slots, int64_t experts, ExpertJob* jobs,
                     int32_t* slot_list, cudaStream_t stream) {
    if (experts <= 0) return;
    launch("group_by_expert_kernel", group_by_expert_kernel, unsigned(experts), kGroupThreads, 0, stream, table, ids,
           int32_t(slots), jobs, slot_list);
}

}  // namespace flashmoe::cuda
