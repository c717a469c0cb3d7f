// Multi-token products on the tensor cores (prefill): affine 4-bit weights (dense matrices and routed
// experts) and, with int8 activations, 8-bit ones (dense) times activations, in the process's
// activation semantics (kernels/cpu/matmul.h):
//
// F32 (bf16 split). mma.sync m16n8k16, bf16 in, fp32 accumulate. The codes (0..15) are exact in
// bf16, and each activation is split as hi + lo (two bf16, about 16 significant bits together), so
// one product is two MMAs and the result is close to an fp32 dot product. Scales stay out of the
// MMA: the codes of one group are multiplied into a fresh accumulator P, then
// acc += s * P + b * sum(x over the group), as the fp32 path does.
//
// Int8 (Q8). The CPU's MatmulActivations::Int8: each token's activations quantised per weight group
// (d = max|x| / 127, xq = round-half-even(x / d)), the codes times xq exact in mma.sync m16n8k32
// (u8 x s8 -> s32), then acc += s * (d * P) + b * (d * sum(xq)). One MMA per 32 columns instead of
// four, a quarter of the activation bytes. prep_q8_kernel quantises for every group size of 32, 64
// and 128 that divides K (a routed batch's experts are not known to the host).
//
// k order. The order of k inside an MMA is free as long as A and B agree. 4-bit: 32 columns are two
// k16 steps; lane (g, t4) holds the 32-bit word t4 (columns 8 t4 .. 8 t4 + 7) of rows g and g + 8, the
// code pairs (e, e + 4) of a word become one bf16x2 by a mask, and step s uses pairs 2s and 2s + 1.
// prep_kernel writes the activations once per product in that order: per 8 columns, 16 bytes per
// step {hi pair 2s, hi pair 2s + 1, lo pair 2s, lo pair 2s + 1} (one lane's B fragments of a step,
// hi and lo), plus the sum of every 32 columns. Int8: a word's low nibbles (columns 0, 2, 4, 6 of
// its 8) are k 4 t4 .. 4 t4 + 3 and its high nibbles k 16 + 4 t4 ..; prep_q8_kernel stores each 8
// columns' codes as {0, 2, 4, 6, 1, 3, 5, 7} (B fragments b0, b1 of token g: one 8-byte load).
// 8-bit weights keep the natural k order of the fragments; their activations are permuted instead.
//
// Tiles. A block of W warps computes W x 32 output rows (or W x 16 rows of gate and the same rows
// of up) for 32 tokens: each warp two m16 tiles times four n8 tiles (only the n8 tiles holding
// tokens are computed). The weight codes and the activations of 64 columns are staged in shared
// memory by cp.async, kStages tiles in flight; every warp reads the whole activation tile, so each
// B fragment feeds two MMAs (one per m16 tile) and each A fragment (per m16 tile and 32 columns one
// ldmatrix: .x2 for 4-bit codes, .x4 for 8-bit) one MMA per n8 tile.
// A token's result depends only on its rows and its activations, never on which block, pass or
// launch computed it (routed experts give the same bits whichever wave they came in).
#include "kernels/cuda/cuda_util.h"
#include "kernels/cuda/device_util.cuh"
#include "kernels/cuda/launch.cuh"
#include "kernels/cuda/mma.cuh"

#include <cuda_bf16.h>

#include <algorithm>
#include <type_traits>

namespace flashmoe::cuda {

namespace {

constexpr int kChunkCols = 32;   // one ldmatrix row segment (16 bytes of codes), two k16 steps, one sum
constexpr int kTileCols = 64;    // columns per pipeline stage: two chunks
constexpr int kTileTokens = 32;  // tokens per block pass: four n8 tiles
constexpr int kNTiles = kTileTokens / 8;
constexpr int kStages = 4;

// One pipeline stage in shared memory (W warps).
template <int W, bool Q8, int BITS = 4>
struct Stage {
    // codes: per warp two m16 tiles of 16 rows x 64 columns (CodeTile)
    static constexpr int kA = W * 2 * 16 * 64 * BITS / 8;
    // activations. bf16: [chunk][step][n8 tile][lane] 16 bytes (a lane's hi and lo fragments of a
    // step). Q8: [chunk][token] 32 bytes (a token's 32 codes, lane t4's 8 at 8 t4).
    static constexpr int kB = Q8 ? 2 * kTileTokens * 32 : 2 * 2 * kNTiles * 32 * 16;
    // bf16: 32-column sums [chunk][token]; Q8: the chunk's group's {d, d * sum(xq)} [chunk][token]
    static constexpr int kS = 2 * kTileTokens * (Q8 ? 8 : 4);
    static constexpr int kBytes = kA + kB + kS;
    static constexpr int kSmem = kStages * kBytes;
};

// x [n, K] fp32 -> xp [n, K] words (see the top) and gsum [n, K / 32].
__global__ void prep_kernel(const float* x, int64_t n, int64_t K, uint32_t* xp, float* gsum) {
    const int64_t oct = int64_t(blockIdx.x) * blockDim.x + threadIdx.x;  // one 8-column run
    const int64_t t = blockIdx.y;
    if (oct * 8 >= K) return;
    const float4* src = reinterpret_cast<const float4*>(x + t * K + oct * 8);
    const float4 a = src[0], b = src[1];
    const float v[8] = {a.x, a.y, a.z, a.w, b.x, b.y, b.z, b.w};
    uint32_t hi[4], lo[4];  // pair e: columns e and e + 4
#pragma unroll
    for (int e = 0; e < 4; ++e) {
        const __nv_bfloat16 h0 = __float2bfloat16_rn(v[e]), h1 = __float2bfloat16_rn(v[e + 4]);
        const __nv_bfloat16 l0 = __float2bfloat16_rn(v[e] - __bfloat162float(h0));
        const __nv_bfloat16 l1 = __float2bfloat16_rn(v[e + 4] - __bfloat162float(h1));
        hi[e] = uint32_t(__bfloat16_as_ushort(h0)) | (uint32_t(__bfloat16_as_ushort(h1)) << 16);
        lo[e] = uint32_t(__bfloat16_as_ushort(l0)) | (uint32_t(__bfloat16_as_ushort(l1)) << 16);
    }
    uint4* dst = reinterpret_cast<uint4*>(xp + t * K + oct * 8);
    dst[0] = make_uint4(hi[0], hi[1], lo[0], lo[1]);
    dst[1] = make_uint4(hi[2], hi[3], lo[2], lo[3]);
    // 32-column sums: one thread per chunk adds its runs in order
    constexpr int64_t per = kChunkCols / 8;
    if (oct % per == 0) {
        float sum = 0;
        for (int64_t o = oct; o < oct + per; ++o) {
            const float4* q = reinterpret_cast<const float4*>(x + t * K + o * 8);
            const float4 c = q[0], d = q[1];
            sum += ((c.x + c.y) + (c.z + c.w)) + ((d.x + d.y) + (d.z + d.w));
        }
        gsum[t * (K / kChunkCols) + oct / per] = sum;
    }
}

// Int8 activations for groups of 32, 64 and 128 columns: variant v = log2(group) - 5.
constexpr int kQ8Variants = 3;

// x [n, K] fp32 -> for each variant v in `variants` (a bit mask) codes xq[v] [n, K] in the B
// fragments' order (4-bit weights: 8 columns as {0, 2, 4, 6, 1, 3, 5, 7}; 8-bit: per 32 columns,
// lane t4's {4 t4 .. 4 t4 + 3, 16 + 4 t4 .. 16 + 4 t4 + 3}) and dq[v] [n, K / group] {d, d * sum(xq)}:
// the CPU's quantisation (kernels/cpu/matmul.h), bit for bit. One thread per 8 columns; a group's
// threads are adjacent lanes (K is a multiple of the group, the group of 32 to 128 columns).
struct Q8Prep {
    uint8_t* xq[kQ8Variants];
    float2* dq[kQ8Variants];
};
__global__ void prep_q8_kernel(const float* x, int64_t K, unsigned variants, bool eight_bit, Q8Prep out) {
    const int64_t c8 = int64_t(blockIdx.x) * blockDim.x + threadIdx.x;
    const int64_t t = blockIdx.y;
    const bool in = c8 * 8 < K;  // (threads past K still take part in the shuffles)
    float v[8] = {};
    if (in) {
        const float4* src = reinterpret_cast<const float4*>(x + t * K + c8 * 8);
        const float4 a = src[0], b = src[1];
        v[0] = a.x, v[1] = a.y, v[2] = a.z, v[3] = a.w, v[4] = b.x, v[5] = b.y, v[6] = b.z, v[7] = b.w;
    }
    float amax = 0.0f;
#pragma unroll
    for (int e = 0; e < 8; ++e) amax = fmaxf(amax, fabsf(v[e]));
#pragma unroll
    for (int vi = 0; vi < kQ8Variants; ++vi) {
        const int tpg = 4 << vi;  // threads per group
        float m = amax;
        for (int o = 1; o < tpg; o <<= 1) m = fmaxf(m, __shfl_xor_sync(0xffffffffu, m, o));
        if (!(variants >> vi & 1u)) continue;
        int q[8];
        int sum = quantize8(v, m, q);
        for (int o = 1; o < tpg; o <<= 1) sum += __shfl_xor_sync(0xffffffffu, sum, o);
        if (!in) continue;
        if (eight_bit) {
            // 4-column word u of a chunk goes to word 2 u (u < 4) or 2 (u - 4) + 1
            uint32_t* chunk = reinterpret_cast<uint32_t*>(out.xq[vi] + t * K) + (c8 >> 2) * 8;
            const int u = int(c8 & 3) * 2;
            chunk[u < 4 ? 2 * u : 2 * u - 7] = pack_s8(q[0], q[1], q[2], q[3]);
            chunk[u + 1 < 4 ? 2 * u + 2 : 2 * u - 5] = pack_s8(q[4], q[5], q[6], q[7]);
        } else {
            reinterpret_cast<uint2*>(out.xq[vi] + t * K)[c8] =
                make_uint2(pack_s8(q[0], q[2], q[4], q[6]), pack_s8(q[1], q[3], q[5], q[7]));
        }
        if (c8 % tpg == 0) {
            const float d = m / 127.0f;
            out.dq[vi][t * (K >> (vi + 5)) + c8 / tpg] = make_float2(d, d * float(sum));
        }
    }
}

// Where a product's activations are: prepared rows (bf16 split: xp and the 32-column sums; Q8: per
// variant the codes and {d, d * sum}).
struct MmaIo {
    const uint32_t* xp = nullptr;
    const float* gsum = nullptr;
    const uint8_t* xq[kQ8Variants] = {};
    const float2* dq[kQ8Variants] = {};
    int64_t K = 0;
    int64_t div = 1;  // routed experts: token -> prepared row is slot / div (gate/up) or the slot (down)
};

// ---- PTX wrappers ----

__device__ __forceinline__ uint32_t smem_addr(const void* p) {
    return static_cast<uint32_t>(__cvta_generic_to_shared(p));
}

__device__ __forceinline__ void cp_async16(uint32_t dst, const void* src) {
    asm volatile("cp.async.cg.shared.global [%0], [%1], 16;\n" ::"r"(dst), "l"(src));
}

__device__ __forceinline__ void cp_async4(uint32_t dst, const void* src) {
    asm volatile("cp.async.ca.shared.global [%0], [%1], 4;\n" ::"r"(dst), "l"(src));
}

__device__ __forceinline__ void cp_async8(uint32_t dst, const void* src) {
    asm volatile("cp.async.ca.shared.global [%0], [%1], 8;\n" ::"r"(dst), "l"(src));
}

__device__ __forceinline__ void cp_async_commit() { asm volatile("cp.async.commit_group;\n" ::); }

template <int N>
__device__ __forceinline__ void cp_async_wait() {
    asm volatile("cp.async.wait_group %0;\n" ::"n"(N));
}

__device__ __forceinline__ void ldmatrix_x2(uint32_t (&r)[2], uint32_t addr) {
    asm volatile("ldmatrix.sync.aligned.m8n8.x2.shared.b16 {%0,%1}, [%2];\n" : "=r"(r[0]), "=r"(r[1]) : "r"(addr));
}

__device__ __forceinline__ void mma_bf16(float (&c)[4], const uint32_t (&a)[4], uint32_t b0, uint32_t b1) {
    asm("mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32 {%0,%1,%2,%3}, {%4,%5,%6,%7}, {%8,%9}, {%0,%1,%2,%3};\n"
        : "+f"(c[0]), "+f"(c[1]), "+f"(c[2]), "+f"(c[3])
        : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b0), "r"(b1));
}

// c = a b (a fresh accumulator: the first product of a group)
__device__ __forceinline__ void mma_bf16_zero(float (&c)[4], const uint32_t (&a)[4], uint32_t b0, uint32_t b1) {
    asm("mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32 {%0,%1,%2,%3}, {%4,%5,%6,%7}, {%8,%9}, {%10,%10,%10,%10};\n"
        : "=f"(c[0]), "=f"(c[1]), "=f"(c[2]), "=f"(c[3])
        : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b0), "r"(b1), "f"(0.0f));
}

// c (+)= a b with u8 codes (A) and s8 activations (B), exact in s32; c = a b when ZERO
template <bool ZERO>
__device__ __forceinline__ void mma_q8(int32_t (&c)[4], const uint32_t (&a)[4], uint32_t b0, uint32_t b1) {
    if constexpr (ZERO) {
        asm("mma.sync.aligned.m16n8k32.row.col.s32.u8.s8.s32 {%0,%1,%2,%3}, {%4,%5,%6,%7}, {%8,%9}, {%10,%10,%10,%10};\n"
            : "=r"(c[0]), "=r"(c[1]), "=r"(c[2]), "=r"(c[3])
            : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b0), "r"(b1), "r"(0));
    } else {
        asm("mma.sync.aligned.m16n8k32.row.col.s32.u8.s8.s32 {%0,%1,%2,%3}, {%4,%5,%6,%7}, {%8,%9}, {%0,%1,%2,%3};\n"
            : "+r"(c[0]), "+r"(c[1]), "+r"(c[2]), "+r"(c[3])
            : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b0), "r"(b1));
    }
}

__device__ __forceinline__ uint32_t code_pair(uint32_t word, int e) {
    // codes e and e + 4 as bf16 (128 + c) pair, minus 128: exact
    const uint32_t biased = ((word >> (4 * e)) & 0x000F000Fu) | 0x43004300u;
    const __nv_bfloat162 v = __hsub2(*reinterpret_cast<const __nv_bfloat162*>(&biased),
                                     __floats2bfloat162_rn(128.0f, 128.0f));
    return *reinterpret_cast<const uint32_t*>(&v);
}

// ---- one block pass: W warps x (two m16 tiles) x 32 tokens over all K ----

// The rows of the block: m16 tile m of warp wi starts at row_of(wi, m) of *w[m]. Dense and down:
// 32 consecutive rows a warp; gate/up (pair): the same 16 rows of two matrices. The matrices are
// copied to shared memory first (block_mats): their fields are then read where needed instead of
// occupying registers through the whole product.
struct BlockRows {
    const DMat* w[2];  // m16 tile 0 and 1 (the same matrix unless pair)
    int64_t r0 = 0;
    bool pair = false;
    __device__ __forceinline__ int64_t row_of(int wi, int m) const {
        return pair ? r0 + wi * 16 : r0 + wi * 32 + m * 16;
    }
};

// The block's matrices (and, routed experts, its run of slots) in shared memory: thread 0 copies
// them, everyone waits.
struct BlockInfo {
    DMat w[2];
    int32_t slot_begin, count;
};
__device__ __forceinline__ const BlockInfo* block_info(const DMat& a, const DMat& b, int32_t slot_begin = 0,
                                                       int32_t count = 0) {
    __shared__ BlockInfo info;
    if (threadIdx.x == 0) {
        info.w[0] = a;
        info.w[1] = b;
        info.slot_begin = slot_begin;
        info.count = count;
    }
    __syncthreads();
    return &info;
}

// The weight codes of one stage in shared memory, one warp's two m16 tiles after the other's, and
// the rows' 16-byte pieces swapped every 4 rows so that the 8 rows an ldmatrix phase reads fall on
// distinct banks. 4-bit: per m16 tile 16 rows x 32 bytes (two chunks), read per chunk by ldmatrix.x2
// (lane (g, t4): word t4 of rows g and g + 8). 8-bit: per m16 tile and chunk 16 rows x 32 bytes,
// read by ldmatrix.x4 (the m16n8k32 A fragment itself: columns 4 t4 .. and 16 + 4 t4 .. of rows g
// and g + 8).
template <int BITS>
struct CodeTile {
    static constexpr int kChunkBytes = kChunkCols * BITS / 8;  // a row's bytes per chunk
    static constexpr int kCopiesPerWarp = 2 * 16 * 2 * kChunkBytes / 16;

    // Copy i of a stage (16 bytes): the warp (aw) and m16 tile (m) whose rows it holds, the row, its
    // chunk (c), its byte offset in the row at tile 0 and in the stage.
    struct Copy {
        int aw, m, row, c;
        uint32_t src, dst;
    };
    __device__ __forceinline__ static Copy copy(int i) {
        Copy k;
        if constexpr (BITS == 4) {
            k.aw = i >> 6, k.m = (i >> 5) & 1, k.row = (i >> 1) & 15, k.c = i & 1;
            k.src = uint32_t(k.c * 16);
            k.dst = uint32_t(((k.aw * 2 + k.m) * 16 + k.row) * 32 + ((k.c ^ ((k.row >> 2) & 1)) * 16));
        } else {
            const int h = i & 1;
            k.aw = i >> 7, k.m = (i >> 6) & 1, k.c = (i >> 5) & 1, k.row = (i >> 1) & 15;
            k.src = uint32_t(k.c * 32 + h * 16);
            k.dst = uint32_t(((k.aw * 2 + k.m) * 2 + k.c) * 512 + k.row * 32 + ((h ^ ((k.row >> 2) & 1)) * 16));
        }
        return k;
    }
    // This lane's ldmatrix address for m16 tile m, chunk c, relative to the stage.
    __device__ __forceinline__ static uint32_t frag_addr(int wi, int m, int c) {
        const int lane = threadIdx.x & 31;
        const int lrow = lane & 15;  // (x2: lanes 16-31 repeat 0-15, ignored)
        if constexpr (BITS == 4) {
            return uint32_t((wi * 2 + m) * 512 + lrow * 32 + ((((lrow >> 2) & 1) ^ c) * 16));
        } else {
            const int h = lane >> 4;
            return uint32_t(((wi * 2 + m) * 2 + c) * 512 + lrow * 32 + ((h ^ ((lrow >> 2) & 1)) * 16));
        }
    }
};

__device__ __forceinline__ void ldmatrix_x4(uint32_t (&r)[4], uint32_t addr) {
    asm volatile("ldmatrix.sync.aligned.m8n8.x4.shared.b16 {%0,%1,%2,%3}, [%4];\n"
                 : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3])
                 : "r"(addr));
}

// One warp's products of the current weight group with the pass's tokens (P: a fresh accumulator
// per group), chunk by chunk, and how a finished group enters the result. q[m] = {row g, row g + 8}
// words of m16 tile m's 32 columns; b = the chunk's activation tile, s = its per-token values;
// sc[m] = {scale of row g, bias of row g, scale of row g + 8, bias of row g + 8}. acc, P: the m16n8
// accumulator layout (rows g and g + 8, tokens 2 t4 and 2 t4 + 1 of n8 tile n).
template <bool Q8, int NT, int BITS>
struct GroupProducts;

// bf16 split: two k16 steps of hi and lo MMAs per chunk; S = the group's activation sums.
template <int NT>
struct GroupProducts<false, NT, 4> {
    float P[2][NT][4], S[NT][2];

    template <bool FIRST>
    __device__ __forceinline__ void chunk(const uint32_t (&q)[2][4], const char* b, const char* s) {
        const int lane = threadIdx.x & 31, t4 = lane & 3;
#pragma unroll
        for (int st = 0; st < 2; ++st) {
            uint32_t a[2][4];
#pragma unroll
            for (int m = 0; m < 2; ++m) {
                a[m][0] = code_pair(q[m][0], 2 * st);
                a[m][1] = code_pair(q[m][1], 2 * st);
                a[m][2] = code_pair(q[m][0], 2 * st + 1);
                a[m][3] = code_pair(q[m][1], 2 * st + 1);
            }
#pragma unroll
            for (int n = 0; n < NT; ++n) {
                // {hi pair 2st, hi pair 2st + 1, lo pair 2st, lo pair 2st + 1} of token g
                const uint4 x = *reinterpret_cast<const uint4*>(b + ((st * kNTiles + n) * 32 + lane) * 16);
#pragma unroll
                for (int m = 0; m < 2; ++m) {
                    if (FIRST && st == 0) mma_bf16_zero(P[m][n], a[m], x.x, x.y);
                    else mma_bf16(P[m][n], a[m], x.x, x.y);
                }
#pragma unroll
                for (int m = 0; m < 2; ++m) mma_bf16(P[m][n], a[m], x.z, x.w);
            }
        }
#pragma unroll
        for (int n = 0; n < NT; ++n) {
            const float2 v = *reinterpret_cast<const float2*>(s + (n * 8 + 2 * t4) * 4);
            S[n][0] = FIRST ? v.x : S[n][0] + v.x;
            S[n][1] = FIRST ? v.y : S[n][1] + v.y;
        }
    }

    __device__ __forceinline__ void finish(const float (&sc)[2][4], const char*, float (&acc)[2][NT][4]) const {
#pragma unroll
        for (int m = 0; m < 2; ++m)
#pragma unroll
            for (int n = 0; n < NT; ++n) {
                acc[m][n][0] = fmaf(sc[m][0], P[m][n][0], fmaf(sc[m][1], S[n][0], acc[m][n][0]));
                acc[m][n][1] = fmaf(sc[m][0], P[m][n][1], fmaf(sc[m][1], S[n][1], acc[m][n][1]));
                acc[m][n][2] = fmaf(sc[m][2], P[m][n][2], fmaf(sc[m][3], S[n][0], acc[m][n][2]));
                acc[m][n][3] = fmaf(sc[m][2], P[m][n][3], fmaf(sc[m][3], S[n][1], acc[m][n][3]));
            }
    }
};

// Q8: one u8 x s8 MMA per chunk; s holds each token's {d, d * sum(xq)} of the group. 4-bit: a
// word's low nibbles are k 4 t4 .., its high nibbles k 16 + 4 t4 ..; 8-bit: the fragment as read.
template <int NT, int BITS>
struct GroupProducts<true, NT, BITS> {
    int32_t P[2][NT][4];

    template <bool FIRST>
    __device__ __forceinline__ void chunk(const uint32_t (&q)[2][4], const char* b, const char*) {
        const int lane = threadIdx.x & 31, g = lane >> 2, t4 = lane & 3;
        constexpr uint32_t kLow = 0x0F0F0F0Fu;
        uint32_t a[2][4];
#pragma unroll
        for (int m = 0; m < 2; ++m) {
            if constexpr (BITS == 8) {
                a[m][0] = q[m][0], a[m][1] = q[m][1], a[m][2] = q[m][2], a[m][3] = q[m][3];
            } else {
                a[m][0] = q[m][0] & kLow;
                a[m][1] = q[m][1] & kLow;
                a[m][2] = (q[m][0] >> 4) & kLow;
                a[m][3] = (q[m][1] >> 4) & kLow;
            }
        }
#pragma unroll
        for (int n = 0; n < NT; ++n) {
            const uint2 x = *reinterpret_cast<const uint2*>(b + (n * 8 + g) * 32 + t4 * 8);
#pragma unroll
            for (int m = 0; m < 2; ++m) mma_q8<FIRST>(P[m][n], a[m], x.x, x.y);
        }
    }

    __device__ __forceinline__ void finish(const float (&sc)[2][4], const char* s, float (&acc)[2][NT][4]) const {
        const int t4 = threadIdx.x & 3;
#pragma unroll
        for (int n = 0; n < NT; ++n) {
            const float4 dq = *reinterpret_cast<const float4*>(s + (n * 8 + 2 * t4) * 8);  // two tokens' {d, d sum}
#pragma unroll
            for (int m = 0; m < 2; ++m) {
                acc[m][n][0] = fmaf(sc[m][0], dq.x * float(P[m][n][0]), fmaf(sc[m][1], dq.y, acc[m][n][0]));
                acc[m][n][1] = fmaf(sc[m][0], dq.z * float(P[m][n][1]), fmaf(sc[m][1], dq.w, acc[m][n][1]));
                acc[m][n][2] = fmaf(sc[m][2], dq.x * float(P[m][n][2]), fmaf(sc[m][3], dq.y, acc[m][n][2]));
                acc[m][n][3] = fmaf(sc[m][2], dq.z * float(P[m][n][3]), fmaf(sc[m][3], dq.w, acc[m][n][3]));
            }
        }
    }
};

// acc[m][n][.] = the dot products of this warp's rows with the pass's tokens 0 .. 8 NT - 1, whose
// prepared rows are token_row(j). Every thread of the block must call it (barriers inside).
template <int W, int NT, bool Q8, int BITS, class TokenRow>
__device__ __forceinline__ void mma_pass(const BlockRows& br, const MmaIo& io, TokenRow token_row, char* smem,
                                         float (&acc)[2][NT][4]) {
    using St = Stage<W, Q8, BITS>;
    using Codes = CodeTile<BITS>;
    const int tid = threadIdx.x, lane = tid & 31, wi = tid >> 5, g = lane >> 2;
    const int64_t K = io.K;
    const int nch = int(K / kChunkCols), nkt = (nch + 1) / 2;
    const uint32_t sbase = smem_addr(smem);
    // chunks per group: a power of two (mma_ok), the same for w[1] (mma_gate_up_ok); no divisions
    const int gs = __ffs(br.w[0]->group) - 1, cs = gs - 5, cmask = (1 << cs) - 1;
    const uint8_t* xq = Q8 ? (cs == 0 ? io.xq[0] : cs == 1 ? io.xq[1] : io.xq[2]) : nullptr;
    const float2* dq = Q8 ? (cs == 0 ? io.dq[0] : cs == 1 ? io.dq[1] : io.dq[2]) : nullptr;

    // This thread's copies of every stage: its 16-byte code pieces, its activation chunks, and (64
    // threads) one per-token value; sources at tile 0.
    // (32-bit byte and word offsets from the matrices' and the activations' bases: fewer registers)
    constexpr int kAPer = Codes::kCopiesPerWarp / 32;
    uint32_t a_src[kAPer];
#pragma unroll
    for (int u = 0; u < kAPer; ++u) {
        const auto k = Codes::copy(tid + u * 32 * W);
        const DMat* w = k.m ? br.w[1] : br.w[0];  // (a run-time index would put br in local memory)
        a_src[u] = uint32_t(min(br.row_of(k.aw, k.m) + k.row, w->rows - 1) * w->row_bytes) + k.src;
    }
    // bf16: [chunk][step][n8 tile][lane] words; Q8: [chunk][token][half] bytes
    constexpr int kBCopies = St::kB / 16;
    constexpr int kBPer = (kBCopies + 32 * W - 1) / (32 * W);
    uint32_t b_src[kBPer];
#pragma unroll
    for (int u = 0; u < kBPer; ++u) {
        const int i = tid + u * 32 * W;
        if constexpr (Q8) {
            const int c = (i >> 6) & 1, tok = (i >> 1) & 31, half = i & 1;
            b_src[u] = uint32_t(token_row(tok < NT * 8 ? tok : 0) * K + c * kChunkCols + half * 16);
        } else {
            const int c = i >> 8, st = (i >> 7) & 1, n = (i >> 5) & 3, l = i & 31;
            b_src[u] = uint32_t(token_row(n < NT ? n * 8 + (l >> 2) : 0) * K + c * kChunkCols + (l & 3) * 8 + st * 4);
        }
    }
    // per-token values: bf16 the 32-column sums [token][K / 32]; Q8 {d, d sum} [token][K / group]
    const int s_tok = tid & 31;
    const uint32_t s_src = uint32_t(tid < 64 ? token_row(min(s_tok, NT * 8 - 1)) * (Q8 ? K >> gs : nch) : 0);

    auto load = [&](int kt, int stage) {
        const uint32_t base = sbase + uint32_t(stage * St::kBytes);
        const bool second = 2 * kt + 1 < nch;  // the tile's second chunk exists
#pragma unroll
        for (int u = 0; u < kAPer; ++u) {
            const auto k = Codes::copy(tid + u * 32 * W);
            const uint8_t* data = static_cast<const uint8_t*>((k.m ? br.w[1] : br.w[0])->data);
            if (k.c == 0 || second) cp_async16(base + k.dst, data + a_src[u] + kt * (2 * Codes::kChunkBytes));
        }
#pragma unroll
        for (int u = 0; u < kBPer; ++u) {
            const int i = tid + u * 32 * W;
            if constexpr (Q8) {
                if (i < kBCopies && ((i >> 1) & 31) < NT * 8 && ((i >> 6) == 0 || second))
                    cp_async16(base + St::kA + i * 16, xq + b_src[u] + kt * kTileCols);
            } else {
                if (((i >> 5) & 3) < NT && ((i >> 8) == 0 || second))
                    cp_async16(base + St::kA + i * 16, io.xp + b_src[u] + kt * kTileCols);
            }
        }
        if (tid < 64 && s_tok < NT * 8 && ((tid >> 5) == 0 || second)) {
            if constexpr (Q8) cp_async8(base + St::kA + St::kB + tid * 8, dq + s_src + ((2 * kt + (tid >> 5)) >> cs));
            else cp_async4(base + St::kA + St::kB + tid * 4, io.gsum + s_src + 2 * kt + (tid >> 5));
        }
    };

    // This warp's rows: skip the arithmetic when all of them are past the matrix (loads still shared).
    const bool active = br.row_of(wi, 0) < br.w[0]->rows;

#pragma unroll
    for (int m = 0; m < 2; ++m)
#pragma unroll
        for (int n = 0; n < NT; ++n)
#pragma unroll
            for (int j = 0; j < 4; ++j) acc[m][n][j] = 0;
    GroupProducts<Q8, NT, BITS> gp;

#pragma unroll
    for (int s = 0; s < kStages - 1; ++s) {
        if (s < nkt) load(s, s);
        cp_async_commit();
    }
    for (int kt = 0; kt < nkt; ++kt) {
        cp_async_wait<kStages - 2>();
        __syncthreads();  // tile kt is in; every warp is done with tile kt - 1, whose buffer is refilled now
        if (kt + kStages - 1 < nkt) load(kt + kStages - 1, (kt + kStages - 1) % kStages);
        cp_async_commit();
        if (!active) continue;
        const int stage = kt % kStages;
        const char* sp = smem + stage * St::kBytes;
#pragma unroll
        for (int c = 0; c < 2; ++c) {
            const int ch = 2 * kt + c;
            if (ch >= nch) break;
            const bool first = (ch & cmask) == 0, last = ((ch + 1) & cmask) == 0;
            uint32_t q[2][4];
#pragma unroll
            for (int m = 0; m < 2; ++m) {
                const uint32_t at = sbase + uint32_t(stage * St::kBytes) + Codes::frag_addr(wi, m, c);
                if constexpr (BITS == 4) ldmatrix_x2(reinterpret_cast<uint32_t(&)[2]>(q[m]), at);
                else ldmatrix_x4(q[m], at);
            }
            const char* bp = sp + St::kA + c * (St::kB / 2);
            const char* ssp = sp + St::kA + St::kB + c * (St::kS / 2);
            if (first) gp.template chunk<true>(q, bp, ssp);
            else gp.template chunk<false>(q, bp, ssp);
            if (last) {
                // the group's {scale, bias} of rows g and g + 8 (after the products: fewer live registers)
                const int gi = ch >> cs;
                float sc[2][4];
#pragma unroll
                for (int m = 0; m < 2; ++m) {
                    const DMat* w = br.w[m];
                    const int64_t groups = w->cols >> gs;
                    const int64_t i0 = min(br.row_of(wi, m) + g, w->rows - 1) * groups + gi;
                    const int64_t i1 = min(br.row_of(wi, m) + g + 8, w->rows - 1) * groups + gi;
                    sc[m][0] = load_scale(w->scales, w->scale_dtype, i0);
                    sc[m][1] = load_scale(w->biases, w->scale_dtype, i0);
                    sc[m][2] = load_scale(w->scales, w->scale_dtype, i1);
                    sc[m][3] = load_scale(w->biases, w->scale_dtype, i1);
                }
                gp.finish(sc, ssp, acc);
            }
        }
    }
    cp_async_wait<0>();
    __syncthreads();  // the buffers are free for the next pass
}

// n8 tiles holding tokens for a pass that starts `left` tokens before the end
__device__ __forceinline__ int tiles_for(int64_t left) { return int(min(int64_t(kNTiles), (left + 7) / 8)); }

// Calls f(std::integral_constant<int, nt>) (nt = 1 .. kNTiles): the tile count known at compile time.
template <class F>
__device__ __forceinline__ void with_tiles(int nt, F&& f) {
    switch (nt) {
        case 1: f(std::integral_constant<int, 1>()); break;
        case 2: f(std::integral_constant<int, 2>()); break;
        case 3: f(std::integral_constant<int, 3>()); break;
        default: f(std::integral_constant<int, 4>()); break;
    }
}

// ---- kernels ----

// f(m, r, i, j) for every accumulator acc[m][i][j] of this warp: r its row offset in the block pass
// (rows of m16 tile m start at br.row_of(wi, m)); its token is 8 i + 2 t4 + (j & 1) of the pass.
template <int NT, class F>
__device__ __forceinline__ void for_each_fragment(const BlockRows& br, int tiles_m, F&& f) {
    const int lane = threadIdx.x & 31, g = lane >> 2, wi = threadIdx.x >> 5;
#pragma unroll
    for (int m = 0; m < 2; ++m) {
        if (m >= tiles_m) break;
#pragma unroll
        for (int i = 0; i < NT; ++i)
#pragma unroll
            for (int j = 0; j < 4; ++j) f(m, br.row_of(wi, m) + g + (j >> 1) * 8, i, j);
    }
}

__device__ __forceinline__ int fragment_token(int i, int j) { return i * 8 + 2 * (threadIdx.x & 3) + (j & 1); }

// Dense: block (row tile of 32 W, token tile of 32) of one matrix of a DenseBatch.
template <int W, int NT, bool Q8, int BITS>
__device__ __forceinline__ void dense_tile(const BlockInfo* bi, int64_t tile, const MmaIo& io, int64_t n, float* y,
                                           char* smem) {
    const BlockRows br{{&bi->w[0], &bi->w[0]}, tile * W * 32, false};
    const int64_t tok0 = int64_t(blockIdx.y) * kTileTokens;
    float acc[2][NT][4];
    mma_pass<W, NT, Q8, BITS>(br, io, [&](int j) { return min(tok0 + j, n - 1); }, smem, acc);
    const int64_t rows = bi->w[0].rows;
    for_each_fragment<NT>(br, 2, [&](int m, int64_t r, int i, int j) {
        const int64_t t = tok0 + fragment_token(i, j);
        if (t < n && r < rows) y[t * rows + r] = acc[m][i][j];
    });
}

// Several matrices of one input in one launch: matrix m owns the row tiles [tiles_end[m - 1],
// tiles_end[m]) of the grid's x.
struct DenseBatch {
    DMat w[kMaxGemvMats];
    float* y[kMaxGemvMats];
    int tiles_end[kMaxGemvMats];
    int count;
};

template <int W, bool Q8, int BITS>
__global__ void __launch_bounds__(W * 32, 8 / W * 2) mma_matmul_kernel(DenseBatch b, MmaIo io, int64_t n) {
    extern __shared__ __align__(128) char smem[];
    int m = 0;
    while (m + 1 < b.count && int(blockIdx.x) >= b.tiles_end[m]) ++m;
    const int64_t tile = int64_t(blockIdx.x) - (m ? b.tiles_end[m - 1] : 0);
    const int64_t tok0 = int64_t(blockIdx.y) * kTileTokens;
    const BlockInfo* bi = block_info(b.w[m], b.w[m]);
    float* y = b.y[m];
    with_tiles(tiles_for(n - tok0), [&](auto nt) { dense_tile<W, decltype(nt)::value, Q8, BITS>(bi, tile, io, n, y, smem); });
}

constexpr int kMoeWarps = 8;

// f(c0, NT) for the token tiles y, y + gridDim.y, ... of a job of `count` tokens (c0 its first
// token, NT its n8 tiles as a std::integral_constant). Full tiles in a loop, the partial last one
// after it: a loop around every tile count costs registers.
template <class F>
__device__ __forceinline__ void for_token_tiles(int count, F&& f) {
    const int stride = int(gridDim.y) * kTileTokens;
    int c0 = int(blockIdx.y) * kTileTokens;
    for (; c0 + kTileTokens <= count; c0 += stride) f(c0, std::integral_constant<int, kNTiles>());
    if (c0 < count) with_tiles(tiles_for(count - c0), [&](auto nt) { f(c0, nt); });
}

// Routed experts: block (row tile, first token tile, job); the block takes token tiles y, y +
// gridDim.y, ... of its job (slots + bi->slot_begin, bi->count of them). Gate/up: 16 rows of gate
// and of up a warp, act = silu(gate) * up.
template <int NT, bool Q8>
__device__ __forceinline__ void gate_up_tile(const BlockInfo* bi, const int32_t* slots, int c0, const MmaIo& io,
                                             float* act, int64_t inter, char* smem) {
    const BlockRows br{{&bi->w[0], &bi->w[1]}, int64_t(blockIdx.x) * kMoeWarps * 16, true};
    float acc[2][NT][4];
    {
        const int32_t* sl = slots + bi->slot_begin;
        const int last = bi->count - 1;
        mma_pass<kMoeWarps, NT, Q8, 4>(br, io, [&](int j) { return int64_t(sl[min(c0 + j, last)] / int32_t(io.div)); },
                                    smem, acc);
    }
    const int32_t* sl = slots + bi->slot_begin;  // (read again: not held through the product)
    const int count = bi->count;
    for_each_fragment<NT>(br, 1, [&](int, int64_t r, int i, int j) {
        const int c = c0 + fragment_token(i, j);
        if (c < count && r < inter) act[int64_t(sl[c]) * inter + r] = silu(acc[0][i][j]) * acc[1][i][j];
    });
}

template <bool Q8>
__global__ void __launch_bounds__(kMoeWarps * 32, 2)
    mma_gate_up_kernel(const ExpertJob* jobs, const int32_t* slots, MmaIo io, float* act, int64_t inter) {
    extern __shared__ __align__(128) char smem[];
    const ExpertJob& job = jobs[blockIdx.z];
    if (!mma_gate_up_ok(job)) return;  // (their cols are the input width, io.K)
    const BlockInfo* bi = block_info(job.gate, job.up, job.slot_begin, job.count);
    for_token_tiles(bi->count, [&](int c0, auto nt) {
        gate_up_tile<decltype(nt)::value, Q8>(bi, slots, c0, io, act, inter, smem);
    });
}

// Down: 32 rows a warp, routed = weight * (down act).
template <int NT, bool Q8>
__device__ __forceinline__ void down_tile(const BlockInfo* bi, const int32_t* slots, int c0, const MmaIo& io,
                                          const float* weights, float* routed, int64_t hidden, char* smem) {
    const BlockRows br{{&bi->w[0], &bi->w[0]}, int64_t(blockIdx.x) * kMoeWarps * 32, false};
    float acc[2][NT][4];
    {
        const int32_t* sl = slots + bi->slot_begin;
        const int last = bi->count - 1;
        mma_pass<kMoeWarps, NT, Q8, 4>(br, io, [&](int j) { return int64_t(sl[min(c0 + j, last)]); }, smem, acc);
    }
    const int32_t* sl = slots + bi->slot_begin;
    const int count = bi->count;
    for_each_fragment<NT>(br, 2, [&](int m, int64_t r, int i, int j) {
        const int c = c0 + fragment_token(i, j);
        if (c < count && r < hidden) {
            const int32_t slot = sl[c];
            routed[int64_t(slot) * hidden + r] = acc[m][i][j] * weights[slot];
        }
    });
}

template <bool Q8>
__global__ void __launch_bounds__(kMoeWarps * 32, 2) mma_down_kernel(const ExpertJob* jobs, const int32_t* slots,
                                                                     MmaIo io, const float* weights, float* routed,
                                                                     int64_t hidden) {
    extern __shared__ __align__(128) char smem[];
    const ExpertJob& job = jobs[blockIdx.z];
    if (!mma_ok(job.down)) return;
    const BlockInfo* bi = block_info(job.down, job.down, job.slot_begin, job.count);
    for_token_tiles(bi->count, [&](int c0, auto nt) {
        down_tile<decltype(nt)::value, Q8>(bi, slots, c0, io, weights, routed, hidden, smem);
    });
}

// ---- host side ----

// Prepares x [n, K] (K a multiple of 32) for the tensor-core products: the bf16 split, or (int8
// activations) codes for each group size of `groups` (a mask of 32, 64, 128) that divides K, in
// the column order of `bits`-bit weights.
MmaIo prepare(const float* x, int64_t n, int64_t K, bool q8, unsigned groups, int bits, cudaStream_t stream) {
    MmaIo io;
    io.K = K;
    const int64_t octs = K / 8;
    if (!q8) {
        const size_t words = size_t(n * K), sums = size_t(n * (K / kChunkCols));
        char* ws = static_cast<char*>(stream_scratch(stream, Scratch::TensorCoreActivations, words * 4 + sums * 4 + 256));
        io.xp = reinterpret_cast<uint32_t*>(ws);
        io.gsum = reinterpret_cast<float*>(ws + (words * 4 + 255) / 256 * 256);
        prep_kernel<<<dim3(unsigned((octs + 127) / 128), unsigned(n)), 128, 0, stream>>>(
            x, n, K, const_cast<uint32_t*>(io.xp), const_cast<float*>(io.gsum));
        CUDA_CHECK_LAUNCH("prep_kernel");
        return io;
    }
    unsigned variants = 0;
    size_t bytes = 0;
    for (int v = 0; v < kQ8Variants; ++v) {
        const int64_t group = int64_t(32) << v;
        if (!(groups & unsigned(group)) || K % group) continue;
        variants |= 1u << v;
        bytes += size_t(n * K + 255) / 256 * 256 + size_t(n * (K / group) * 8 + 255) / 256 * 256;
    }
    char* ws = static_cast<char*>(stream_scratch(stream, Scratch::TensorCoreActivations, bytes));
    Q8Prep out{};
    for (int v = 0; v < kQ8Variants; ++v) {
        if (!(variants >> v & 1u)) continue;
        out.xq[v] = reinterpret_cast<uint8_t*>(ws);
        ws += size_t(n * K + 255) / 256 * 256;
        out.dq[v] = reinterpret_cast<float2*>(ws);
        ws += size_t(n * (K >> (v + 5)) * 8 + 255) / 256 * 256;
        io.xq[v] = out.xq[v];
        io.dq[v] = out.dq[v];
    }
    prep_q8_kernel<<<dim3(unsigned((octs + 127) / 128), unsigned(n)), 128, 0, stream>>>(x, K, variants, bits == 8, out);
    CUDA_CHECK_LAUNCH("prep_q8_kernel");
    return io;
}

// Every group size the tensor cores take (a routed batch's experts are not known on the host).
constexpr unsigned kAllGroups = 32 | 64 | 128;

int sm_count() {
    static const int count = [] {
        int dev = 0, v = 0;
        if (cudaGetDevice(&dev) != cudaSuccess || cudaDeviceGetAttribute(&v, cudaDevAttrMultiProcessorCount, dev) != cudaSuccess)
            return 132;
        return v;
    }();
    return count;
}

// Token tiles a routed-expert block walks through: one launch covers every token of the largest
// job; blocks are only added along the tokens while the jobs alone leave the GPU short of blocks.
unsigned moe_token_blocks(const MoeBatch& b, int64_t row_tiles) {
    const int64_t tiles = (b.max_count + kTileTokens - 1) / kTileTokens;
    const int64_t want = (2 * int64_t(sm_count()) + b.njobs * row_tiles - 1) / (b.njobs * row_tiles);
    return unsigned(std::clamp<int64_t>(std::min(tiles, want), 1, 65535));
}

template <bool Q8, int BITS>
void launch_matmul(const DMat* const* w, float* const* y, int count, const MmaIo& io, int64_t n, cudaStream_t stream) {
    const unsigned token_tiles = unsigned((n + kTileTokens - 1) / kTileTokens);
    // 8 warps a block (256 rows) when that still gives two blocks an SM, else 4
    int64_t tiles8 = 0;
    for (int m = 0; m < count; ++m) tiles8 += (w[m]->rows + 255) / 256;
    const int warps = tiles8 * token_tiles >= 2 * int64_t(sm_count()) ? 8 : 4;
    DenseBatch b{};
    b.count = count;
    int tiles = 0;
    for (int m = 0; m < count; ++m) {
        b.w[m] = *w[m];
        b.y[m] = y[m];
        tiles += int((w[m]->rows + warps * 32 - 1) / (warps * 32));
        b.tiles_end[m] = tiles;
    }
    if (warps == 8) {
        constexpr int smem = Stage<8, Q8, BITS>::kSmem;
        allow_smem(mma_matmul_kernel<8, Q8, BITS>, smem);
        mma_matmul_kernel<8, Q8, BITS><<<dim3(unsigned(tiles), token_tiles), 8 * 32, smem, stream>>>(b, io, n);
    } else {
        constexpr int smem = Stage<4, Q8, BITS>::kSmem;
        allow_smem(mma_matmul_kernel<4, Q8, BITS>, smem);
        mma_matmul_kernel<4, Q8, BITS><<<dim3(unsigned(tiles), token_tiles), 4 * 32, smem, stream>>>(b, io, n);
    }
    CUDA_CHECK_LAUNCH("mma_matmul_kernel");
}

template <bool Q8>
void launch_gate_up(const MoeBatch& b, const MmaIo& io, float* act, cudaStream_t stream) {
    const int64_t row_tiles = (b.intermediate + kMoeWarps * 16 - 1) / (kMoeWarps * 16);
    constexpr int smem = Stage<kMoeWarps, Q8>::kSmem;
    allow_smem(mma_gate_up_kernel<Q8>, smem);
    mma_gate_up_kernel<Q8><<<dim3(unsigned(row_tiles), moe_token_blocks(b, row_tiles), unsigned(b.njobs)),
                             kMoeWarps * 32, smem, stream>>>(b.jobs, b.slots, io, act, b.intermediate);
    CUDA_CHECK_LAUNCH("mma_gate_up_kernel");
}

template <bool Q8>
void launch_down(const MoeBatch& b, const MmaIo& io, const float* weights, float* routed, cudaStream_t stream) {
    const int64_t row_tiles = (b.hidden + kMoeWarps * 32 - 1) / (kMoeWarps * 32);
    constexpr int smem = Stage<kMoeWarps, Q8>::kSmem;
    allow_smem(mma_down_kernel<Q8>, smem);
    mma_down_kernel<Q8><<<dim3(unsigned(row_tiles), moe_token_blocks(b, row_tiles), unsigned(b.njobs)),
                          kMoeWarps * 32, smem, stream>>>(b.jobs, b.slots, io, weights, routed, b.hidden);
    CUDA_CHECK_LAUNCH("mma_down_kernel");
}

}  // namespace

bool mma_takes(const DMat& w) { return mma_ok(w) || (cuda_int8_activations() && mma8_ok(w)); }

void mma_matmul(const DMat* const* w, float* const* y, int count, const float* x, int64_t n, cudaStream_t stream) {
    if (count <= 0) return;
    const bool q8 = cuda_int8_activations();
    const int bits = w[0]->bits;
    unsigned groups = 0;
    for (int m = 0; m < count; ++m) groups |= unsigned(w[m]->group);
    const MmaIo io = prepare(x, n, w[0]->cols, q8, groups, bits, stream);
    if (bits == 8) launch_matmul<true, 8>(w, y, count, io, n, stream);
    else if (q8) launch_matmul<true, 4>(w, y, count, io, n, stream);
    else launch_matmul<false, 4>(w, y, count, io, n, stream);
}

void mma_moe_gate_up(const MoeBatch& b, const float* x, float* act, cudaStream_t stream) {
    const bool q8 = cuda_int8_activations();
    MmaIo io = prepare(x, b.tokens, b.hidden, q8, kAllGroups, 4, stream);
    io.div = b.k;
    if (q8) launch_gate_up<true>(b, io, act, stream);
    else launch_gate_up<false>(b, io, act, stream);
}

void mma_moe_down(const MoeBatch& b, const float* act, const float* weights, float* routed, cudaStream_t stream) {
    const bool q8 = cuda_int8_activations();
    const MmaIo io = prepare(act, b.tokens * b.k, b.intermediate, q8, kAllGroups, 4, stream);  // a row per slot
    if (q8) launch_down<true>(b, io, weights, routed, stream);
    else launch_down<false>(b, io, weights, routed, stream);
}

bool tensor_cores_take(const ExpertJob& job) { return mma_gate_up_ok(job) && mma_ok(job.down); }

}  // namespace flashmoe::cuda
