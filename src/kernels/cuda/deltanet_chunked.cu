// The gated delta rule in chunks of kChunk tokens (prefill): the recurrence of deltanet_kernel (ops.cu)
// rewritten so that the work inside a chunk is dense products, parallel over chunks, and only one
// state update per chunk is sequential.
//
// Per value head, with S the [Dk, Dv] state, per token t: S_t = e^{g_t} S_{t-1} + k_t d_t^T with
// d_t = beta_t (v_t - e^{g_t} S_{t-1}^T k_t), o_t = S_t^T q_t. In a chunk starting from state S
// (rows t, s of the chunk; c_t = g_1 + ... + g_t, so the decay from s to t is e^{c_t - c_s} <= 1):
//   S_{t}      = e^{c_t} S + sum_{s<=t} e^{c_t - c_s} k_s d_s^T
//   d_t        = beta_t v_t - beta_t e^{c_t} S^T k_t - sum_{s<t} A_ts d_s,  A_ts = beta_t e^{c_t-c_s} k_t.k_s
// so (I + A) D = diag(beta) V - diag(beta e^c) K S, and with T = (I + A)^-1 (unit lower triangular,
// forward substitution):
//   D = U - W S,        U = T diag(beta) V,  W = T diag(beta e^c) K
//   O = PU + Q' S,      P_ts = e^{c_t-c_s} q_t.k_s (s <= t),  Q' = diag(e^c) Q - P W
//   S_next = e^{c_L} S + K'^T D,   K' = diag(e^{c_L - c_s}) K
// chunk_prepare_kernel computes W, Q', K', U, PU and e^{c_L} for every (value head, chunk) at once;
// chunk_state_kernel walks the chunks of one (value head, 32 value columns) with S in shared memory.
// Exponents are differences of the running sums (never e^{-c}), so nothing overflows; rows past the
// last token of a chunk are zero (beta = g = 0, k = q = v = 0) and drop out of every product.
#include "kernels/cuda/cuda_util.h"
#include "kernels/cuda/device_util.cuh"
#include "kernels/cuda/ops.h"

#include <algorithm>

namespace flashmoe::cuda {

namespace {

constexpr int kChunk = 64;
constexpr int kThreads = 256;
constexpr int kMaxKey = int(kDeltaChunkedMaxKey);
constexpr int kRowStride = kMaxKey + 1;  // odd: a walk down a column of [64][129] hits 16 banks
constexpr int kTriStride = kChunk + 1;   // [64][65] for the chunk x chunk matrices
constexpr int kValueTile = 32;           // value columns of the state a chunk_state_kernel block owns
// Tokens per prepare/state launch pair: bounds the scratch (about 80 KB a token for 32 heads of 128).
constexpr int64_t kSegmentTokens = 1024;

// Shared memory of chunk_prepare_kernel: two [64][129] tiles, two [64][65], five vectors of 64.
constexpr size_t kPrepareSmemBytes =
    size_t(2 * kChunk * kRowStride + 2 * kChunk * kTriStride + 5 * kChunk) * 4;


// Sizes shared by both kernels. Scratch rows are padded to multiples of 4 floats (16-byte copies),
// the padding written as zeros.
struct ChunkShape {
    int64_t n = 0;   // tokens of this launch
    int chunks = 0;  // ceil(n / kChunk)
    int Dk = 0, Dv = 0, Dkp = 0, Dvp = 0;
    int64_t record = 0;  // floats of scratch per (value head, chunk)
};

// One (value head, chunk) record of the scratch: W^T and Q'^T [Dkp][64], K' [64][Dkp], U and PU [64][Dvp].
struct ChunkRecord {
    float *wt, *qt, *kd, *u, *pu;
};
__device__ __forceinline__ ChunkRecord chunk_record(float* ws, const ChunkShape& cs, int64_t h, int64_t c) {
    float* r = ws + (h * cs.chunks + c) * cs.record;
    const int64_t kt = int64_t(cs.Dkp) * kChunk, vt = int64_t(cs.Dvp) * kChunk;
    return {r, r + kt, r + 2 * kt, r + 3 * kt, r + 3 * kt + vt};
}

// Block (value head, chunk), kThreads threads. Products are [64 x X] tiles: thread (ty, tx) holds
// rows 4ty..4ty+3 and columns tx + 16b, so a warp's rows are [8w, 8w + 8) and the lower-triangular
// factors (T, P) need only s < 8w + 8.
__global__ void __launch_bounds__(kThreads)
    chunk_prepare_kernel(DeltaNetArgs a, ChunkShape cs, float* ws, float* glast) {
    extern __shared__ float smem[];
    float* ks = smem;                      // normalised keys; then W; then value tiles / U
    float* qs = ks + kChunk * kRowStride;  // scaled normalised queries; then T [64][65]
    float* Ts = qs;
    float* As = qs + kChunk * kRowStride;  // A (strictly lower)
    float* Ps = As + kChunk * kTriStride;  // P (lower, diagonal included)
    float* beta = Ps + kChunk * kTriStride;
    float* cum = beta + kChunk;  // c_t, inclusive running sum of g
    float* ec = cum + kChunk;    // e^{c_t}
    float* bec = ec + kChunk;    // beta_t e^{c_t}
    float* qinv = bec + kChunk;  // 1 / |q_t|

    const int tid = threadIdx.x, lane = tid & 31, warp = tid >> 5;
    const int64_t h = blockIdx.x, c = blockIdx.y;
    const int64_t tok0 = c * kChunk;
    const int Lc = int(min(int64_t(kChunk), cs.n - tok0));
    const int Dk = cs.Dk, Dv = cs.Dv, Dkp = cs.Dkp, Dvp = cs.Dvp;
    const int64_t kh = h / (a.value_heads / a.key_heads);
    const int64_t kd = a.key_heads * Dk;
    const ChunkRecord rec = chunk_record(ws, cs, h, c);

    // Gates and their running sum (warps 0 and 1 hold the 64 rows).
    if (tid < kChunk) {
        float g = 0, b = 0;
        if (tid < Lc) {
            const int64_t idx = (tok0 + tid) * a.value_heads + h;
            b = sigmoid(a.b[idx]);
            g = -expf(a.A_log[h]) * softplus(a.a[idx] + a.dt_bias[h]);
        }
        beta[tid] = b;
#pragma unroll
        for (int o = 1; o < 32; o <<= 1) {
            const float y = __shfl_up_sync(0xffffffffu, g, o);
            if (lane >= o) g += y;
        }
        cum[tid] = g;
    }
    __syncthreads();
    if (tid >= 32 && tid < kChunk) cum[tid] += cum[31];
    __syncthreads();
    if (tid < kChunk) {
        ec[tid] = expf(cum[tid]);
        bec[tid] = beta[tid] * ec[tid];
    }
    const float clast = cum[kChunk - 1];  // padding rows have g = 0: the last token's sum
    if (tid == 0) glast[h * cs.chunks + c] = expf(clast);

    // Normalised q (times 1/sqrt(Dk)) and k, a warp per token; K' straight to the scratch.
    const float q_scale = 1.0f / sqrtf(float(Dk));
    for (int t = warp; t < kChunk; t += kThreads / 32) {
        const bool live = t < Lc;
        const float* row = a.qkv + (tok0 + t) * a.conv_dim;
        float qv[kMaxKey / 32], kv[kMaxKey / 32];
        float sq = 0, sk = 0;
#pragma unroll
        for (int m = 0; m < kMaxKey / 32; ++m) {
            const int i = lane + 32 * m;
            qv[m] = live && i < Dk ? row[kh * Dk + i] : 0.0f;
            kv[m] = live && i < Dk ? row[kd + kh * Dk + i] : 0.0f;
            sq += qv[m] * qv[m];
            sk += kv[m] * kv[m];
        }
        sq = warp_sum(sq);
        sk = warp_sum(sk);
        const float qi = 1.0f / sqrtf(sq + 1e-6f), ki = 1.0f / sqrtf(sk + 1e-6f);
        const float to_end = expf(clast - cum[t]);
#pragma unroll
        for (int m = 0; m < kMaxKey / 32; ++m) {
            const int i = lane + 32 * m;
            const float kn = kv[m] * ki;
            ks[t * kRowStride + i] = kn;
            qs[t * kRowStride + i] = (qv[m] * qi) * q_scale;
            if (i < Dkp) rec.kd[t * Dkp + i] = kn * to_end;
        }
        if (lane == 0) qinv[t] = qi;
    }
    __syncthreads();

    const int ty = tid >> 4, tx = tid & 15;
    const int s_end = 8 * warp + 8;  // the warp's rows are below s_end
    // A = strictly-lower(beta_t e^{c_t-c_s} K K^T), P = lower(e^{c_t-c_s} Q K^T); column blocks of 16
    // wholly above the warp's rows are zero.
    {
        float kk[4][4] = {}, qk[4][4] = {};
        for (int i = 0; i < Dkp; ++i) {
            float kr[4], qr[4], kc[4];
#pragma unroll
            for (int r = 0; r < 4; ++r) {
                kr[r] = ks[(4 * ty + r) * kRowStride + i];
                qr[r] = qs[(4 * ty + r) * kRowStride + i];
            }
#pragma unroll
            for (int b = 0; b < 4; ++b) kc[b] = 16 * b < s_end ? ks[(tx + 16 * b) * kRowStride + i] : 0.0f;
#pragma unroll
            for (int r = 0; r < 4; ++r)
#pragma unroll
                for (int b = 0; b < 4; ++b) {
                    kk[r][b] = fmaf(kr[r], kc[b], kk[r][b]);
                    qk[r][b] = fmaf(qr[r], kc[b], qk[r][b]);
                }
        }
#pragma unroll
        for (int r = 0; r < 4; ++r)
#pragma unroll
            for (int b = 0; b < 4; ++b) {
                const int t = 4 * ty + r, s = tx + 16 * b;
                float av = 0, pv = 0;
                if (s <= t) {
                    const float f = expf(cum[t] - cum[s]);
                    pv = f * qk[r][b];
                    if (s < t) av = beta[t] * f * kk[r][b];
                }
                As[t * kTriStride + s] = av;
                Ps[t * kTriStride + s] = pv;
            }
    }
    __syncthreads();  // queries read: their tile becomes T

    // T = (I + A)^-1 a column at a time (columns are independent): 4 lanes a column, warp w has
    // columns 8w..8w+7; x_t = -sum_{j<=s<t} A_ts x_s, x_j = 1.
    {
        const int j = 8 * warp + (lane >> 2), p = lane & 3;
        for (int t = p; t <= j; t += 4) Ts[t * kTriStride + j] = t == j ? 1.0f : 0.0f;
        __syncwarp();
        for (int t = 8 * warp + 1; t < kChunk; ++t) {
            float sum = 0;
            for (int s = j + p; s < t; s += 4)
                sum = fmaf(As[t * kTriStride + s], Ts[s * kTriStride + j], sum);
            sum += __shfl_xor_sync(0xffffffffu, sum, 1);
            sum += __shfl_xor_sync(0xffffffffu, sum, 2);
            if (p == 0 && t > j) Ts[t * kTriStride + j] = -sum;
            __syncwarp();
        }
    }
    __syncthreads();

    float acc[4][8];
    auto clear = [&] {
#pragma unroll
        for (int r = 0; r < 4; ++r)
#pragma unroll
            for (int b = 0; b < 8; ++b) acc[r][b] = 0.0f;
    };
    // acc = L x, L lower triangular ([64][65], times colscale[s] when given), x [64][129] in ks, nb column
    // blocks.
    auto lower_times_ks = [&](const float* L, const float* colscale, int nb) {
        clear();
        for (int s = 0; s < s_end; ++s) {
            float l[4];
#pragma unroll
            for (int r = 0; r < 4; ++r)
                l[r] = L[(4 * ty + r) * kTriStride + s] * (colscale ? colscale[s] : 1.0f);
#pragma unroll
            for (int b = 0; b < 8; ++b)
                if (b < nb) {
                    const float x = ks[s * kRowStride + tx + 16 * b];
#pragma unroll
                    for (int r = 0; r < 4; ++r) acc[r][b] = fmaf(l[r], x, acc[r][b]);
                }
        }
    };
    // acc into ks (all threads must be done reading ks).
    auto acc_to_ks = [&](int nb) {
        __syncthreads();
#pragma unroll
        for (int r = 0; r < 4; ++r)
#pragma unroll
            for (int b = 0; b < 8; ++b)
                if (b < nb) ks[(4 * ty + r) * kRowStride + tx + 16 * b] = acc[r][b];
        __syncthreads();
    };
    // acc (rows 4ty.., columns tx + 16b) stored transposed: dst[col][row], rows contiguous.
    auto store_transposed = [&](float* dst, int nb, int cols) {
#pragma unroll
        for (int b = 0; b < 8; ++b) {
            const int i = tx + 16 * b;
            if (b < nb && i < cols)
                *reinterpret_cast<float4*>(dst + i * kChunk + 4 * ty) =
                    make_float4(acc[0][b], acc[1][b], acc[2][b], acc[3][b]);
        }
    };

    // W = T diag(beta e^c) K
    const int nbk = (Dkp + 15) / 16;
    lower_times_ks(Ts, bec, nbk);
    store_transposed(rec.wt, nbk, Dkp);
    acc_to_ks(nbk);

    // Q' = diag(e^c) Q - P W (the queries re-read and normalised again: their tile holds T now)
    lower_times_ks(Ps, nullptr, nbk);
#pragma unroll
    for (int r = 0; r < 4; ++r) {
        const int t = 4 * ty + r;
        const float* qrow = a.qkv + (tok0 + t) * a.conv_dim + kh * Dk;
#pragma unroll
        for (int b = 0; b < 8; ++b) {
            const int i = tx + 16 * b;
            const float q = t < Lc && i < Dk ? (qrow[i] * qinv[t]) * q_scale : 0.0f;
            acc[r][b] = ec[t] * q - acc[r][b];
        }
    }
    store_transposed(rec.qt, nbk, Dkp);

    // U = T diag(beta) V and PU, 128 value columns at a time
    for (int v0 = 0; v0 < Dvp; v0 += 16 * 8) {
        const int nbv = min(8, (Dvp - v0 + 15) / 16);
        __syncthreads();  // ks (W, or the previous U) read
        for (int e = tid; e < kChunk * 128; e += kThreads) {
            const int s = e >> 7, j = e & 127, col = v0 + j;
            ks[s * kRowStride + j] =
                s < Lc && col < Dv ? a.qkv[(tok0 + s) * a.conv_dim + 2 * kd + h * Dv + col] : 0.0f;
        }
        __syncthreads();
        lower_times_ks(Ts, beta, nbv);
#pragma unroll
        for (int r = 0; r < 4; ++r)
#pragma unroll
            for (int b = 0; b < 8; ++b) {
                const int col = v0 + tx + 16 * b;
                if (b < nbv && col < Dvp) rec.u[(4 * ty + r) * Dvp + col] = acc[r][b];
            }
        acc_to_ks(nbv);
        lower_times_ks(Ps, nullptr, nbv);
#pragma unroll
        for (int r = 0; r < 4; ++r)
#pragma unroll
            for (int b = 0; b < 8; ++b) {
                const int col = v0 + tx + 16 * b;
                if (b < nbv && col < Dvp) rec.pu[(4 * ty + r) * Dvp + col] = acc[r][b];
            }
    }
}

// 16-byte asynchronous copies global -> shared of `floats` floats (a multiple of 4, both ends aligned).
__device__ __forceinline__ void copy_async(float* dst, const float* src, int floats) {
    for (int e = threadIdx.x * 4; e < floats; e += kThreads * 4) {
        const unsigned d = unsigned(__cvta_generic_to_shared(dst + e));
        asm volatile("cp.async.cg.shared.global [%0], [%1], 16;\n" ::"r"(d), "l"(src + e) : "memory");
    }
    asm volatile("cp.async.commit_group;\n" ::: "memory");
}
template <int Pending>
__device__ __forceinline__ void copy_async_wait() {
    asm volatile("cp.async.wait_group %0;\n" ::"n"(Pending) : "memory");
}

// Block (value head, 32 value columns), kThreads threads; walks the chunks in order with its slice of
// the state in shared memory. Per chunk: [D | O] from W S and Q' S (warps 0-3 and 4-7), then
// S = e^{c_L} S + K'^T D. Two [Dkp][64] buffers rotate: W and Q' of this chunk, then K' of this
// chunk and W of the next, then Q' of the next in the first.
__global__ void __launch_bounds__(kThreads)
    chunk_state_kernel(DeltaNetArgs a, ChunkShape cs, float* ws, const float* glast) {
    extern __shared__ float4 smem4[];
    const int Dk = cs.Dk, Dv = cs.Dv, Dkp = cs.Dkp, Dvp = cs.Dvp;
    float* buf_w = reinterpret_cast<float*>(smem4);
    float* buf_q = buf_w + Dkp * kChunk;
    float* Ss = buf_q + Dkp * kChunk;   // [Dkp][32] state slice, rows and columns past Dk, Dv zero
    float* Ds = Ss + Dkp * kValueTile;  // [64][32]
    const int tid = threadIdx.x;
    const int64_t h = blockIdx.x;
    const int j0 = int(blockIdx.y) * kValueTile;
    const int64_t vd = a.value_heads * Dv;
    float* Sg = a.state + h * Dk * Dv;

    for (int e = tid; e < Dkp * kValueTile; e += kThreads) {
        const int i = e / kValueTile, j = j0 + e % kValueTile;
        Ss[e] = i < Dk && j < Dv ? Sg[int64_t(i) * Dv + j] : 0.0f;
    }
    {
        const ChunkRecord r0 = chunk_record(ws, cs, h, 0);
        copy_async(buf_w, r0.wt, Dkp * kChunk);
        copy_async(buf_q, r0.qt, Dkp * kChunk);
    }
    for (int c = 0; c < cs.chunks; ++c) {
        const ChunkRecord rec = chunk_record(ws, cs, h, c);
        const int Lc = int(min(int64_t(kChunk), cs.n - int64_t(c) * kChunk));
        const bool more = c + 1 < cs.chunks;
        copy_async_wait<0>();
        __syncthreads();
        {
            // rows 4ty..4ty+3 of the chunk, columns 4tx..4tx+3 of the slice
            const int half = tid >> 7, ty = (tid & 127) >> 3, tx = tid & 7;
            const float* B = half ? buf_q : buf_w;
            float acc[4][4] = {};
            for (int k = 0; k < Dkp; ++k) {
                const float4 w = *reinterpret_cast<const float4*>(B + k * kChunk + 4 * ty);
                const float4 s = *reinterpret_cast<const float4*>(Ss + k * kValueTile + 4 * tx);
                const float wr[4] = {w.x, w.y, w.z, w.w}, sc[4] = {s.x, s.y, s.z, s.w};
#pragma unroll
                for (int r = 0; r < 4; ++r)
#pragma unroll
                    for (int e = 0; e < 4; ++e) acc[r][e] = fmaf(wr[r], sc[e], acc[r][e]);
            }
            const int col = j0 + 4 * tx;
            if (half == 0) {  // D = U - W S
#pragma unroll
                for (int r = 0; r < 4; ++r) {
                    const int t = 4 * ty + r;
                    const float4 u = col < Dvp ? *reinterpret_cast<const float4*>(rec.u + t * Dvp + col)
                                               : make_float4(0, 0, 0, 0);
                    *reinterpret_cast<float4*>(Ds + t * kValueTile + 4 * tx) =
                        make_float4(u.x - acc[r][0], u.y - acc[r][1], u.z - acc[r][2], u.w - acc[r][3]);
                }
            } else {  // O = PU + Q' S
#pragma unroll
                for (int r = 0; r < 4; ++r) {
                    const int t = 4 * ty + r;
                    if (t >= Lc || col >= Dvp) continue;
                    const float4 pu = *reinterpret_cast<const float4*>(rec.pu + t * Dvp + col);
                    const float o[4] = {pu.x + acc[r][0], pu.y + acc[r][1], pu.z + acc[r][2],
                                        pu.w + acc[r][3]};
                    float* orow = a.out + (int64_t(c) * kChunk + t) * vd + h * Dv;
#pragma unroll
                    for (int e = 0; e < 4; ++e)
                        if (col + e < Dv) orow[col + e] = o[e];
                }
            }
        }
        __syncthreads();  // both buffers and S read, D written
        copy_async(buf_w, rec.kd, Dkp * kChunk);
        if (more) {
            copy_async(buf_q, chunk_record(ws, cs, h, c + 1).wt, Dkp * kChunk);
            copy_async_wait<1>();
        } else {
            copy_async_wait<0>();
        }
        __syncthreads();
        {
            // state rows 4ti..4ti+3, columns 4tj..4tj+3
            const int ti = tid >> 3, tj = tid & 7;
            if (4 * ti < Dkp) {
                float acc[4][4] = {};
                for (int s = 0; s < Lc; ++s) {
                    const float4 k = *reinterpret_cast<const float4*>(buf_w + s * Dkp + 4 * ti);
                    const float4 d = *reinterpret_cast<const float4*>(Ds + s * kValueTile + 4 * tj);
                    const float kr[4] = {k.x, k.y, k.z, k.w}, dc[4] = {d.x, d.y, d.z, d.w};
#pragma unroll
                    for (int r = 0; r < 4; ++r)
#pragma unroll
                        for (int e = 0; e < 4; ++e) acc[r][e] = fmaf(kr[r], dc[e], acc[r][e]);
                }
                const float gl = glast[h * cs.chunks + c];
#pragma unroll
                for (int r = 0; r < 4; ++r) {
                    float4* sp = reinterpret_cast<float4*>(Ss + (4 * ti + r) * kValueTile + 4 * tj);
                    const float4 s = *sp;
                    *sp = make_float4(fmaf(gl, s.x, acc[r][0]), fmaf(gl, s.y, acc[r][1]),
                                      fmaf(gl, s.z, acc[r][2]), fmaf(gl, s.w, acc[r][3]));
                }
            }
        }
        __syncthreads();  // K' read, S written
        if (more) copy_async(buf_w, chunk_record(ws, cs, h, c + 1).qt, Dkp * kChunk);
        float* const next_q = buf_w;
        buf_w = buf_q;
        buf_q = next_q;
    }
    for (int e = tid; e < Dkp * kValueTile; e += kThreads) {
        const int i = e / kValueTile, j = j0 + e % kValueTile;
        if (i < Dk && j < Dv) Sg[int64_t(i) * Dv + j] = Ss[e];
    }
}

}  // namespace

void deltanet_chunked(const DeltaNetArgs& args, cudaStream_t stream) {
    if (args.n <= 0) return;
    if (args.key_dim > kDeltaChunkedMaxKey) CUDA_CHECK(cudaErrorInvalidValue);  // keys beyond 128 dims
    ChunkShape cs;
    cs.Dk = int(args.key_dim);
    cs.Dv = int(args.value_dim);
    cs.Dkp = (cs.Dk + 3) / 4 * 4;
    cs.Dvp = (cs.Dv + 3) / 4 * 4;
    cs.record = 3 * int64_t(cs.Dkp) * kChunk + 2 * int64_t(cs.Dvp) * kChunk;
    const int64_t max_chunks = (std::min(args.n, kSegmentTokens) + kChunk - 1) / kChunk;
    const int64_t records = args.value_heads * max_chunks;
    float* ws = static_cast<float*>(stream_scratch(stream, Scratch::DeltaChunks, size_t(records * cs.record + records) * 4));
    float* glast = ws + records * cs.record;

    const size_t state_smem = size_t(2 * cs.Dkp * kChunk + cs.Dkp * kValueTile + kChunk * kValueTile) * 4;
    CUDA_CHECK(cudaFuncSetAttribute(chunk_prepare_kernel, cudaFuncAttributeMaxDynamicSharedMemorySize,
                                    int(kPrepareSmemBytes)));
    CUDA_CHECK(cudaFuncSetAttribute(chunk_state_kernel, cudaFuncAttributeMaxDynamicSharedMemorySize,
                                    int(state_smem)));
    const int64_t vd = args.value_heads * args.value_dim;
    for (int64_t t0 = 0; t0 < args.n; t0 += kSegmentTokens) {
        DeltaNetArgs seg = args;
        seg.qkv += t0 * args.conv_dim;
        seg.b += t0 * args.value_heads;
        seg.a += t0 * args.value_heads;
        seg.out += t0 * vd;
        seg.n = std::min(kSegmentTokens, args.n - t0);
        cs.n = seg.n;
        cs.chunks = int((seg.n + kChunk - 1) / kChunk);
        chunk_prepare_kernel<<<dim3(unsigned(args.value_heads), unsigned(cs.chunks)), kThreads,
                               kPrepareSmemBytes, stream>>>(seg, cs, ws, glast);
        CUDA_CHECK_LAUNCH("chunk_prepare_kernel");
        chunk_state_kernel<<<dim3(unsigned(args.value_heads),
                                  unsigned((cs.Dv + kValueTile - 1) / kValueTile)),
                             kThreads, state_smem, stream>>>(seg, cs, ws, glast);
        CUDA_CHECK_LAUNCH("chunk_state_kernel");
    }
}

}  // namespace flashmoe::cuda
