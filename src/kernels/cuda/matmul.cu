// Weight-matrix kernels: matmul (one warp per output row, up to NT tokens per pass so each weight is
// decoded once per NT tokens), embedding lookup, and the routed-expert kernels that run many experts
// in one launch. Every weight format of ops/tensor.h is decoded here: f32, f16, bf16, and MLX affine
// with 2..8 bits; 2-, 4- and 8-bit codes take a word-wise path (codes never straddle a 32-bit word),
// other widths a per-element path. Several tokens with affine 4-bit weights go to the tensor cores
// (mma.cu).
#include "kernels/cuda/cuda_util.h"
#include "kernels/cuda/device_util.cuh"
#include "kernels/cuda/mma.cuh"
#include "kernels/cuda/ops.h"

#include <algorithm>

namespace flashmoe::cuda {

namespace {

constexpr int kWarpsPerBlock = 8;

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

// ---- single-token products (decode): x held in registers ----
//
// A weight row is read as 16-byte chunks; L lanes share a row (lane li takes chunks li, li + L, ...,
// CH of them), so a warp works on 32 / L rows at once, and keeps the columns of x it needs in
// registers for every row it visits (reading x once per row, as the multi-token path does, costs
// more cache bandwidth than the weights themselves). Codes become floats exactly by byte permutes
// into 2^23's mantissa. Per 16-byte chunk (never straddling a group): s * sum(q x) + b * sum(x).
// Only for affine 4- or 8-bit rows whose chunk count fits one of the shapes gemv_shape() lists.

__device__ __forceinline__ float code_f(uint32_t v, uint32_t sel) {
    return __uint_as_float(__byte_perm(v, 0x4B000000u, 0x7440u | sel)) - 8388608.0f;
}

template <int BITS, int L, int CH>
struct Gemv {
    static constexpr int kCpc = 128 / BITS;  // columns per 16-byte chunk
    static constexpr int kRpw = 32 / L;       // rows a warp works on at once
    float x[CH * kCpc];
    float sx[CH];

    __device__ __forceinline__ void load_x(const float* xrow, int li) {
#pragma unroll
        for (int ch = 0; ch < CH; ++ch) {
            const float4* p = reinterpret_cast<const float4*>(xrow + int64_t(ch * L + li) * kCpc);
            float s = 0;
#pragma unroll
            for (int v = 0; v < kCpc / 4; ++v) {
                const float4 f = p[v];
                x[ch * kCpc + 4 * v] = f.x;
                x[ch * kCpc + 4 * v + 1] = f.y;
                x[ch * kCpc + 4 * v + 2] = f.z;
                x[ch * kCpc + 4 * v + 3] = f.w;
                s += (f.x + f.y) + (f.z + f.w);
            }
            sx[ch] = s;
        }
    }

    struct Row {
        uint4 q[CH];
        float s[CH], b[CH];
    };

    // gpr: groups per row of the scales (w.cols / group, unless w is a column slice of a wider matrix)
    // Asks L2 for this lane's chunks of row r (no registers held: more bytes in flight per warp).
    __device__ __forceinline__ static void prefetch_row(const DMat& w, int64_t r, int li) {
        const uint8_t* p = static_cast<const uint8_t*>(w.data) + r * w.row_bytes;
#pragma unroll
        for (int ch = 0; ch < CH; ++ch) asm volatile("prefetch.global.L2 [%0];" ::"l"(p + (ch * L + li) * 16));
    }

    __device__ __forceinline__ static void load_row(const DMat& w, int64_t r, int li, Row& row, int64_t gpr) {
        const uint4* p = reinterpret_cast<const uint4*>(static_cast<const uint8_t*>(w.data) + r * w.row_bytes);
        const int gs = __ffs(w.group) - 1;  // groups are powers of two here (gemv_shape)
        const int64_t gbase = r * gpr;
#pragma unroll
        for (int ch = 0; ch < CH; ++ch) {
            row.q[ch] = p[ch * L + li];
            const int64_t g = gbase + (((ch * L + li) * kCpc) >> gs);
            row.s[ch] = load_scale(w.scales, w.scale_dtype, g);
            row.b[ch] = load_scale(w.biases, w.scale_dtype, g);
        }
    }

    // The full dot product (reduced over the row's L lanes; every lane of the group gets it).
    __device__ __forceinline__ float dot(const Row& row) const {
        float acc = 0;
#pragma unroll
        for (int ch = 0; ch < CH; ++ch) {
            const uint32_t wq[4] = {row.q[ch].x, row.q[ch].y, row.q[ch].z, row.q[ch].w};
            const float* xc = x + ch * kCpc;
            float qa[4] = {0, 0, 0, 0}, qb[4] = {0, 0, 0, 0};  // independent chains
#pragma unroll
            for (int i = 0; i < 4; ++i) {
                if (BITS == 4) {
                    const uint32_t lo = wq[i] & 0x0F0F0F0Fu, hi = (wq[i] >> 4) & 0x0F0F0F0Fu;
#pragma unroll
                    for (int j = 0; j < 4; ++j) {
                        qa[i] = fmaf(code_f(lo, j), xc[i * 8 + 2 * j], qa[i]);
                        qb[i] = fmaf(code_f(hi, j), xc[i * 8 + 2 * j + 1], qb[i]);
                    }
                } else {
#pragma unroll
                    for (int j = 0; j < 4; j += 2) {
                        qa[i] = fmaf(code_f(wq[i], j), xc[i * 4 + j], qa[i]);
                        qb[i] = fmaf(code_f(wq[i], j + 1), xc[i * 4 + j + 1], qb[i]);
                    }
                }
            }
            const float q = ((qa[0] + qb[0]) + (qa[1] + qb[1])) + ((qa[2] + qb[2]) + (qa[3] + qb[3]));
            acc = fmaf(row.s[ch], q, fmaf(row.b[ch], sx[ch], acc));
        }
#pragma unroll
        for (int o = L / 2; o > 0; o >>= 1) acc += __shfl_xor_sync(0xffffffffu, acc, o);
        return acc;
    }
};

// Shapes with a fast single-token path: (bits, lanes per row, chunks per lane) as one small code.
enum GemvShape : int { kGemvNone = 0, kG4L16C1, kG4L32C1, kG4L32C2, kG4L32C4, kG8L32C1, kG8L32C2, kG8L32C4 };

__host__ __device__ inline int gemv_shape(const DMat& w) {
    if (w.format != kAffine || (w.bits != 4 && w.bits != 8)) return kGemvNone;
    if (w.row_bytes * 8 != w.cols * w.bits || (w.row_bytes & 15) != 0) return kGemvNone;
    const int64_t cpc = 128 / w.bits;
    if (w.group % cpc != 0 || (w.group & (w.group - 1)) != 0 || w.cols >= (int64_t(1) << 30)) return kGemvNone;
    const int64_t chunks = w.row_bytes / 16;
    if (w.bits == 4) {
        if (chunks == 16) return kG4L16C1;
        if (chunks == 32) return kG4L32C1;
        if (chunks == 64) return kG4L32C2;
        if (chunks == 128) return kG4L32C4;
    } else {
        if (chunks == 32) return kG8L32C1;
        if (chunks == 64) return kG8L32C2;
        if (chunks == 128) return kG8L32C4;
    }
    return kGemvNone;
}

// Rows a warp works on at once for a shape.
__host__ __device__ inline int gemv_rpw(int shape) { return shape == kG4L16C1 ? 2 : 1; }

// Up to four matrices sharing one single-token input, one launch: block b belongs to the matrix m
// with first_block[m] <= b < first_block[m + 1]; each warp takes `rows_per_warp` row-sets.
struct GemvBatch {
    DMat w[kMaxGemvMats];
    float* y[kMaxGemvMats];
    int first_block[kMaxGemvMats + 1];
    int count = 0;
    int rows_per_warp = 1;
};

// Row-sets [rs0, rs0 + sets * kRpw) of w (rows past w.rows skipped), NB row-sets' weights loaded
// before any is used (loads in flight hide the memory latency); store(r, value) on one lane per row.
template <int BITS, int L, int CH, int NB, class Store>
__device__ __forceinline__ void gemv_sets(const DMat& w, const Gemv<BITS, L, CH>& g, int64_t rs0, int sets,
                                          Store store, int64_t gpr = -1) {
    using G = Gemv<BITS, L, CH>;
    const int lane = threadIdx.x & 31, li = lane % L, sub = lane / L;
    if (gpr < 0) gpr = w.cols >> (__ffs(w.group) - 1);
    for (int it = 0; it < sets; it += NB) {
        const int64_t rs = rs0 + int64_t(it) * G::kRpw;
        if (rs >= w.rows) return;  // uniform over the warp
        typename G::Row row[NB];
#pragma unroll
        for (int u = 0; u < NB; ++u) G::load_row(w, min(rs + u * G::kRpw + sub, w.rows - 1), li, row[u], gpr);
        // the next two batches of rows into L2 while these are multiplied
        if (it + NB < sets) {
#pragma unroll
            for (int u = 0; u < 2 * NB; ++u) {
                const int64_t r = rs + (NB + u) * G::kRpw + sub;
                if (it + NB + u < sets && r < w.rows) G::prefetch_row(w, r, li);
            }
        }
#pragma unroll
        for (int u = 0; u < NB; ++u) {
            const float v = g.dot(row[u]);
            const int64_t r = rs + u * G::kRpw + sub;
            if (li == 0 && it + u < sets && r < w.rows) store(r, v);
        }
    }
}

template <int BITS, int L, int CH>
__device__ __forceinline__ void gemv_warp(const DMat& w, const float* x, float* y, int64_t warp, int rpw_iters) {
    using G = Gemv<BITS, L, CH>;
    const int64_t rs0 = warp * G::kRpw * rpw_iters;
    if (rs0 >= w.rows) return;
    G g;
    g.load_x(x, (threadIdx.x & 31) % L);
    gemv_sets<BITS, L, CH, (CH >= 2 ? 2 : 4)>(w, g, rs0, rpw_iters, [&](int64_t r, float v) { y[r] = v; });
}

// Rows of twice CH chunks a lane: warp pairs split the columns in halves (even warp: first half),
// each half's dot product added to y (zeroed before) atomically: two addends onto zero give the
// same sum in either order, so the result is deterministic.
template <int BITS, int L, int CH>
__device__ __forceinline__ void gemv_warp_halves(const DMat& w, const float* x, float* y, int64_t warp, int rpw_iters) {
    using G = Gemv<BITS, L, CH>;
    const int h = int(warp & 1);
    const int64_t rs0 = (warp >> 1) * G::kRpw * rpw_iters;
    if (rs0 >= w.rows) return;
    const int gs = __ffs(w.group) - 1;
    const int64_t half = w.cols / 2, gpr = w.cols >> gs;
    const int64_t scale_bytes = w.scale_dtype == kF32 ? 4 : 2;
    DMat v = w;
    v.cols = half;
    v.data = static_cast<const uint8_t*>(w.data) + h * (w.row_bytes / 2);
    v.scales = static_cast<const uint8_t*>(w.scales) + h * (half >> gs) * scale_bytes;
    v.biases = static_cast<const uint8_t*>(w.biases) + h * (half >> gs) * scale_bytes;
    G g;
    g.load_x(x + h * half, (threadIdx.x & 31) % L);
    gemv_sets<BITS, L, CH, 2>(v, g, rs0, rpw_iters, [&](int64_t r, float val) { atomicAdd(&y[r], val); }, gpr);
}

template <int BITS, int L, int CH, bool HALVES>
__global__ void __launch_bounds__(kWarpsPerBlock * 32, 2) gemv_batch_kernel(GemvBatch b, const float* x) {
    int m = 0;
    while (m + 1 < b.count && int(blockIdx.x) >= b.first_block[m + 1]) ++m;
    const int64_t warp = int64_t(blockIdx.x - b.first_block[m]) * kWarpsPerBlock + threadIdx.x / 32;
    if (HALVES) gemv_warp_halves<BITS, L, CH>(b.w[m], x, b.y[m], warp, b.rows_per_warp);
    else gemv_warp<BITS, L, CH>(b.w[m], x, b.y[m], warp, b.rows_per_warp);
}

// Row-sets per warp: about one wave of warps on the chip (132 SMs x 16 warps), at most 16 each, a
// multiple of 4 above 4 (the loads are issued 4 row-sets at a time).
int gemv_rows_per_warp(int64_t rows, int rpw) {
    const int64_t sets = (rows + rpw - 1) / rpw;
    int64_t r = std::clamp<int64_t>((sets + 132 * 16 - 1) / (132 * 16), 1, 16);
    if (r > 4) r = (r + 3) / 4 * 4;
    return int(r);
}

// ---- single-token routed experts ----
// One block: kWarpsPerBlock warps of one slot; gate/up rows of one expert (or down rows). The
// expert's formats decide the path at run time (uniform over the block): the register path above
// for the shapes it takes, else row_dot<1>. `ids` == nullptr: jobs are host-grouped, one slot each
// (slot = slots[job.slot_begin]); else slot = blockIdx.y and the job is table[ids[slot]].

template <int BITS, int L, int CH>
__device__ __forceinline__ void gate_up_warp(const ExpertJob& job, const float* x, float* act, int64_t inter,
                                             int64_t warp, int rpw_iters) {
    using G = Gemv<BITS, L, CH>;
    const int lane = threadIdx.x & 31, li = lane % L, sub = lane / L;
    const int64_t rs0 = warp * G::kRpw * rpw_iters;
    if (rs0 >= inter) return;
    for (int it = 0; it < rpw_iters; ++it) {  // the warp's rows into L2 up front
        const int64_t r = rs0 + int64_t(it) * G::kRpw + sub;
        if (r < inter) {
            G::prefetch_row(job.gate, r, li);
            G::prefetch_row(job.up, r, li);
        }
    }
    G g;
    g.load_x(x, li);
    constexpr int NB = 1;  // a row-set of gate and one of up loaded together
    for (int it = 0; it < rpw_iters; it += NB) {
        const int64_t rs = rs0 + int64_t(it) * G::kRpw;
        if (rs >= inter) return;
        typename G::Row rg[NB], ru[NB];
#pragma unroll
        for (int u = 0; u < NB; ++u) {
            const int64_t r = min(rs + u * G::kRpw + sub, inter - 1);
            G::load_row(job.gate, r, li, rg[u], job.gate.cols >> (__ffs(job.gate.group) - 1));
            G::load_row(job.up, r, li, ru[u], job.up.cols >> (__ffs(job.up.group) - 1));
        }
#pragma unroll
        for (int u = 0; u < NB; ++u) {
            const float gv = g.dot(rg[u]), uv = g.dot(ru[u]);
            const int64_t r = rs + u * G::kRpw + sub;
            if (li == 0 && it + u < rpw_iters && r < inter) act[r] = silu(gv) * uv;
        }
    }
}

template <int BITS, int L, int CH>
__device__ __forceinline__ void down_warp(const DMat& w, const float* a, float wt, float* out, int64_t warp,
                                          int rpw_iters) {
    using G = Gemv<BITS, L, CH>;
    const int64_t rs0 = warp * G::kRpw * rpw_iters;
    if (rs0 >= w.rows) return;
    G g;
    g.load_x(a, (threadIdx.x & 31) % L);
    gemv_sets<BITS, L, CH, 2>(w, g, rs0, rpw_iters, [&](int64_t r, float v) { out[r] = v * wt; });
}

constexpr int kGateUpRowsPerWarp = 2;  // rows of gate and of up
constexpr int kDownRowsPerWarp = 4;

__global__ void __launch_bounds__(kWarpsPerBlock * 32)
    moe_gate_up_one_kernel(const ExpertJob* jobs, const int32_t* ids, const int32_t* slots, int64_t k, const float* x,
                           int64_t hidden, float* act, int64_t inter) {
    int64_t slot;
    const ExpertJob* job;
    if (ids) {
        slot = blockIdx.y;
        job = &jobs[ids[slot]];
    } else {
        job = &jobs[blockIdx.y];
        slot = slots[job->slot_begin];
    }
    const float* xr = x + (slot / k) * hidden;
    float* ar = act + slot * inter;
    const int64_t warp = int64_t(blockIdx.x) * kWarpsPerBlock + threadIdx.x / 32;
    const int shape = gemv_shape(job->gate);
    if (shape != kGemvNone && shape == gemv_shape(job->up)) {
        switch (shape) {
            case kG4L16C1: gate_up_warp<4, 16, 1>(*job, xr, ar, inter, warp, kGateUpRowsPerWarp / 2); return;
            case kG4L32C1: gate_up_warp<4, 32, 1>(*job, xr, ar, inter, warp, kGateUpRowsPerWarp); return;
            case kG4L32C2: gate_up_warp<4, 32, 2>(*job, xr, ar, inter, warp, kGateUpRowsPerWarp); return;
            case kG8L32C2: gate_up_warp<8, 32, 2>(*job, xr, ar, inter, warp, kGateUpRowsPerWarp); return;
            default: break;
        }
    }
    // generic: one warp per row, rows of this block's share
    const int lane = threadIdx.x & 31;
    for (int64_t r = warp * kGateUpRowsPerWarp; r < inter && r < (warp + 1) * kGateUpRowsPerWarp; ++r) {
        const float* xs[1] = {xr};
        float g[1], u[1];
        row_dot<1>(job->gate, r, xs, g, lane);
        row_dot<1>(job->up, r, xs, u, lane);
        if (lane == 0) ar[r] = silu(g[0]) * u[0];
    }
}

__global__ void __launch_bounds__(kWarpsPerBlock * 32)
    moe_down_one_kernel(const ExpertJob* jobs, const int32_t* ids, const int32_t* slots, const float* act,
                        int64_t inter, const float* weights, float* routed, int64_t hidden) {
    int64_t slot;
    const ExpertJob* job;
    if (ids) {
        slot = blockIdx.y;
        job = &jobs[ids[slot]];
    } else {
        job = &jobs[blockIdx.y];
        slot = slots[job->slot_begin];
    }
    const float* ar = act + slot * inter;
    float* out = routed + slot * hidden;
    const float wt = weights[slot];
    const int64_t warp = int64_t(blockIdx.x) * kWarpsPerBlock + threadIdx.x / 32;
    switch (gemv_shape(job->down)) {
        case kG4L16C1: down_warp<4, 16, 1>(job->down, ar, wt, out, warp, kDownRowsPerWarp / 2); return;
        case kG4L32C1: down_warp<4, 32, 1>(job->down, ar, wt, out, warp, kDownRowsPerWarp); return;
        case kG4L32C2: down_warp<4, 32, 2>(job->down, ar, wt, out, warp, kDownRowsPerWarp); return;
        case kG8L32C2: down_warp<8, 32, 2>(job->down, ar, wt, out, warp, kDownRowsPerWarp); return;
        default: break;
    }
    const int lane = threadIdx.x & 31;
    for (int64_t r = warp * kDownRowsPerWarp; r < hidden && r < (warp + 1) * kDownRowsPerWarp; ++r) {
        const float* xs[1] = {ar};
        float y[1];
        row_dot<1>(job->down, r, xs, y, lane);
        if (lane == 0) out[r] = y[0] * wt;
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
    const int64_t t = blockIdx.y;
    const int64_t r = ids[t];
    for (int64_t c = int64_t(blockIdx.x) * blockDim.x + threadIdx.x; c < w.cols; c += int64_t(gridDim.x) * blockDim.x)
        out[t * w.cols + c] = load_weight(w, r, c);
}

unsigned blocks_for(int64_t rows) { return unsigned((rows + kWarpsPerBlock - 1) / kWarpsPerBlock); }

}  // namespace

void matmul_multi(const DMat* const* w, float* const* y, int count, const float* x, cudaStream_t stream) {
    // Consecutive matrices of one fast shape share a launch; the others run on their own.
    int i = 0;
    while (i < count) {
        const int shape = gemv_shape(*w[i]);
        if (shape == kGemvNone || w[i]->rows == 0) {
            if (w[i]->rows > 0) {
                matmul_kernel<1><<<dim3(blocks_for(w[i]->rows), 1), kWarpsPerBlock * 32, 0, stream>>>(*w[i], x, 1, y[i]);
                CUDA_CHECK_LAUNCH("matmul_kernel");
            }
            ++i;
            continue;
        }
        GemvBatch b;
        const int rpw = gemv_rpw(shape);
        // 4 chunks a lane (4-bit 4096 columns, 8-bit 2048) run as two halves of 2 chunks (registers)
        const bool halves = shape == kG4L32C4 || shape == kG8L32C4;
        int64_t max_rows = 0;
        int j = i;
        for (; j < count && j - i < kMaxGemvMats && w[j]->rows > 0 && gemv_shape(*w[j]) == shape; ++j)
            max_rows = std::max(max_rows, w[j]->rows);
        b.count = j - i;
        b.rows_per_warp = gemv_rows_per_warp(max_rows * (halves ? 2 : 1), rpw);
        const int64_t rows_per_block = int64_t(kWarpsPerBlock) * rpw * b.rows_per_warp / (halves ? 2 : 1);
        int blocks = 0;
        for (int m = 0; m < b.count; ++m) {
            b.w[m] = *w[i + m];
            b.y[m] = y[i + m];
            b.first_block[m] = blocks;
            blocks += int((w[i + m]->rows + rows_per_block - 1) / rows_per_block);
        }
        b.first_block[b.count] = blocks;
        if (halves)
            for (int m = 0; m < b.count; ++m)
                CUDA_CHECK(cudaMemsetAsync(b.y[m], 0, size_t(b.w[m].rows) * sizeof(float), stream));
        const dim3 grid{unsigned(blocks)}, block{unsigned(kWarpsPerBlock * 32)};
        switch (shape) {
            case kG4L16C1: gemv_batch_kernel<4, 16, 1, false><<<grid, block, 0, stream>>>(b, x); break;
            case kG4L32C1: gemv_batch_kernel<4, 32, 1, false><<<grid, block, 0, stream>>>(b, x); break;
            case kG4L32C2: gemv_batch_kernel<4, 32, 2, false><<<grid, block, 0, stream>>>(b, x); break;
            case kG4L32C4: gemv_batch_kernel<4, 32, 2, true><<<grid, block, 0, stream>>>(b, x); break;
            case kG8L32C1: gemv_batch_kernel<8, 32, 1, false><<<grid, block, 0, stream>>>(b, x); break;
            case kG8L32C2: gemv_batch_kernel<8, 32, 2, false><<<grid, block, 0, stream>>>(b, x); break;
            default: gemv_batch_kernel<8, 32, 2, true><<<grid, block, 0, stream>>>(b, x); break;
        }
        CUDA_CHECK_LAUNCH("gemv_batch_kernel");
        i = j;
    }
}

void matmul(const DMat& w, const float* x, int64_t n, float* y, cudaStream_t stream) {
    if (n <= 0 || w.rows == 0) return;
    if (n == 1) {
        const DMat* ws[1] = {&w};
        float* ys[1] = {y};
        matmul_multi(ws, ys, 1, x, stream);
        return;
    }
    if (mma_ok(w)) {
        mma_matmul(w, x, n, y, stream);
        return;
    }
    matmul_kernel<8><<<dim3(blocks_for(w.rows), unsigned((n + 7) / 8)), kWarpsPerBlock * 32, 0, stream>>>(w, x, n, y);
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
    if (b.max_count == 1 && b.tokens == 1) {
        moe_gate_up_one_kernel<<<dim3(unsigned((b.intermediate + kWarpsPerBlock * kGateUpRowsPerWarp - 1) /
                                               (kWarpsPerBlock * kGateUpRowsPerWarp)),
                                      unsigned(b.njobs)),
                                 kWarpsPerBlock * 32, 0, stream>>>(b.jobs, nullptr, b.slots, b.k, x, b.hidden, act,
                                                                   b.intermediate);
    } else {
        // Several tokens: jobs whose matrices are 4-bit affine run on the tensor cores (any count,
        // so a slot's result does not depend on how the experts were split into waves), the others
        // on the fp32 kernels.
        const bool mma = b.tokens > 1 && (b.hidden % 32) == 0;
        if (mma) mma_moe_gate_up(b, x, act, stream);
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
        moe_down_one_kernel<<<dim3(unsigned((b.hidden + kWarpsPerBlock * kDownRowsPerWarp - 1) /
                                            (kWarpsPerBlock * kDownRowsPerWarp)),
                                   unsigned(b.njobs)),
                              kWarpsPerBlock * 32, 0, stream>>>(b.jobs, nullptr, b.slots, act, b.intermediate, weights,
                                                                routed, b.hidden);
    } else {
        const bool mma = b.tokens > 1 && (b.intermediate % 32) == 0;
        if (mma) mma_moe_down(b, act, weights, routed, stream);
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

void moe_gate_up_routed(const ExpertJob* table, const int32_t* ids, int64_t slots, int64_t k, int64_t hidden,
                        int64_t intermediate, const float* x, float* act, cudaStream_t stream) {
    if (slots <= 0) return;
    moe_gate_up_one_kernel<<<dim3(unsigned((intermediate + kWarpsPerBlock * kGateUpRowsPerWarp - 1) /
                                           (kWarpsPerBlock * kGateUpRowsPerWarp)),
                                  unsigned(slots)),
                             kWarpsPerBlock * 32, 0, stream>>>(table, ids, nullptr, k, x, hidden, act, intermediate);
    CUDA_CHECK_LAUNCH("moe_gate_up_one_kernel");
}

void moe_down_routed(const ExpertJob* table, const int32_t* ids, int64_t slots, int64_t hidden, int64_t intermediate,
                     const float* act, const float* weights, float* routed, cudaStream_t stream) {
    if (slots <= 0) return;
    moe_down_one_kernel<<<dim3(unsigned((hidden + kWarpsPerBlock * kDownRowsPerWarp - 1) /
                                        (kWarpsPerBlock * kDownRowsPerWarp)),
                               unsigned(slots)),
                          kWarpsPerBlock * 32, 0, stream>>>(table, ids, nullptr, act, intermediate, weights, routed,
                                                            hidden);
    CUDA_CHECK_LAUNCH("moe_down_one_kernel");
}

}  // namespace flashmoe::cuda
