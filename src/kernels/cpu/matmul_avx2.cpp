// AVX2 + FMA + F16C kernels. Compiled with -mavx2 -mfma -mf16c; only reached when detected_isa()
// says the CPU has them.
//
// Decode (n == 1) on affine 4-bit: 8 bytes widen to 8 int32 lanes, each holding an even column
// (low nibble) and an odd column (high nibble); x is de-interleaved once per call into
// [even 8, odd 8] per 16 columns (prepare()) so the weights need no shuffles. w = fma(q, scale, bias)
// then one FMA with x. Four rows share each x load. (AVX2's vpermps sees only 3 index bits, so the
// 16-entry table trick of the AVX-512 kernel does not apply.)
//
// Results match the scalar reference to fp32 rounding (see matmul_avx512.cpp for the argument).
#include "kernels/cpu/simd_driver.h"


namespace flashmoe::cpu {
namespace {

inline __m256i tail_mask(int n) {
    return _mm256_cmpgt_epi32(_mm256_set1_epi32(n), _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7));
}

// 16-bit tails go through a zeroed stack copy: AVX2 has no 16-bit masked load.
inline __m128i load_u16_tail(const void* p, int n) {
    alignas(16) uint16_t buf[8] = {};
    std::memcpy(buf, p, size_t(n) * 2);
    return _mm_load_si128(reinterpret_cast<const __m128i*>(buf));
}

struct V256 {
    using F = __m256;
    static constexpr int W = 8;
    static F zero() { return _mm256_setzero_ps(); }
    static F set1(float f) { return _mm256_set1_ps(f); }
    static F load(const float* p) { return _mm256_loadu_ps(p); }
    static F load_tail(const float* p, int n) { return _mm256_maskload_ps(p, tail_mask(n)); }
    static void store(float* p, F v) { _mm256_storeu_ps(p, v); }
    static F fmadd(F a, F b, F c) { return _mm256_fmadd_ps(a, b, c); }
    static F add(F a, F b) { return _mm256_add_ps(a, b); }
    static float hsum(F v) {
        __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
        s = _mm_add_ps(s, _mm_movehl_ps(s, s));
        s = _mm_add_ss(s, _mm_movehdup_ps(s));
        return _mm_cvtss_f32(s);
    }
    static F widen_bf16(__m128i h) { return _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_cvtepu16_epi32(h), 16)); }
    static F load_bf16(const void* p) { return widen_bf16(_mm_loadu_si128(static_cast<const __m128i*>(p))); }
    static F load_bf16_tail(const void* p, int n) { return widen_bf16(load_u16_tail(p, n)); }
    static F load_f16(const void* p) { return _mm256_cvtph_ps(_mm_loadu_si128(static_cast<const __m128i*>(p))); }
    static F load_f16_tail(const void* p, int n) { return _mm256_cvtph_ps(load_u16_tail(p, n)); }
    static bool dequant_row(const Matrix& w, int64_t row, float* out);
};

// ---- fast dequantisation into natural column order (used by the n > 1 tiles) ----

template <class Load>
void dequant_dense(const uint8_t* row, int64_t cols, float* out) {
    int64_t c = 0;
    for (; c + 8 <= cols; c += 8) V256::store(out + c, Load::full(row, c));
    if (c < cols) _mm256_maskstore_ps(out + c, tail_mask(int(cols - c)), Load::tail(row, c, int(cols - c)));
}

void dequant_affine4(const uint8_t* q, const float* scales, const float* biases, int64_t cols, int group, float* out) {
    const __m128i low = _mm_set1_epi8(0x0f);
    for (int64_t c = 0; c < cols; c += 16) {
        const int64_t g = c / group;
        const __m256 s = _mm256_set1_ps(scales[g]), b = _mm256_set1_ps(biases[g]);
        const __m128i bytes = _mm_loadl_epi64(reinterpret_cast<const __m128i*>(q + c / 2));
        const __m128i lo = _mm_and_si128(bytes, low);
        const __m128i hi = _mm_and_si128(_mm_srli_epi16(bytes, 4), low);
        const __m128i codes = _mm_unpacklo_epi8(lo, hi);  // columns c .. c+15 in order
        const __m256 q0 = _mm256_cvtepi32_ps(_mm256_cvtepu8_epi32(codes));
        const __m256 q1 = _mm256_cvtepi32_ps(_mm256_cvtepu8_epi32(_mm_srli_si128(codes, 8)));
        _mm256_storeu_ps(out + c, _mm256_fmadd_ps(q0, s, b));
        _mm256_storeu_ps(out + c + 8, _mm256_fmadd_ps(q1, s, b));
    }
}

void dequant_affine8(const uint8_t* q, const float* scales, const float* biases, int64_t cols, int group, float* out) {
    for (int64_t c = 0; c < cols; c += 8) {
        const int64_t g = c / group;
        const __m256 v = _mm256_cvtepi32_ps(_mm256_cvtepu8_epi32(_mm_loadl_epi64(reinterpret_cast<const __m128i*>(q + c))));
        _mm256_storeu_ps(out + c, _mm256_fmadd_ps(v, _mm256_set1_ps(scales[g]), _mm256_set1_ps(biases[g])));
    }
}

bool V256::dequant_row(const Matrix& w, int64_t row, float* out) {
    const auto* base = static_cast<const uint8_t*>(w.data) + row * int64_t(w.row_bytes());
    switch (w.format) {
        case WeightFormat::F32: dequant_dense<LoadF32<V256>>(base, w.cols, out); return true;
        case WeightFormat::BF16: dequant_dense<LoadBf16<V256>>(base, w.cols, out); return true;
        case WeightFormat::F16: dequant_dense<LoadF16<V256>>(base, w.cols, out); return true;
        case WeightFormat::Affine: break;
    }
    if (w.bits != 4 && w.bits != 8) return false;
    const int64_t groups = w.cols / w.group_size;
    ScratchFloats params(size_t(2 * groups));
    load_group_params(w, row, groups, params.data(), params.data() + groups);
    if (w.bits == 4)
        dequant_affine4(base, params.data(), params.data() + groups, w.cols, w.group_size, out);
    else
        dequant_affine8(base, params.data(), params.data() + groups, w.cols, w.group_size, out);
    return true;
}

// ---- n == 1, affine 4-bit and 8-bit ----

// x de-interleaved per 16 columns: [x0 x2 .. x14 | x1 x3 .. x15].
void prepare_affine4(const float* x, int64_t cols, float* xp) {
    for (int64_t c = 0; c < cols; c += 16)
        for (int k = 0; k < 8; ++k) {
            xp[c + k] = x[c + 2 * k];
            xp[c + 8 + k] = x[c + 2 * k + 1];
        }
}

// RB consecutive rows; sc/bi hold each row's fp32 scales/biases at [i * groups + g].
template <int G, int RB>
void affine4_block(const uint8_t* q0, int64_t row_bytes, int64_t groups, const float* xp, const float* sc,
                   const float* bi, float* y) {
    const __m256i low = _mm256_set1_epi32(0x0f);
    __m256 acc[RB][2];
    for (int i = 0; i < RB; ++i) acc[i][0] = acc[i][1] = _mm256_setzero_ps();
    for (int64_t g = 0; g < groups; ++g) {
        for (int j = 0; j < G / 16; ++j) {
            const float* xb = xp + g * G + j * 16;
            const __m256 x0 = _mm256_loadu_ps(xb), x1 = _mm256_loadu_ps(xb + 8);
            for (int i = 0; i < RB; ++i) {
                const __m256 s = _mm256_broadcast_ss(sc + i * groups + g);
                const __m256 b = _mm256_broadcast_ss(bi + i * groups + g);
                const auto* p = reinterpret_cast<const __m128i*>(q0 + i * row_bytes + g * (G / 2) + j * 8);
                const __m256i v = _mm256_cvtepu8_epi32(_mm_loadl_epi64(p));
                const __m256 wl = _mm256_fmadd_ps(_mm256_cvtepi32_ps(_mm256_and_si256(v, low)), s, b);
                const __m256 wh = _mm256_fmadd_ps(_mm256_cvtepi32_ps(_mm256_srli_epi32(v, 4)), s, b);
                acc[i][0] = _mm256_fmadd_ps(wl, x0, acc[i][0]);
                acc[i][1] = _mm256_fmadd_ps(wh, x1, acc[i][1]);
            }
        }
    }
    for (int i = 0; i < RB; ++i) y[i] = V256::hsum(_mm256_add_ps(acc[i][0], acc[i][1]));
}

template <int G, int RB>
void affine8_block(const uint8_t* q0, int64_t row_bytes, int64_t groups, const float* x, const float* sc,
                   const float* bi, float* y) {
    __m256 acc[RB][2];
    for (int i = 0; i < RB; ++i) acc[i][0] = acc[i][1] = _mm256_setzero_ps();
    for (int64_t g = 0; g < groups; ++g) {
        for (int j = 0; j < G / 8; ++j) {
            const __m256 xv = _mm256_loadu_ps(x + g * G + j * 8);
            for (int i = 0; i < RB; ++i) {
                const __m256 s = _mm256_broadcast_ss(sc + i * groups + g);
                const __m256 b = _mm256_broadcast_ss(bi + i * groups + g);
                const auto* p = reinterpret_cast<const __m128i*>(q0 + i * row_bytes + g * G + j * 8);
                const __m256 qv = _mm256_cvtepi32_ps(_mm256_cvtepu8_epi32(_mm_loadl_epi64(p)));
                acc[i][j & 1] = _mm256_fmadd_ps(_mm256_fmadd_ps(qv, s, b), xv, acc[i][j & 1]);
            }
        }
    }
    for (int i = 0; i < RB; ++i) y[i] = V256::hsum(_mm256_add_ps(acc[i][0], acc[i][1]));
}

using BlockFn = void (*)(const uint8_t*, int64_t, int64_t, const float*, const float*, const float*, float*);

// Walks rows in blocks of 4 (then single rows), converting each block's scales/biases to fp32 first.
template <int G, BlockFn Block4, BlockFn Block1>
void affine_matvec(const Matrix& w, const float* x, float* y, int64_t r0, int64_t r1) {
    const int64_t groups = w.cols / G;
    const int64_t row_bytes = int64_t(w.row_bytes());
    const auto* base = static_cast<const uint8_t*>(w.data);
    ScratchFloats params(size_t(8 * groups));
    float* sc = params.data();
    float* bi = params.data() + 4 * groups;
    int64_t r = r0;
    for (; r + 4 <= r1; r += 4) {
        for (int i = 0; i < 4; ++i) load_group_params(w, r + i, groups, sc + i * groups, bi + i * groups);
        Block4(base + r * row_bytes, row_bytes, groups, x, sc, bi, y + r);
    }
    for (; r < r1; ++r) {
        load_group_params(w, r, groups, sc, bi);
        Block1(base + r * row_bytes, row_bytes, groups, x, sc, bi, y + r);
    }
}

template <int G>
void affine_dispatch_bits(const Matrix& w, const float* x, const float* xprep, float* y, int64_t r0, int64_t r1) {
    if (w.bits == 4)
        affine_matvec<G, affine4_block<G, 4>, affine4_block<G, 1>>(w, xprep, y, r0, r1);
    else
        affine_matvec<G, affine8_block<G, 4>, affine8_block<G, 1>>(w, x, y, r0, r1);
}

// ---- the IsaKernels entry points ----

bool uses_affine4_prep(const Matrix& w, int64_t n) {
    return n == 1 && w.format == WeightFormat::Affine && w.bits == 4;
}

size_t prep_floats(const Matrix& w, int64_t n) { return uses_affine4_prep(w, n) ? size_t(w.cols) : 0; }

void prepare(const Matrix& w, const float* x, int64_t n, float* xprep) {
    if (uses_affine4_prep(w, n)) prepare_affine4(x, w.cols, xprep);
}

void rows(const KernelArgs& a, int64_t r0, int64_t r1) {
    const Matrix& w = *a.w;
    if (a.n != 1) {
        tiled_matmul<V256>(w, a.x, a.n, a.y, r0, r1);
        return;
    }
    switch (w.format) {
        case WeightFormat::F32: dense_matvec<V256, LoadF32<V256>>(w, a.x, a.y, r0, r1); return;
        case WeightFormat::BF16: dense_matvec<V256, LoadBf16<V256>>(w, a.x, a.y, r0, r1); return;
        case WeightFormat::F16: dense_matvec<V256, LoadF16<V256>>(w, a.x, a.y, r0, r1); return;
        case WeightFormat::Affine: break;
    }
    if (w.bits != 4 && w.bits != 8) {
        generic_matvec<V256>(w, a.x, a.y, r0, r1);
        return;
    }
    switch (w.group_size) {
        case 32: affine_dispatch_bits<32>(w, a.x, a.xprep, a.y, r0, r1); return;
        case 64: affine_dispatch_bits<64>(w, a.x, a.xprep, a.y, r0, r1); return;
        default: affine_dispatch_bits<128>(w, a.x, a.xprep, a.y, r0, r1); return;
    }
}

}  // namespace

const IsaKernels& avx2_kernels() {
    static const IsaKernels k{prep_floats, prepare, rows};
    return k;
}

}  // namespace flashmoe::cpu
