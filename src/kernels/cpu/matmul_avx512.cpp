// AVX-512 (F/BW/VL/DQ) kernels. Compiled with -mavx512f/bw/vl/dq (+AVX2/FMA/F16C); only
// reached when detected_isa() says the CPU has them.
//
// Decode (n == 1) on affine 4-bit is the hot path. Per group and row, a 16-entry table
// lut[q] = scale * q + bias is built with one FMA; vpermps then maps each 4-bit code straight to its
// fp32 weight (it reads only the low 4 index bits, so no masking), and one FMA with x accumulates.
// Each int32 lane holds a byte, i.e. an even column (low nibble) and an odd one (high nibble), so
// x is de-interleaved once per call into [even 16, odd 16] per 32 columns (prepare()) instead of
// re-shuffling weights for every row. Four rows share each x load.
//
// Weights are the reference w = fma(scale, q, bias) (one rounding where the scalar reference has
// two) and the sums are fp32 in a different order, so results match the scalar kernels to fp32
// rounding of the dot product.
#include "kernels/cpu/avx512_params.h"
#include "kernels/cpu/simd_driver.h"


namespace flashmoe::cpu {
namespace {

struct V512 {
    using F = __m512;
    static constexpr int W = 16;
    static F zero() { return _mm512_setzero_ps(); }
    static F set1(float f) { return _mm512_set1_ps(f); }
    static F load(const float* p) { return _mm512_loadu_ps(p); }
    static F load_tail(const float* p, int n) { return _mm512_maskz_loadu_ps(__mmask16((1u << n) - 1u), p); }
    static void store(float* p, F v) { _mm512_storeu_ps(p, v); }
    static F fmadd(F a, F b, F c) { return _mm512_fmadd_ps(a, b, c); }
    static F add(F a, F b) { return _mm512_add_ps(a, b); }
    static float hsum(F v) { return _mm512_reduce_add_ps(v); }
    static F widen_bf16(__m256i h) { return _mm512_castsi512_ps(_mm512_slli_epi32(_mm512_cvtepu16_epi32(h), 16)); }
    static F load_bf16(const void* p) { return widen_bf16(_mm256_loadu_si256(static_cast<const __m256i*>(p))); }
    static F load_bf16_tail(const void* p, int n) {
        return widen_bf16(_mm256_maskz_loadu_epi16(__mmask16((1u << n) - 1u), p));
    }
    static F load_f16(const void* p) { return _mm512_cvtph_ps(_mm256_loadu_si256(static_cast<const __m256i*>(p))); }
    static F load_f16_tail(const void* p, int n) {
        return _mm512_cvtph_ps(_mm256_maskz_loadu_epi16(__mmask16((1u << n) - 1u), p));
    }
    static bool dequant_row(const Matrix& w, int64_t row, float* out);
};

// A function, not a namespace-scope constant: static initialisers run on every CPU.
inline __m512 iota16() { return _mm512_setr_ps(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15); }

// ---- fast dequantisation into natural column order (used by the n > 1 tiles) ----

template <class Load>
void dequant_dense(const uint8_t* row, int64_t cols, float* out) {
    int64_t c = 0;
    for (; c + 16 <= cols; c += 16) V512::store(out + c, Load::full(row, c));
    if (c < cols) _mm512_mask_storeu_ps(out + c, __mmask16((1u << (cols - c)) - 1u), Load::tail(row, c, int(cols - c)));
}

void dequant_affine4(const uint8_t* q, const float* scales, const float* biases, int64_t cols, int group, float* out) {
    const __m128i low = _mm_set1_epi8(0x0f);
    const __m512 iota = iota16();
    for (int64_t c = 0; c < cols; c += 32) {
        const int64_t g = c / group;
        const __m512 lut = _mm512_fmadd_ps(iota, _mm512_set1_ps(scales[g]), _mm512_set1_ps(biases[g]));
        const __m128i b = _mm_loadu_si128(reinterpret_cast<const __m128i*>(q + c / 2));
        const __m128i lo = _mm_and_si128(b, low);
        const __m128i hi = _mm_and_si128(_mm_srli_epi16(b, 4), low);
        const __m128i n0 = _mm_unpacklo_epi8(lo, hi);  // columns c .. c+15 in order
        const __m128i n1 = _mm_unpackhi_epi8(lo, hi);  // columns c+16 .. c+31
        _mm512_storeu_ps(out + c, _mm512_permutexvar_ps(_mm512_cvtepu8_epi32(n0), lut));
        _mm512_storeu_ps(out + c + 16, _mm512_permutexvar_ps(_mm512_cvtepu8_epi32(n1), lut));
    }
}

void dequant_affine8(const uint8_t* q, const float* scales, const float* biases, int64_t cols, int group, float* out) {
    for (int64_t c = 0; c < cols; c += 16) {
        const int64_t g = c / group;
        const __m512 v = _mm512_cvtepi32_ps(_mm512_cvtepu8_epi32(_mm_loadu_si128(reinterpret_cast<const __m128i*>(q + c))));
        _mm512_storeu_ps(out + c, _mm512_fmadd_ps(v, _mm512_set1_ps(scales[g]), _mm512_set1_ps(biases[g])));
    }
}

bool V512::dequant_row(const Matrix& w, int64_t row, float* out) {
    const auto* base = static_cast<const uint8_t*>(w.data) + row * int64_t(w.row_bytes());
    switch (w.format) {
        case WeightFormat::F32: dequant_dense<LoadF32<V512>>(base, w.cols, out); return true;
        case WeightFormat::BF16: dequant_dense<LoadBf16<V512>>(base, w.cols, out); return true;
        case WeightFormat::F16: dequant_dense<LoadF16<V512>>(base, w.cols, out); return true;
        case WeightFormat::Affine: break;
    }
    if (w.bits != 4 && w.bits != 8) return false;
    const int64_t groups = w.cols / w.group_size;
    ScratchFloats params(size_t(2 * groups));
    avx512_load_params(w, row, groups, params.data(), params.data() + groups);
    if (w.bits == 4)
        dequant_affine4(base, params.data(), params.data() + groups, w.cols, w.group_size, out);
    else
        dequant_affine8(base, params.data(), params.data() + groups, w.cols, w.group_size, out);
    return true;
}

// ---- n == 1, affine 4-bit ----

// x de-interleaved per 32 columns: [x0 x2 .. x30 | x1 x3 .. x31].
void prepare_affine4(const float* x, int64_t cols, float* xp) {
    const __m512i even = _mm512_setr_epi32(0, 2, 4, 6, 8, 10, 12, 14, 16, 18, 20, 22, 24, 26, 28, 30);
    const __m512i odd = _mm512_add_epi32(even, _mm512_set1_epi32(1));
    for (int64_t c = 0; c < cols; c += 32) {
        const __m512 a = _mm512_loadu_ps(x + c), b = _mm512_loadu_ps(x + c + 16);
        _mm512_storeu_ps(xp + c, _mm512_permutex2var_ps(a, even, b));
        _mm512_storeu_ps(xp + c + 16, _mm512_permutex2var_ps(a, odd, b));
    }
}

// RB consecutive rows; sc/bi hold each row's fp32 scales/biases at [i * groups + g].
template <int G, int RB>
void affine4_block(const uint8_t* q0, int64_t row_bytes, int64_t groups, const float* xp, const float* sc,
                   const float* bi, float* y) {
    const __m512 iota = iota16();
    __m512 acc[RB][2];
    for (int i = 0; i < RB; ++i) acc[i][0] = acc[i][1] = _mm512_setzero_ps();
    for (int64_t g = 0; g < groups; ++g) {
        __m512 lut[RB];
        for (int i = 0; i < RB; ++i)
            lut[i] = _mm512_fmadd_ps(iota, _mm512_set1_ps(sc[i * groups + g]), _mm512_set1_ps(bi[i * groups + g]));
        for (int j = 0; j < G / 32; ++j) {
            const float* xb = xp + g * G + j * 32;
            const __m512 x0 = _mm512_loadu_ps(xb), x1 = _mm512_loadu_ps(xb + 16);
            for (int i = 0; i < RB; ++i) {
                const auto* p = reinterpret_cast<const __m128i*>(q0 + i * row_bytes + g * (G / 2) + j * 16);
                const __m512i v = _mm512_cvtepu8_epi32(_mm_loadu_si128(p));
                acc[i][0] = _mm512_fmadd_ps(_mm512_permutexvar_ps(v, lut[i]), x0, acc[i][0]);
                acc[i][1] = _mm512_fmadd_ps(_mm512_permutexvar_ps(_mm512_srli_epi32(v, 4), lut[i]), x1, acc[i][1]);
            }
        }
    }
    for (int i = 0; i < RB; ++i) y[i] = _mm512_reduce_add_ps(_mm512_add_ps(acc[i][0], acc[i][1]));
}

// ---- n == 1, affine 8-bit ----

template <int G, int RB>
void affine8_block(const uint8_t* q0, int64_t row_bytes, int64_t groups, const float* x, const float* sc,
                   const float* bi, float* y) {
    __m512 acc[RB][2];
    for (int i = 0; i < RB; ++i) acc[i][0] = acc[i][1] = _mm512_setzero_ps();
    for (int64_t g = 0; g < groups; ++g) {
        __m512 s[RB], b[RB];
        for (int i = 0; i < RB; ++i) {
            s[i] = _mm512_set1_ps(sc[i * groups + g]);
            b[i] = _mm512_set1_ps(bi[i * groups + g]);
        }
        for (int j = 0; j < G / 16; ++j) {
            const __m512 xv = _mm512_loadu_ps(x + g * G + j * 16);
            for (int i = 0; i < RB; ++i) {
                const auto* p = reinterpret_cast<const __m128i*>(q0 + i * row_bytes + g * G + j * 16);
                const __m512 qv = _mm512_cvtepi32_ps(_mm512_cvtepu8_epi32(_mm_loadu_si128(p)));
                acc[i][j & 1] = _mm512_fmadd_ps(_mm512_fmadd_ps(qv, s[i], b[i]), xv, acc[i][j & 1]);
            }
        }
    }
    for (int i = 0; i < RB; ++i) y[i] = _mm512_reduce_add_ps(_mm512_add_ps(acc[i][0], acc[i][1]));
}

// Rows are short (1 KiB for 2048 4-bit columns), too short for the hardware prefetcher to ramp up
// on each; the matrix is one contiguous stream, so fetch the block kPrefetchBlocks ahead.
constexpr int64_t kPrefetchBlocks = 2;

void prefetch_ahead(const Matrix& w, const uint8_t* base, int64_t row_bytes, int64_t groups, int64_t row, int64_t end) {
    if (row + 4 > end) return;
    const uint8_t* p = base + row * row_bytes;
    for (int64_t off = 0; off < 4 * row_bytes; off += 64) _mm_prefetch(reinterpret_cast<const char*>(p + off), _MM_HINT_T0);
    const int64_t pb = groups * 4 * int64_t(dtype_size(w.scale_dtype));
    const auto* s = static_cast<const uint8_t*>(w.scales) + row * groups * int64_t(dtype_size(w.scale_dtype));
    const auto* b = static_cast<const uint8_t*>(w.biases) + row * groups * int64_t(dtype_size(w.scale_dtype));
    for (int64_t off = 0; off < pb; off += 64) {
        _mm_prefetch(reinterpret_cast<const char*>(s + off), _MM_HINT_T0);
        _mm_prefetch(reinterpret_cast<const char*>(b + off), _MM_HINT_T0);
    }
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
        prefetch_ahead(w, base, row_bytes, groups, r + 4 * kPrefetchBlocks, r1);
        for (int i = 0; i < 4; ++i) avx512_load_params(w, r + i, groups, sc + i * groups, bi + i * groups);
        Block4(base + r * row_bytes, row_bytes, groups, x, sc, bi, y + r);
    }
    for (; r < r1; ++r) {
        avx512_load_params(w, r, groups, sc, bi);
        Block1(base + r * row_bytes, row_bytes, groups, x, sc, bi, y + r);
    }
}

template <int G>
void affine4_matvec(const Matrix& w, const float* xp, float* y, int64_t r0, int64_t r1) {
    affine_matvec<G, affine4_block<G, 4>, affine4_block<G, 1>>(w, xp, y, r0, r1);
}

template <int G>
void affine8_matvec(const Matrix& w, const float* x, float* y, int64_t r0, int64_t r1) {
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
        tiled_matmul<V512>(w, a.x, a.n, a.y, r0, r1);
        return;
    }
    switch (w.format) {
        case WeightFormat::F32: dense_matvec<V512, LoadF32<V512>>(w, a.x, a.y, r0, r1); return;
        case WeightFormat::BF16: dense_matvec<V512, LoadBf16<V512>>(w, a.x, a.y, r0, r1); return;
        case WeightFormat::F16: dense_matvec<V512, LoadF16<V512>>(w, a.x, a.y, r0, r1); return;
        case WeightFormat::Affine: break;
    }
    if (w.bits == 4) {
        switch (w.group_size) {
            case 32: affine4_matvec<32>(w, a.xprep, a.y, r0, r1); return;
            case 64: affine4_matvec<64>(w, a.xprep, a.y, r0, r1); return;
            default: affine4_matvec<128>(w, a.xprep, a.y, r0, r1); return;
        }
    }
    if (w.bits == 8) {
        switch (w.group_size) {
            case 32: affine8_matvec<32>(w, a.x, a.y, r0, r1); return;
            case 64: affine8_matvec<64>(w, a.x, a.y, r0, r1); return;
            default: affine8_matvec<128>(w, a.x, a.y, r0, r1); return;
        }
    }
    generic_matvec<V512>(w, a.x, a.y, r0, r1);
}

}  // namespace

const IsaKernels& avx512_kernels() {
    static const IsaKernels k{prep_floats, prepare, rows};
    return k;
}

}  // namespace flashmoe::cpu
