// Single-token weight products (decode): matmul_multi and the routed experts' one-token kernels,
// with fp32 or int8 activations (MatmulActivations), every launch a programmatic dependent one.
#include <algorithm>
#include <type_traits>

#include "kernels/cuda/cuda_util.h"
#include "kernels/cuda/launch.cuh"
#include "kernels/cuda/weights.cuh"

namespace flashmoe::cuda {

namespace {

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

// How a lane reads its share of a weight row: L lanes a row, CH 16-byte chunks a lane.
template <int BITS, int L, int CH>
struct GemvRows {
    static constexpr int kCpc = 128 / BITS;  // columns per 16-byte chunk
    static constexpr int kRpw = 32 / L;      // rows a warp works on at once

    struct Row {
        uint4 q[CH];
        float s[CH], b[CH];
    };

    // gpr: groups per row of the scales (w.cols / group, unless w is a column slice of a wider matrix)
    // Asks L2 for this lane's chunks of row r (no registers held: more bytes in flight per warp).
    __device__ __forceinline__ static void prefetch_row(const DMat& w, int64_t r, int li,
                                                        int64_t col_bytes = 0) {
        const uint8_t* p = static_cast<const uint8_t*>(w.data) + r * w.row_bytes + col_bytes;
#pragma unroll
        for (int ch = 0; ch < CH; ++ch)
            asm volatile("prefetch.global.L2 [%0];" ::"l"(p + (ch * L + li) * 16));
    }

    __device__ __forceinline__ static void load_row(const DMat& w, int64_t r, int li, Row& row, int64_t gpr) {
        const uint4* p =
            reinterpret_cast<const uint4*>(static_cast<const uint8_t*>(w.data) + r * w.row_bytes);
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
};

// The fp32 dot products: the lane's columns of x in registers.
template <int BITS, int L, int CH>
struct Gemv : GemvRows<BITS, L, CH> {
    using Base = GemvRows<BITS, L, CH>;
    using Base::kCpc;
    using typename Base::Row;
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

// ---- int8 activations (MatmulActivations::Int8) for the single-token products ----
//
// The CPU's semantics (kernels/cpu/matmul.h): per weight group of G columns d = max|x| / 127 and
// xq = rint(x * 127 / max|x|) in [-127, 127]; y = sum s d idot + b d isum with exact integer dot
// products (dp4a) and fp32 elsewhere, here per 16-byte chunk (a group or part of one: the same terms,
// summed in another order). A block quantises its input into shared memory once (the same bits as
// the CPU's quantisation); each lane then keeps its chunks' codes in registers, a quarter of the
// fp32 path's, for every row it visits.

constexpr int kQ8MaxCols = 4096;

struct Q8Input {
    uint32_t xq[kQ8MaxCols / 4];  // per 8 columns two words: 4-bit weights the even then the odd
                                  // columns' codes (the nibble order), 8-bit weights in column order
    float d[kQ8MaxCols / 16];     // per chunk of the weights: its group's d
    float isd[kQ8MaxCols / 16];   // per chunk: d * the sum of its codes
};

// x [cols] into `in` for BITS-bit weights with groups of `group` columns (cols a multiple of 256,
// at most kQ8MaxCols; group a power of two from 16 to 256). Every thread of the block calls it.
template <int BITS>
__device__ void quantize_q8(const float* x, int64_t cols, int group, Q8Input& in) {
    constexpr int kTpc = 128 / BITS / 8;                               // threads (8 columns each) per chunk
    const int tpg = group / 8;                                         // threads per group
    for (int64_t c8 = threadIdx.x; c8 < cols / 8; c8 += blockDim.x) {  // whole warps (cols % 256 == 0)
        const float4 a = reinterpret_cast<const float4*>(x)[2 * c8],
                     b = reinterpret_cast<const float4*>(x)[2 * c8 + 1];
        const float v[8] = {a.x, a.y, a.z, a.w, b.x, b.y, b.z, b.w};
        float amax = 0.0f;
#pragma unroll
        for (int e = 0; e < 8; ++e) amax = fmaxf(amax, fabsf(v[e]));
        for (int o = 1; o < tpg; o <<= 1) amax = fmaxf(amax, __shfl_xor_sync(0xffffffffu, amax, o));
        int q[8];
        int sum = quantize8(v, amax, q);
        in.xq[2 * c8] = BITS == 4 ? pack_s8(q[0], q[2], q[4], q[6]) : pack_s8(q[0], q[1], q[2], q[3]);
        in.xq[2 * c8 + 1] = BITS == 4 ? pack_s8(q[1], q[3], q[5], q[7]) : pack_s8(q[4], q[5], q[6], q[7]);
#pragma unroll
        for (int o = 1; o < kTpc; o <<= 1) sum += __shfl_xor_sync(0xffffffffu, sum, o);
        if (c8 % kTpc == 0) {
            const float d = amax / 127.0f;
            in.d[c8 / kTpc] = d;
            in.isd[c8 / kTpc] = d * float(sum);
        }
    }
    __syncthreads();
}

__device__ __forceinline__ int dp4a_us(uint32_t a, uint32_t b, int c) {
    int d;
    asm("dp4a.u32.s32 %0, %1, %2, %3;" : "=r"(d) : "r"(a), "r"(b), "r"(c));
    return d;
}

template <int BITS, int L, int CH>
struct GemvQ8 : GemvRows<BITS, L, CH> {
    using Base = GemvRows<BITS, L, CH>;
    using typename Base::Row;
    static constexpr int kWords = 128 / BITS / 4;  // words of codes of x per chunk
    uint32_t xq[CH][kWords];
    float d[CH], isd[CH];

    __device__ __forceinline__ void load_x(const Q8Input& in, int li) {
#pragma unroll
        for (int ch = 0; ch < CH; ++ch) {
            const int chunk = ch * L + li;
#pragma unroll
            for (int w = 0; w < kWords; w += 4) {
                const uint4 v = *reinterpret_cast<const uint4*>(&in.xq[chunk * kWords + w]);
                xq[ch][w] = v.x;
                xq[ch][w + 1] = v.y;
                xq[ch][w + 2] = v.z;
                xq[ch][w + 3] = v.w;
            }
            d[ch] = in.d[chunk];
            isd[ch] = in.isd[chunk];
        }
    }

    __device__ __forceinline__ float dot(const Row& row) const {
        float acc = 0;
#pragma unroll
        for (int ch = 0; ch < CH; ++ch) {
            const uint32_t wq[4] = {row.q[ch].x, row.q[ch].y, row.q[ch].z, row.q[ch].w};
            int idot = 0;
#pragma unroll
            for (int i = 0; i < 4; ++i) {
                if (BITS == 4) {
                    idot = __dp4a(int(wq[i] & 0x0F0F0F0Fu), int(xq[ch][2 * i]), idot);
                    idot = __dp4a(int((wq[i] >> 4) & 0x0F0F0F0Fu), int(xq[ch][2 * i + 1]), idot);
                } else {
                    idot = dp4a_us(wq[i], xq[ch][i], idot);
                }
            }
            acc = fmaf(row.s[ch] * d[ch], float(idot), fmaf(row.b[ch], isd[ch], acc));
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
    if (w.group % cpc != 0 || (w.group & (w.group - 1)) != 0 || w.cols >= (int64_t(1) << 30))
        return kGemvNone;
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

// Whether the int8-activation path takes w (a register shape, groups of at most 256 columns).
__host__ __device__ inline bool q8_ok(const DMat& w) {
    return gemv_shape(w) != kGemvNone && w.group <= 256 && w.cols % 256 == 0 && w.cols <= kQ8MaxCols;
}

// Rows a warp works on at once for a shape.
__host__ __device__ inline int gemv_rpw(int shape) {
    return shape == kG4L16C1 ? 2 : 1;
}

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
// before any is used (loads in flight hide the memory latency). After each batch every lane calls
// store(rs, it, v): v[u] is the dot product of row rs + u * kRpw + lane / L (valid where
// it + u < sets and the row exists), the same on the row's L lanes.
template <class G, int NB, class Store>
__device__ __forceinline__ void gemv_sets(const DMat& w, const G& g, int64_t rs0, int sets, Store store,
                                          int64_t gpr = -1) {
    constexpr int L = 32 / G::kRpw;
    const int lane = threadIdx.x & 31, li = lane % L, sub = lane / L;
    if (gpr < 0) gpr = w.cols >> (__ffs(w.group) - 1);
    for (int it = 0; it < sets; it += NB) {
        const int64_t rs = rs0 + int64_t(it) * G::kRpw;
        if (rs >= w.rows) return;  // uniform over the warp
        typename G::Row row[NB];
#pragma unroll
        for (int u = 0; u < NB; ++u) G::load_row(w, min(rs + u * G::kRpw + sub, w.rows - 1), li, row[u], gpr);
        float v[NB];
#pragma unroll
        for (int u = 0; u < NB; ++u) v[u] = g.dot(row[u]);
        store(rs, it, v);
    }
}

// y[r] = scale * (row r of w) x for this warp's row-sets (g holds x, fp32 or int8; scale 1 is exact).
template <class G, int NB>
__device__ __forceinline__ void store_rows(const DMat& w, const G& g, int64_t rs0, int rpw_iters, float* y,
                                           float scale) {
    constexpr int L = 32 / G::kRpw;
    const int li = (threadIdx.x & 31) % L, sub = (threadIdx.x & 31) / L;
    gemv_sets<G, NB>(w, g, rs0, rpw_iters, [&](int64_t rs, int it, const float(&v)[NB]) {
#pragma unroll
        for (int u = 0; u < NB; ++u) {
            const int64_t r = rs + u * G::kRpw + sub;
            if (li == 0 && it + u < rpw_iters && r < w.rows) y[r] = v[u] * scale;
        }
    });
}

// This warp's rows (as gemv_warp / gemv_warp_halves will visit them) into L2, scales and biases
// included: issued before the kernel waits for its input, so the weights arrive meanwhile.
template <int BITS, int L, int CH>
__device__ __forceinline__ void gemv_prefetch(const DMat& w, int64_t warp, int rpw_iters, bool halves) {
    using G = Gemv<BITS, L, CH>;
    const int lane = threadIdx.x & 31, li = lane % L, sub = lane / L;
    const int64_t rs0 = (halves ? warp >> 1 : warp) * G::kRpw * rpw_iters;
    const int64_t col_bytes = halves ? (warp & 1) * (w.row_bytes / 2) : 0;
    const int64_t scale_row = (w.cols / w.group) * (w.scale_dtype == kF32 ? 4 : 2);
    for (int it = 0; it < rpw_iters; ++it) {
        const int64_t r = rs0 + int64_t(it) * G::kRpw + sub;
        if (r >= w.rows) return;
        G::prefetch_row(w, r, li, col_bytes);
        if (li == 0) {
            asm volatile(
                "prefetch.global.L2 [%0];" ::"l"(static_cast<const uint8_t*>(w.scales) + r * scale_row));
            asm volatile(
                "prefetch.global.L2 [%0];" ::"l"(static_cast<const uint8_t*>(w.biases) + r * scale_row));
        }
    }
}

// One warp's row-sets of w, NB at a time, with the activations G takes: fp32 x (Gemv) or the block's
// int8 quantisation of it (GemvQ8).
template <class G, int NB, class X>
__device__ __forceinline__ void gemv_warp(const DMat& w, const X& x, float* y, int64_t warp, int rpw_iters) {
    const int64_t rs0 = warp * G::kRpw * rpw_iters;
    if (rs0 >= w.rows) return;
    G g;
    g.load_x(x, (threadIdx.x & 31) % (32 / G::kRpw));
    store_rows<G, NB>(w, g, rs0, rpw_iters, y, 1.0f);
}

// A batch launch's block: its matrix m and this warp's index within the matrix's warps.
__device__ __forceinline__ int batch_matrix(const GemvBatch& b, int64_t& warp) {
    int m = 0;
    while (m + 1 < b.count && int(blockIdx.x) >= b.first_block[m + 1]) ++m;
    warp = int64_t(blockIdx.x - b.first_block[m]) * kWarpsPerBlock + threadIdx.x / 32;
    return m;
}

// Rows of twice CH chunks a lane: the two warps of a pair split the columns in halves (even warp:
// first half); the odd warp's sums pass through shared memory and the even warp stores
// first + second, one rounding as a single sum of the two would give.
template <int BITS, int L, int CH>
__device__ __forceinline__ void gemv_warp_halves(const DMat& w, const float* x, float* y, int64_t warp,
                                                 int rpw_iters) {
    using G = Gemv<BITS, L, CH>;
    constexpr int NB = 2;
    __shared__ float odd_sums[kWarpsPerBlock / 2][NB * G::kRpw];
    const int h = int(warp & 1), pair = (threadIdx.x / 32) >> 1;
    const int64_t rs0 = (warp >> 1) * G::kRpw * rpw_iters;
    if (rs0 >= w.rows) return;  // uniform over the pair
    const int gs = __ffs(w.group) - 1;
    const int64_t half = w.cols / 2, gpr = w.cols >> gs;
    const int64_t scale_bytes = w.scale_dtype == kF32 ? 4 : 2;
    DMat v = w;
    v.cols = half;
    v.data = static_cast<const uint8_t*>(w.data) + h * (w.row_bytes / 2);
    v.scales = static_cast<const uint8_t*>(w.scales) + h * (half >> gs) * scale_bytes;
    v.biases = static_cast<const uint8_t*>(w.biases) + h * (half >> gs) * scale_bytes;
    const int li = (threadIdx.x & 31) % L, sub = (threadIdx.x & 31) / L;
    G g;
    g.load_x(x + h * half, li);
    gemv_sets<G, NB>(
        v, g, rs0, rpw_iters,
        [&](int64_t rs, int it, const float(&val)[NB]) {
            if (h == 1 && li == 0) {
#pragma unroll
                for (int u = 0; u < NB; ++u) odd_sums[pair][u * G::kRpw + sub] = val[u];
            }
            asm volatile("bar.sync %0, 64;" ::"r"(1 + pair) : "memory");
            if (h == 0 && li == 0) {
#pragma unroll
                for (int u = 0; u < NB; ++u) {
                    const int64_t r = rs + u * G::kRpw + sub;
                    if (it + u < rpw_iters && r < w.rows) y[r] = val[u] + odd_sums[pair][u * G::kRpw + sub];
                }
            }
            asm volatile("bar.sync %0, 64;" ::"r"(1 + pair) : "memory");  // odd_sums free again
        },
        gpr);
}

template <int BITS, int L, int CH, bool HALVES>
__global__ void __launch_bounds__(kWarpsPerBlock * 32, 2) gemv_batch_kernel(GemvBatch b, const float* x) {
    int64_t warp;
    const int m = batch_matrix(b, warp);
    gemv_prefetch<BITS, L, CH>(b.w[m], warp, b.rows_per_warp, HALVES);
    pdl_wait();
    pdl_trigger();
    if (HALVES)
        gemv_warp_halves<BITS, L, CH>(b.w[m], x, b.y[m], warp, b.rows_per_warp);
    else
        gemv_warp<Gemv<BITS, L, CH>, CH >= 2 ? 2 : 4>(b.w[m], x, b.y[m], warp, b.rows_per_warp);
}

// Matrices of one shape and group size, q8_ok, one launch (as gemv_batch_kernel; whole rows), x
// quantised by the whole block.
template <int BITS, int L, int CH>
__global__ void __launch_bounds__(kWarpsPerBlock * 32, 3) gemv_q8_kernel(GemvBatch b, const float* x) {
    __shared__ __align__(16) Q8Input in;
    int64_t warp;
    const int m = batch_matrix(b, warp);
    gemv_prefetch<BITS, L, CH>(b.w[m], warp, b.rows_per_warp, false);
    pdl_wait();
    pdl_trigger();
    quantize_q8<BITS>(x, b.w[m].cols, b.w[m].group, in);
    gemv_warp<GemvQ8<BITS, L, CH>, CH >= 4 ? 1 : CH >= 2 ? 2 : 4>(b.w[m], in, b.y[m], warp, b.rows_per_warp);
}

// Row-sets per warp: about one wave of warps on the chip (132 SMs x 16 or 24 warps), at most 16 each, a
// multiple of 4 above 4 (the loads are issued 4 row-sets at a time).
int gemv_rows_per_warp(int64_t rows, int rpw, int warps_per_sm = 16) {
    const int64_t sets = (rows + rpw - 1) / rpw, wave = 132 * warps_per_sm;
    int64_t r = std::clamp<int64_t>((sets + wave - 1) / wave, 1, 16);
    if (r > 4) r = (r + 3) / 4 * 4;
    return int(r);
}

// ---- single-token routed experts ----
// One block: kWarpsPerBlock warps of one slot; gate/up rows of one expert (or down rows). The
// expert's formats decide the path at run time (uniform over the block): the register path above
// for the shapes it takes, else row_dot<1>. `ids` == nullptr: jobs are host-grouped, one slot each
// (slot = slots[job.slot_begin]); else slot = blockIdx.y and the job is table[ids[slot]].

// This warp's rows of an expert matrix (or of gate and up) into L2 before it waits on them.
template <class G>
__device__ __forceinline__ void prefetch_rows(const DMat& w, int64_t rs0, int rpw_iters, int li, int sub) {
    for (int it = 0; it < rpw_iters; ++it) {
        const int64_t r = rs0 + int64_t(it) * G::kRpw + sub;
        if (r < w.rows) G::prefetch_row(w, r, li);
    }
}

// act[r] = silu(gate_r x) * (up_r x) for this warp's row-sets; g holds x (fp32 or int8).
template <class G>
__device__ __forceinline__ void gate_up_rows(const ExpertJob& job, const G& g, float* act, int64_t inter,
                                             int64_t rs0, int rpw_iters) {
    constexpr int L = 32 / G::kRpw;
    const int lane = threadIdx.x & 31, li = lane % L, sub = lane / L;
    for (int it = 0; it < rpw_iters; ++it) {  // a row-set of gate and one of up loaded together
        const int64_t rs = rs0 + int64_t(it) * G::kRpw;
        if (rs >= inter) return;
        typename G::Row rg, ru;
        const int64_t r = min(rs + sub, inter - 1);
        G::load_row(job.gate, r, li, rg, job.gate.cols >> (__ffs(job.gate.group) - 1));
        G::load_row(job.up, r, li, ru, job.up.cols >> (__ffs(job.up.group) - 1));
        const float gv = g.dot(rg), uv = g.dot(ru);
        if (li == 0 && rs + sub < inter) act[rs + sub] = silu(gv) * uv;
    }
}

template <int BITS, int L, int CH, bool Q8>
__device__ __forceinline__ void gate_up_warp(const ExpertJob& job, const float* x, float* act, int64_t inter,
                                             int64_t warp, int rpw_iters, Q8Input* in) {
    using G = std::conditional_t<Q8, GemvQ8<BITS, L, CH>, Gemv<BITS, L, CH>>;
    const int lane = threadIdx.x & 31, li = lane % L, sub = lane / L;
    const int64_t rs0 = warp * G::kRpw * rpw_iters;
    prefetch_rows<G>(job.gate, rs0, rpw_iters, li, sub);
    prefetch_rows<G>(job.up, rs0, rpw_iters, li, sub);
    G g;
    if constexpr (Q8) {
        quantize_q8<BITS>(x, job.gate.cols, job.gate.group, *in);  // the whole block
        g.load_x(*in, li);
    } else {
        g.load_x(x, li);
    }
    gate_up_rows(job, g, act, inter, rs0, rpw_iters);
}

template <int BITS, int L, int CH, bool Q8>
__device__ __forceinline__ void down_warp(const DMat& w, const float* a, float wt, float* out, int64_t warp,
                                          int rpw_iters, Q8Input* in) {
    using G = std::conditional_t<Q8, GemvQ8<BITS, L, CH>, Gemv<BITS, L, CH>>;
    const int64_t rs0 = warp * G::kRpw * rpw_iters;
    const int li = (threadIdx.x & 31) % L, sub = (threadIdx.x & 31) / L;
    prefetch_rows<G>(w, rs0, rpw_iters, li, sub);
    G g;
    if constexpr (Q8) {
        quantize_q8<BITS>(a, w.cols, w.group, *in);  // the whole block
        g.load_x(*in, li);
    } else {
        g.load_x(a, li);
    }
    if (rs0 >= w.rows) return;
    store_rows<G, 2>(w, g, rs0, rpw_iters, out, wt);
}

constexpr int kGateUpRowsPerWarp = 2;  // rows of gate and of up
constexpr int kDownRowsPerWarp = 8;  // (9 slots of 2048 rows: one wave of blocks)

// The register shapes the experts' one-token kernels take: f(Shape<bits, lanes, chunks>{}) for
// those, false for the others.
template <int B, int L, int C>
struct Shape {
    static constexpr int kBits = B, kLanes = L, kChunks = C;
};
template <class F>
__device__ __forceinline__ bool with_expert_shape(int shape, F&& f) {
    switch (shape) {
        case kG4L16C1:
            f(Shape<4, 16, 1>{});
            return true;
        case kG4L32C1:
            f(Shape<4, 32, 1>{});
            return true;
        case kG4L32C2:
            f(Shape<4, 32, 2>{});
            return true;
        case kG8L32C2:
            f(Shape<8, 32, 2>{});
            return true;
        default:
            return false;
    }
}

// The slot and job of this block (see above).
__device__ __forceinline__ const ExpertJob* expert_job(const ExpertJob* jobs, const int32_t* ids,
                                                       const int32_t* slots, int64_t& slot) {
    if (ids) {
        slot = blockIdx.y;
        return &jobs[ids[slot]];
    }
    slot = slots[jobs[blockIdx.y].slot_begin];
    return &jobs[blockIdx.y];
}

// Q8: int8 activations where the matrices take them (q8_ok), the fp32 path otherwise.
template <bool Q8>
__global__ void __launch_bounds__(kWarpsPerBlock * 32, Q8 ? 3 : 2)
    moe_gate_up_one_kernel(const ExpertJob* jobs, const int32_t* ids, const int32_t* slots, int64_t k,
                           const float* x, int64_t hidden, float* act, int64_t inter) {
    __shared__ __align__(16) std::conditional_t<Q8, Q8Input, char> q8_smem;
    Q8Input* q8_in = Q8 ? reinterpret_cast<Q8Input*>(&q8_smem) : nullptr;
    pdl_wait();
    pdl_trigger();
    int64_t slot;
    const ExpertJob* job = expert_job(jobs, ids, slots, slot);
    const float* xr = x + (slot / k) * hidden;
    float* ar = act + slot * inter;
    const int64_t warp = int64_t(blockIdx.x) * kWarpsPerBlock + threadIdx.x / 32;
    // the down kernel's rows of this slot into L2 meanwhile (a share per block)
    const DMat& dw = job->down;
    const int64_t share = (dw.rows * dw.row_bytes + gridDim.x - 1) / gridDim.x;
    prefetch_l2(static_cast<const uint8_t*>(dw.data) + blockIdx.x * share,
                min(share, dw.rows * dw.row_bytes - int64_t(blockIdx.x) * share), threadIdx.x, blockDim.x);
    // int8 where the matrices take it (the Q8 kernel's fallback is the generic path: fewer registers)
    const int shape = gemv_shape(job->gate);
    if (shape == gemv_shape(job->up) && (!Q8 || (q8_ok(job->gate) && job->gate.group == job->up.group))) {
        const bool done = with_expert_shape(shape, [&](auto s) {
            using S = decltype(s);
            gate_up_warp<S::kBits, S::kLanes, S::kChunks, Q8>(*job, xr, ar, inter, warp,
                                                              kGateUpRowsPerWarp * S::kLanes / 32, q8_in);
        });
        if (done) return;
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

template <bool Q8>
__global__ void __launch_bounds__(kWarpsPerBlock * 32, Q8 ? 3 : 2)
    moe_down_one_kernel(const ExpertJob* jobs, const int32_t* ids, const int32_t* slots, const float* act,
                        int64_t inter, const float* weights, float* routed, int64_t hidden) {
    __shared__ __align__(16) std::conditional_t<Q8, Q8Input, char> q8_smem;
    Q8Input* q8_in = Q8 ? reinterpret_cast<Q8Input*>(&q8_smem) : nullptr;
    pdl_wait();
    pdl_trigger();
    int64_t slot;
    const ExpertJob* job = expert_job(jobs, ids, slots, slot);
    const float* ar = act + slot * inter;
    float* out = routed + slot * hidden;
    const float wt = weights[slot];
    const int64_t warp = int64_t(blockIdx.x) * kWarpsPerBlock + threadIdx.x / 32;
    if (!Q8 || q8_ok(job->down)) {  // as gate/up above
        const bool done = with_expert_shape(gemv_shape(job->down), [&](auto s) {
            using S = decltype(s);
            down_warp<S::kBits, S::kLanes, S::kChunks, Q8>(job->down, ar, wt, out, warp,
                                                           kDownRowsPerWarp * S::kLanes / 32, q8_in);
        });
        if (done) return;
    }
    const int lane = threadIdx.x & 31;
    for (int64_t r = warp * kDownRowsPerWarp; r < hidden && r < (warp + 1) * kDownRowsPerWarp; ++r) {
        const float* xs[1] = {ar};
        float y[1];
        row_dot<1>(job->down, r, xs, y, lane);
        if (lane == 0) out[r] = y[0] * wt;
    }
}

// Single-token expert launches: (row blocks, one per slot or job).
dim3 gate_up_one_grid(int64_t intermediate, int64_t slots) {
    constexpr int64_t rows = kWarpsPerBlock * kGateUpRowsPerWarp;
    return dim3(unsigned((intermediate + rows - 1) / rows), unsigned(slots));
}
// The single-token expert kernels of the process's activation mode.
auto gate_up_one_kernel() {
    return cuda_int8_activations() ? moe_gate_up_one_kernel<true> : moe_gate_up_one_kernel<false>;
}
auto down_one_kernel() {
    return cuda_int8_activations() ? moe_down_one_kernel<true> : moe_down_one_kernel<false>;
}

dim3 down_one_grid(int64_t hidden, int64_t slots) {
    constexpr int64_t rows = kWarpsPerBlock * kDownRowsPerWarp;
    return dim3(unsigned((hidden + rows - 1) / rows), unsigned(slots));
}

using GemvKernel = void (*)(GemvBatch, const float*);

GemvKernel fp32_kernel(int shape) {
    // 4 chunks a lane (4-bit 4096 columns, 8-bit 2048) run as two halves of 2 chunks (registers)
    switch (shape) {
        case kG4L16C1:
            return gemv_batch_kernel<4, 16, 1, false>;
        case kG4L32C1:
            return gemv_batch_kernel<4, 32, 1, false>;
        case kG4L32C2:
            return gemv_batch_kernel<4, 32, 2, false>;
        case kG4L32C4:
            return gemv_batch_kernel<4, 32, 2, true>;
        case kG8L32C1:
            return gemv_batch_kernel<8, 32, 1, false>;
        case kG8L32C2:
            return gemv_batch_kernel<8, 32, 2, false>;
        default:
            return gemv_batch_kernel<8, 32, 2, true>;
    }
}

GemvKernel int8_kernel(int shape) {
    switch (shape) {
        case kG4L16C1:
            return gemv_q8_kernel<4, 16, 1>;
        case kG4L32C1:
            return gemv_q8_kernel<4, 32, 1>;
        case kG4L32C2:
            return gemv_q8_kernel<4, 32, 2>;
        case kG4L32C4:
            return gemv_q8_kernel<4, 32, 4>;
        case kG8L32C1:
            return gemv_q8_kernel<8, 32, 1>;
        case kG8L32C2:
            return gemv_q8_kernel<8, 32, 2>;
        default:
            return gemv_q8_kernel<8, 32, 4>;
    }
}

// w[i] and the matrices after it that share its launch (same register shape and the same activations:
// int8 where int8_mode and q8_ok, then also the same group size, as each block quantises its input
// by its matrix's groups), at most kMaxGemvMats, in one launch; returns the index after them.
int gemv_launch(const DMat* const* w, float* const* y, int i, int count, const float* x, bool int8_mode,
                cudaStream_t stream) {
    const int shape = gemv_shape(*w[i]);
    const int rpw = gemv_rpw(shape);
    const bool int8 = int8_mode && q8_ok(*w[i]);
    // fp32: 4-chunk rows take a warp pair (two halves); int8 keeps whole rows, three blocks an SM
    const bool halves = !int8 && (shape == kG4L32C4 || shape == kG8L32C4);
    GemvBatch b;
    int64_t total_rows = 0;
    int j = i;
    for (; j < count && j - i < kMaxGemvMats && w[j]->rows > 0 && gemv_shape(*w[j]) == shape &&
           (int8_mode && q8_ok(*w[j])) == int8 && (!int8 || w[j]->group == w[i]->group);
         ++j)
        total_rows += w[j]->rows;
    b.count = j - i;
    b.rows_per_warp = gemv_rows_per_warp(total_rows * (halves ? 2 : 1), rpw, int8 ? 24 : 16);
    const int64_t rows_per_block = int64_t(kWarpsPerBlock) * rpw * b.rows_per_warp / (halves ? 2 : 1);
    int blocks = 0;
    for (int m = 0; m < b.count; ++m) {
        b.w[m] = *w[i + m];
        b.y[m] = y[i + m];
        b.first_block[m] = blocks;
        blocks += int((w[i + m]->rows + rows_per_block - 1) / rows_per_block);
    }
    b.first_block[b.count] = blocks;
    launch(int8 ? "gemv_q8_kernel" : "gemv_batch_kernel", int8 ? int8_kernel(shape) : fp32_kernel(shape),
           unsigned(blocks), kWarpsPerBlock * 32, 0, stream, b, x);
    return j;
}

}  // namespace

void gemv_multi(const DMat* const* w, float* const* y, int count, const float* x, cudaStream_t stream) {
    // Consecutive matrices of one fast shape share a launch; the others run on their own.
    const bool int8 = cuda_int8_activations();
    int i = 0;
    while (i < count) {
        if (w[i]->rows == 0) {
            ++i;
        } else if (gemv_shape(*w[i]) == kGemvNone) {
            matmul_generic_one(*w[i], x, y[i], stream);
            ++i;
        } else {
            i = gemv_launch(w, y, i, count, x, int8, stream);
        }
    }
}

void moe_gate_up_one(const MoeBatch& b, const float* x, float* act, cudaStream_t stream) {
    launch("moe_gate_up_one_kernel", gate_up_one_kernel(), gate_up_one_grid(b.intermediate, b.njobs),
           kWarpsPerBlock * 32, 0, stream, b.jobs, nullptr, b.slots, b.k, x, b.hidden, act, b.intermediate);
}

void moe_down_one(const MoeBatch& b, const float* act, const float* weights, float* routed,
                  cudaStream_t stream) {
    launch("moe_down_one_kernel", down_one_kernel(), down_one_grid(b.hidden, b.njobs), kWarpsPerBlock * 32, 0,
           stream, b.jobs, nullptr, b.slots, act, b.intermediate, weights, routed, b.hidden);
}

void moe_gate_up_routed(const ExpertJob* table, const int32_t* ids, int64_t slots, int64_t k, int64_t hidden,
                        int64_t intermediate, const float* x, float* act, cudaStream_t stream) {
    if (slots <= 0) return;
    launch("moe_gate_up_one_kernel", gate_up_one_kernel(), gate_up_one_grid(intermediate, slots),
           kWarpsPerBlock * 32, 0, stream, table, ids, nullptr, k, x, hidden, act, intermediate);
}

void moe_down_routed(const ExpertJob* table, const int32_t* ids, int64_t slots, int64_t hidden,
                     int64_t intermediate, const float* act, const float* weights, float* routed,
                     cudaStream_t stream) {
    if (slots <= 0) return;
    launch("moe_down_one_kernel", down_one_kernel(), down_one_grid(hidden, slots), kWarpsPerBlock * 32, 0,
           stream, table, ids, nullptr, act, intermediate, weights, routed, hidden);
}

}  // namespace flashmoe::cuda
