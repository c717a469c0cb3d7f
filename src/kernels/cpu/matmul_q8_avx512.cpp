// Int8-activation kernels (MatmulActivations::Int8, see matmul.h) for MLX affine 4- and 8-bit
// weights, AVX-512 with VNNI. Every other format goes to the exact AVX-512 kernels. Tested
// against the scalar reference of the same semantics (scalar_q8_kernels).
//
// Quantisation, once per call (prepare): per token and weight group of G columns,
// d = max|x| / 127, xq = round_half_even(x * (127 / max|x|)), bit-identical to the reference.
// Then y = sum_g s_g d_g idot_g + b_g d_g isum_g: vpdpbusd multiplies the unsigned weight codes
// by the signed activation codes, exact in int32 (|idot| <= 128 * 255 * 127).
//
// Decode (n < kGemmTokens): lanes run along the columns. Per row, the fp32 products s_g d_g are
// formed once (16 groups per instruction) together with the bias term sum_g b_g d_g isum_g; the
// loop over a row then costs, per 128 columns of 4-bit codes: one load, two masks, two vpdpbusd,
// one conversion, one permute of the row's s d and one FMA. x is laid out to match the codes:
// for 4-bit, per 128 columns, [64 even columns | 64 odd ones] (the low and high nibbles of 64 code
// bytes, so vpdpbusd lane k covers columns 8k .. 8k+7); for 8-bit, natural order (lane k covers
// columns 4k .. 4k+3 of 64).
//
// Prompt (n >= kGemmTokens): lanes run along 16 tokens. A tile of 16 rows is unpacked once into
// one byte per code (8-bit codes are used in place) and reused for every token; x is laid out per
// 16 tokens as [column quad][token][4 bytes], so one vpdpbusd multiplies a broadcast quad of a
// row's codes with the same quad of 16 tokens. Integer sums cover one group, then are scaled by
// s_g (broadcast) times the 16 tokens' d_g (a vector) into fp32 accumulators.
#include "kernels/cpu/avx512_params.h"
#include "kernels/cpu/simd_driver.h"

namespace flashmoe::cpu {
namespace {

constexpr int64_t kGemmTokens = 4;  // below this, one decode pass per token
constexpr int64_t kLanes = 16;      // tokens per block in the prompt layout
// rows are unpacked kTileRows (simd_driver.h) at a time

// ---- layouts of xprep ----

// Decode: per token, [chunks * 128 bytes of xq | d per group | d * isum per group].
struct DecodeLayout {
    int64_t chunks, groups;
    int64_t q_floats() const { return chunks * 32; }
    int64_t token_floats() const { return q_floats() + 2 * groups; }
};

// Prompt: per block of 16 tokens, [quads * 64 bytes of xq | d [groups][16] | d * isum [groups][16]].
struct GemmLayout {
    int64_t blocks, quads, groups;
    int64_t q_floats() const { return quads * 16; }
    int64_t block_floats() const { return q_floats() + 2 * groups * kLanes; }
};

DecodeLayout decode_layout(const Matrix& w) { return {(w.cols + 127) / 128, w.cols / w.group_size}; }
GemmLayout gemm_layout(const Matrix& w, int64_t n) {
    return {(n + kLanes - 1) / kLanes, w.cols / 4, w.cols / w.group_size};
}

size_t prep_floats(const Matrix& w, int64_t n) {
    if (!uses_int8_activations(w)) return avx512_kernels().prep_floats(w, n);
    if (n < kGemmTokens) return size_t(n * decode_layout(w).token_floats());
    const GemmLayout L = gemm_layout(w, n);
    return size_t(L.blocks * L.block_floats());
}

// One token: natural-order codes q[cols], d[g], d[g] * isum[g].
void quantise_token(const float* x, int64_t cols, int64_t G, int8_t* q, float* d, float* xs) {
    for (int64_t g = 0; g < cols / G; ++g) {
        const float* xg = x + g * G;
        __m512 m = _mm512_setzero_ps();
        for (int64_t c = 0; c < G; c += 16) m = _mm512_max_ps(m, _mm512_abs_ps(_mm512_loadu_ps(xg + c)));
        const float amax = _mm512_reduce_max_ps(m);
        const __m512 inv = _mm512_set1_ps(amax > 0.0f ? 127.0f / amax : 0.0f);
        const __m512i lo = _mm512_set1_epi32(-127), hi = _mm512_set1_epi32(127);
        __m512i sum = _mm512_setzero_si512();
        for (int64_t c = 0; c < G; c += 16) {
            __m512i v = _mm512_cvtps_epi32(_mm512_mul_ps(_mm512_loadu_ps(xg + c), inv));  // half to even
            v = _mm512_min_epi32(_mm512_max_epi32(v, lo), hi);
            sum = _mm512_add_epi32(sum, v);
            _mm_storeu_si128(reinterpret_cast<__m128i*>(q + g * G + c), _mm512_cvtepi32_epi8(v));
        }
        d[g] = amax / 127.0f;
        xs[g] = d[g] * float(_mm512_reduce_add_epi32(sum));
    }
}

void prepare(const Matrix& w, const float* x, int64_t n, float* prep) {
    if (!uses_int8_activations(w)) {
        avx512_kernels().prepare(w, x, n, prep);
        return;
    }
    const int64_t cols = w.cols, G = w.group_size;
    ScratchFloats natural_buf(size_t((cols + 3) / 4));
    auto* natural = reinterpret_cast<int8_t*>(natural_buf.data());
    if (n < kGemmTokens) {
        const DecodeLayout L = decode_layout(w);
        for (int64_t t = 0; t < n; ++t) {
            float* base = prep + t * L.token_floats();
            auto* q = reinterpret_cast<int8_t*>(base);
            std::memset(q, 0, size_t(L.chunks * 128));
            float* d = base + L.q_floats();
            if (w.bits == 8) {
                quantise_token(x + t * cols, cols, G, q, d, d + L.groups);
                continue;
            }
            quantise_token(x + t * cols, cols, G, natural, d, d + L.groups);
            for (int64_t c = 0; c < cols; ++c) {
                const int64_t chunk = c / 128, within = c % 128;
                q[chunk * 128 + (within % 2) * 64 + within / 2] = natural[c];
            }
        }
        return;
    }
    const GemmLayout L = gemm_layout(w, n);
    std::memset(prep, 0, sizeof(float) * size_t(L.blocks * L.block_floats()));
    ScratchFloats params(size_t(2 * L.groups));
    for (int64_t t = 0; t < n; ++t) {
        const int64_t blk = t / kLanes, lane = t % kLanes;
        float* base = prep + blk * L.block_floats();
        float* d = base + L.q_floats();
        float* xs = d + L.groups * kLanes;
        quantise_token(x + t * cols, cols, G, natural, params.data(), params.data() + L.groups);
        for (int64_t g = 0; g < L.groups; ++g) {
            d[g * kLanes + lane] = params.data()[g];
            xs[g * kLanes + lane] = params.data()[L.groups + g];
        }
        auto* q = reinterpret_cast<uint8_t*>(base);
        for (int64_t k = 0; k < L.quads; ++k) std::memcpy(q + (k * kLanes + lane) * 4, natural + k * 4, 4);
    }
}

// ---- decode ----

// Lane k of a chunk covers columns [8k, 8k + 8) (4-bit, 128 columns) or [4k, 4k + 4) (8-bit, 64).
template <int Bits, int G>
__m512i group_of_lane() {
    const __m512i k = _mm512_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15);
    constexpr int cols_per_lane = Bits == 4 ? 8 : 4;
    constexpr int shift = G == 32 ? 5 : G == 64 ? 6 : 7;
    return _mm512_srli_epi32(_mm512_mullo_epi32(k, _mm512_set1_epi32(cols_per_lane)), shift);
}

// RB rows. sd[i * ldsd + g] = s_g d_g of row i (padded by 4 floats), bias[i] its bias term (lanes
// of partial sums).
template <int Bits, int G, int RB>
void decode_block(const uint8_t* codes, int64_t row_bytes, int64_t cols, const int8_t* xq, const float* sd,
                  int64_t ldsd, const __m512* bias, float* y) {
    constexpr int64_t kChunkCols = Bits == 4 ? 128 : 64;
    const __m512i lanes = group_of_lane<Bits, G>();
    const __m512i low = _mm512_set1_epi8(0x0f);
    __m512 acc[RB];
    for (int i = 0; i < RB; ++i) acc[i] = bias[i];
    const int64_t chunks = (cols + kChunkCols - 1) / kChunkCols;
    for (int64_t ch = 0; ch < chunks; ++ch) {
        const int64_t left_bytes = (cols - ch * kChunkCols) * Bits / 8;
        const __mmask64 m = left_bytes >= 64 ? ~__mmask64(0) : (__mmask64(1) << left_bytes) - 1;
        const int64_t g0 = ch * kChunkCols / G;
        __m512i x0, x1;
        if constexpr (Bits == 4) {
            x0 = _mm512_loadu_si512(xq + ch * 128);
            x1 = _mm512_loadu_si512(xq + ch * 128 + 64);
        } else {
            x0 = _mm512_loadu_si512(xq + ch * 64);
        }
        for (int i = 0; i < RB; ++i) {
            const __m512i v = _mm512_maskz_loadu_epi8(m, codes + i * row_bytes + ch * 64);
            __m512i p;
            if constexpr (Bits == 4) {
                p = _mm512_dpbusd_epi32(_mm512_setzero_si512(), _mm512_and_si512(v, low), x0);
                p = _mm512_dpbusd_epi32(p, _mm512_and_si512(_mm512_srli_epi16(v, 4), low), x1);
            } else {
                p = _mm512_dpbusd_epi32(_mm512_setzero_si512(), v, x0);
            }
            __m512 s;
            if constexpr (Bits == 4 ? G == 128 : G >= 64) {
                s = _mm512_set1_ps(sd[i * ldsd + g0]);
            } else {
                s = _mm512_permutexvar_ps(lanes, _mm512_castps128_ps512(_mm_loadu_ps(sd + i * ldsd + g0)));
            }
            acc[i] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(p), s, acc[i]);
        }
    }
    for (int i = 0; i < RB; ++i) y[i] = _mm512_reduce_add_ps(acc[i]);
}

// s_g d_g of one row into sd (16 groups per instruction) and its bias term sum_g b_g (d_g isum_g),
// as 16 partial sums.
inline __m512 row_params(const Matrix& w, int64_t row, int64_t groups, const float* d, const float* xs, float* sd) {
    const int64_t es = int64_t(dtype_size(w.scale_dtype));
    const auto* s = static_cast<const uint8_t*>(w.scales) + row * groups * es;
    const auto* b = static_cast<const uint8_t*>(w.biases) + row * groups * es;
    __m512 bacc = _mm512_setzero_ps();
    for (int64_t g = 0; g < groups; g += 16) {
        const int64_t left = groups - g;
        const __mmask16 m = left >= 16 ? __mmask16(0xffff) : __mmask16((1u << left) - 1u);
        const __m512 sv = avx512_load_params16(s + g * es, w.scale_dtype, m);
        _mm512_mask_storeu_ps(sd + g, m, _mm512_mul_ps(sv, _mm512_maskz_loadu_ps(m, d + g)));
        bacc = _mm512_fmadd_ps(avx512_load_params16(b + g * es, w.scale_dtype, m), _mm512_maskz_loadu_ps(m, xs + g),
                               bacc);
    }
    return bacc;
}

template <int Bits, int G>
void decode_rows(const Matrix& w, const float* prep, float* y, int64_t r0, int64_t r1) {
    const DecodeLayout L = decode_layout(w);
    const auto* xq = reinterpret_cast<const int8_t*>(prep);
    const float* d = prep + L.q_floats();
    const float* xs = d + L.groups;
    const int64_t row_bytes = int64_t(w.row_bytes());
    const auto* base = static_cast<const uint8_t*>(w.data);
    const int64_t ldsd = L.groups + 4;
    ScratchFloats sd(size_t(4 * ldsd));
    __m512 bias[4];
    int64_t r = r0;
    for (; r + 4 <= r1; r += 4) {
        if (r + 8 <= r1)  // the next block: rows are too short for the hardware prefetcher
            for (int64_t off = 0; off < 4 * row_bytes; off += 64)
                _mm_prefetch(reinterpret_cast<const char*>(base + (r + 4) * row_bytes + off), _MM_HINT_T0);
        for (int i = 0; i < 4; ++i) bias[i] = row_params(w, r + i, L.groups, d, xs, sd.data() + i * ldsd);
        decode_block<Bits, G, 4>(base + r * row_bytes, row_bytes, w.cols, xq, sd.data(), ldsd, bias, y + r);
    }
    for (; r < r1; ++r) {
        bias[0] = row_params(w, r, L.groups, d, xs, sd.data());
        decode_block<Bits, G, 1>(base + r * row_bytes, row_bytes, w.cols, xq, sd.data(), ldsd, bias, y + r);
    }
}

template <int Bits>
void decode_dispatch(const Matrix& w, const float* prep, float* y, int64_t r0, int64_t r1) {
    switch (w.group_size) {
        case 32: decode_rows<Bits, 32>(w, prep, y, r0, r1); return;
        case 64: decode_rows<Bits, 64>(w, prep, y, r0, r1); return;
        default: decode_rows<Bits, 128>(w, prep, y, r0, r1); return;
    }
}

// ---- prompt ----

// Token vectors: all 16 tokens of a block (zmm), or its first 8 (ymm) when no more are valid.
struct Tok16 {
    using I = __m512i;
    using F = __m512;
    static constexpr int64_t kTokens = 16;
    static I zero_i() { return _mm512_setzero_si512(); }
    static F zero_f() { return _mm512_setzero_ps(); }
    static I load_i(const void* p) { return _mm512_loadu_si512(p); }
    static I set1_i(int32_t v) { return _mm512_set1_epi32(v); }
    static I dot(I acc, I w, I x) { return _mm512_dpbusd_epi32(acc, w, x); }
    static F load_f(const float* p) { return _mm512_loadu_ps(p); }
    static F set1_f(float v) { return _mm512_set1_ps(v); }
    static F scale_add(I isum, F s, F d, F acc) { return _mm512_fmadd_ps(_mm512_cvtepi32_ps(isum), _mm512_mul_ps(s, d), acc); }
    static F fmadd(F a, F b, F c) { return _mm512_fmadd_ps(a, b, c); }
    static void store(float* p, F v) { _mm512_storeu_ps(p, v); }
};
struct Tok8 {
    using I = __m256i;
    using F = __m256;
    static constexpr int64_t kTokens = 8;
    static I zero_i() { return _mm256_setzero_si256(); }
    static F zero_f() { return _mm256_setzero_ps(); }
    static I load_i(const void* p) { return _mm256_loadu_si256(static_cast<const __m256i*>(p)); }
    static I set1_i(int32_t v) { return _mm256_set1_epi32(v); }
    static I dot(I acc, I w, I x) { return _mm256_dpbusd_epi32(acc, w, x); }
    static F load_f(const float* p) { return _mm256_loadu_ps(p); }
    static F set1_f(float v) { return _mm256_set1_ps(v); }
    static F scale_add(I isum, F s, F d, F acc) { return _mm256_fmadd_ps(_mm256_cvtepi32_ps(isum), _mm256_mul_ps(s, d), acc); }
    static F fmadd(F a, F b, F c) { return _mm256_fmadd_ps(a, b, c); }
    static void store(float* p, F v) { _mm256_storeu_ps(p, v); }
};

// Rows [0, MR) of a tile (codes one byte each, ldw bytes apart) times NT blocks of tokens (the
// first V::kTokens of each 16-token block). sc/bi: the tile's fp32 scales/biases [row][group].
// Writes y[t * ldy + i] for the `tokens` valid tokens.
template <class V, int MR, int NT>
void gemm_micro(const uint8_t* wt, int64_t ldw, const float* xblk, int64_t ldx, const GemmLayout& L, int64_t G,
                const float* sc, const float* bi, int64_t tokens, float* y, int64_t ldy) {
    using I = typename V::I;
    using F = typename V::F;
    F acc[MR][NT];
    for (int i = 0; i < MR; ++i)
        for (int j = 0; j < NT; ++j) acc[i][j] = V::zero_f();
    const int64_t qpg = G / 4;  // quads per group
    for (int64_t g = 0; g < L.groups; ++g) {
        I isum[MR][NT];
        for (int i = 0; i < MR; ++i)
            for (int j = 0; j < NT; ++j) isum[i][j] = V::zero_i();
        const uint8_t* wg = wt + g * G;
        for (int64_t k = 0; k < qpg; ++k) {
            I xv[NT];
            for (int j = 0; j < NT; ++j)
                xv[j] = V::load_i(reinterpret_cast<const uint8_t*>(xblk + j * ldx) + (g * qpg + k) * 64);
            for (int i = 0; i < MR; ++i) {
                int32_t quad;
                std::memcpy(&quad, wg + i * ldw + k * 4, 4);
                const I wv = V::set1_i(quad);
                for (int j = 0; j < NT; ++j) isum[i][j] = V::dot(isum[i][j], wv, xv[j]);
            }
        }
        F dv[NT], xsv[NT];
        for (int j = 0; j < NT; ++j) {
            const float* d = xblk + j * ldx + L.q_floats();
            dv[j] = V::load_f(d + g * kLanes);
            xsv[j] = V::load_f(d + L.groups * kLanes + g * kLanes);
        }
        for (int i = 0; i < MR; ++i) {
            const F s = V::set1_f(sc[i * L.groups + g]);
            const F b = V::set1_f(bi[i * L.groups + g]);
            for (int j = 0; j < NT; ++j) acc[i][j] = V::fmadd(b, xsv[j], V::scale_add(isum[i][j], s, dv[j], acc[i][j]));
        }
    }
    alignas(64) float out[kLanes];
    for (int i = 0; i < MR; ++i)
        for (int j = 0; j < NT; ++j) {
            V::store(out, acc[i][j]);
            const int64_t valid = imin(V::kTokens, tokens - j * kLanes);
            for (int64_t l = 0; l < valid; ++l) y[(j * kLanes + l) * ldy + i] = out[l];
        }
}

template <class V, int NT>
void gemm_micro_rows(int mr, const uint8_t* wt, int64_t ldw, const float* xblk, int64_t ldx, const GemmLayout& L,
                     int64_t G, const float* sc, const float* bi, int64_t tokens, float* y, int64_t ldy) {
    switch (mr) {
        case 8: gemm_micro<V, 8, NT>(wt, ldw, xblk, ldx, L, G, sc, bi, tokens, y, ldy); return;
        case 7: gemm_micro<V, 7, NT>(wt, ldw, xblk, ldx, L, G, sc, bi, tokens, y, ldy); return;
        case 6: gemm_micro<V, 6, NT>(wt, ldw, xblk, ldx, L, G, sc, bi, tokens, y, ldy); return;
        case 5: gemm_micro<V, 5, NT>(wt, ldw, xblk, ldx, L, G, sc, bi, tokens, y, ldy); return;
        case 4: gemm_micro<V, 4, NT>(wt, ldw, xblk, ldx, L, G, sc, bi, tokens, y, ldy); return;
        case 3: gemm_micro<V, 3, NT>(wt, ldw, xblk, ldx, L, G, sc, bi, tokens, y, ldy); return;
        case 2: gemm_micro<V, 2, NT>(wt, ldw, xblk, ldx, L, G, sc, bi, tokens, y, ldy); return;
        default: gemm_micro<V, 1, NT>(wt, ldw, xblk, ldx, L, G, sc, bi, tokens, y, ldy); return;
    }
}

// One byte per 4-bit code, natural column order.
void unpack4(const uint8_t* q, int64_t cols, uint8_t* out) {
    const __m256i low = _mm256_set1_epi8(0x0f);
    int64_t c = 0;
    for (; c + 64 <= cols; c += 64) {
        const __m256i b = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(q + c / 2));
        const __m256i lo = _mm256_and_si256(b, low), hi = _mm256_and_si256(_mm256_srli_epi16(b, 4), low);
        // unpack works within 128-bit lanes: bytes 0-7 | 16-23 -> a, 8-15 | 24-31 -> b
        const __m256i a = _mm256_unpacklo_epi8(lo, hi), bb = _mm256_unpackhi_epi8(lo, hi);
        _mm256_storeu_si256(reinterpret_cast<__m256i*>(out + c), _mm256_permute2x128_si256(a, bb, 0x20));
        _mm256_storeu_si256(reinterpret_cast<__m256i*>(out + c + 32), _mm256_permute2x128_si256(a, bb, 0x31));
    }
    for (; c < cols; c += 2) {
        out[c] = q[c / 2] & 0x0f;
        out[c + 1] = q[c / 2] >> 4;
    }
}

void gemm_rows(const Matrix& w, const float* prep, int64_t n, float* y, int64_t r0, int64_t r1) {
    const GemmLayout L = gemm_layout(w, n);
    const int64_t cols = w.cols, G = w.group_size, row_bytes = int64_t(w.row_bytes());
    const auto* base = static_cast<const uint8_t*>(w.data);
    ScratchFloats tile_buf(size_t(w.bits == 4 ? kTileRows * cols / 4 : 0) + 1);
    ScratchFloats params(size_t(2 * kTileRows * L.groups));
    float* sc = params.data();
    float* bi = params.data() + kTileRows * L.groups;
    for (int64_t rb = r0; rb < r1; rb += kTileRows) {
        const int64_t rows = imin(kTileRows, r1 - rb);
        const uint8_t* wt;
        int64_t ldw;
        if (w.bits == 4) {
            auto* t = reinterpret_cast<uint8_t*>(tile_buf.data());
            for (int64_t i = 0; i < rows; ++i) unpack4(base + (rb + i) * row_bytes, cols, t + i * cols);
            wt = t;
            ldw = cols;
        } else {
            wt = base + rb * row_bytes;
            ldw = row_bytes;
        }
        for (int64_t i = 0; i < rows; ++i)
            avx512_load_params(w, rb + i, L.groups, sc + i * L.groups, bi + i * L.groups);
        for (int64_t blk = 0; blk < L.blocks;) {
            // Two blocks of 16 tokens at a time while the second has more than 8; a block of at most 8
            // tokens in half vectors.
            const int nt = L.blocks - blk >= 2 && n - (blk + 1) * kLanes > Tok8::kTokens ? 2 : 1;
            const int64_t tokens = imin(nt * kLanes, n - blk * kLanes);
            const bool half = tokens <= Tok8::kTokens;
            const float* xblk = prep + blk * L.block_floats();
            const int mr_max = nt == 2 ? 4 : 8;
            for (int64_t i0 = 0; i0 < rows; i0 += mr_max) {
                const int mr = int(imin(mr_max, rows - i0));
                float* yt = y + blk * kLanes * w.rows + rb + i0;
                const uint8_t* wi = wt + i0 * ldw;
                const float *si = sc + i0 * L.groups, *bj = bi + i0 * L.groups;
                if (nt == 2)
                    gemm_micro_rows<Tok16, 2>(mr, wi, ldw, xblk, L.block_floats(), L, G, si, bj, tokens, yt, w.rows);
                else if (half)
                    gemm_micro_rows<Tok8, 1>(mr, wi, ldw, xblk, L.block_floats(), L, G, si, bj, tokens, yt, w.rows);
                else
                    gemm_micro_rows<Tok16, 1>(mr, wi, ldw, xblk, L.block_floats(), L, G, si, bj, tokens, yt, w.rows);
            }
            blk += nt;
        }
    }
}

// ---- the IsaKernels entry points ----

void rows(const KernelArgs& a, int64_t r0, int64_t r1) {
    const Matrix& w = *a.w;
    if (!uses_int8_activations(w)) {
        avx512_kernels().rows(a, r0, r1);
        return;
    }
    if (a.n >= kGemmTokens) {
        gemm_rows(w, a.xprep, a.n, a.y, r0, r1);
        return;
    }
    const int64_t per_token = decode_layout(w).token_floats();
    for (int64_t t = 0; t < a.n; ++t) {
        const float* prep = a.xprep + t * per_token;
        float* y = a.y + t * w.rows;
        if (w.bits == 4)
            decode_dispatch<4>(w, prep, y, r0, r1);
        else
            decode_dispatch<8>(w, prep, y, r0, r1);
    }
}

}  // namespace

const IsaKernels& avx512_q8_kernels() {
    static const IsaKernels k{prep_floats, prepare, rows};
    return k;
}

}  // namespace flashmoe::cpu
