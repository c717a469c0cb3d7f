// Decode (n == 1) on affine 4-bit weights with int8-quantised activations, AVX-512 BW. Opt-in
// (FLASHMOE_MATMUL_ACT=int8): it trades the reference's fp32 activations for ~2x fewer
// instructions per weight, which is what decode on few cores is bound by.
//
// Scheme. x is quantised once per call in blocks of 32 columns: d_b = max|x| / 127,
// xq = round(x / d_b) in [-127, 127], x^ = d_b xq. For a group g with scale s and bias b, writing
// s q + b = s (q - 7.5) + (b + 7.5 s) so that the rounding of x meets the centred code:
//   sum_c (s q_c + b) x_c  ~=  s sum_c q_c x^_c  +  b sum_c x_c  +  7.5 s sum_c (x_c - x^_c)
// The integer dot products (4-bit codes as u8 times xq as s8, vpmaddubsw + vpmaddwd, exact in
// int16/int32: |sum| <= 8 * 15 * 127) are converted to fp32 per 8 columns and scaled by s * d_b;
// the other two terms use fp32 group sums of x and of its rounding residual, made once per call.
//
// Error budget (tested): |x_c - x^_c| <= d_b / 2, hence
//   |y - y_exact| <= sum_c |s (q_c - 7.5)| * d_b(c) / 2  +  fp32 rounding of the sums,
// i.e. at most 7.5 / 254 ~ 3% of sum_c |s| max_b|x| in the worst case; measured 0.34% rms of y on
// uniform random codes and Gaussian x (~1% without the centring), the same order as llama.cpp's
// q8 activations.
// Every other format and n > 1 use the exact AVX-512 kernels.
//
// Layout of x per 128-column chunk: 64 bytes of xq at even columns, 64 at odd ones (matching the
// low/high nibbles of 64 code bytes), then 16 fp32 lane scales (d of the block each int32 lane
// covers); after all chunks, fp32 sums of x per group, then of x - x^ per group. Columns past
// `cols` are zero.
#include "kernels/cpu/avx512_params.h"
#include "kernels/cpu/simd_driver.h"

namespace flashmoe::cpu {
namespace {

struct Q8Layout {
    int64_t chunks, groups;
    int64_t bytes_floats() const { return chunks * 32; }  // 128 int8 per chunk = 32 floats of storage
    int64_t dscale_offset() const { return bytes_floats(); }
    int64_t xsum_offset() const { return bytes_floats() + chunks * 16; }
    int64_t xres_offset() const { return xsum_offset() + groups; }
    int64_t total() const { return xres_offset() + groups; }
};

Q8Layout layout_of(const Matrix& w) { return {(w.cols + 127) / 128, w.cols / w.group_size}; }

bool uses_q8(const Matrix& w, int64_t n) { return n == 1 && w.format == WeightFormat::Affine && w.bits == 4; }

size_t prep_floats(const Matrix& w, int64_t n) {
    if (!uses_q8(w, n)) return avx512_kernels().prep_floats(w, n);
    return size_t(layout_of(w).total());
}

void prepare(const Matrix& w, const float* x, int64_t n, float* prep) {
    if (!uses_q8(w, n)) {
        avx512_kernels().prepare(w, x, n, prep);
        return;
    }
    const Q8Layout L = layout_of(w);
    auto* q = reinterpret_cast<int8_t*>(prep);
    float* dscale = prep + L.dscale_offset();
    float* xsum = prep + L.xsum_offset();
    float* xres = prep + L.xres_offset();
    for (int64_t k = 0; k < L.chunks * 128; ++k) q[k] = 0;
    for (int64_t k = 0; k < L.chunks * 16; ++k) dscale[k] = 0.0f;
    for (int64_t blk = 0; blk < w.cols / 32; ++blk) {
        const float* xb = x + blk * 32;
        const __m512 a = _mm512_loadu_ps(xb), b = _mm512_loadu_ps(xb + 16);
        const float amax = _mm512_reduce_max_ps(_mm512_max_ps(_mm512_abs_ps(a), _mm512_abs_ps(b)));
        const float d = amax / 127.0f;
        const float inv = amax > 0.0f ? 127.0f / amax : 0.0f;
        const int64_t chunk = blk / 4, sub = blk % 4;  // 4 blocks of 32 columns per chunk
        int8_t* qe = q + chunk * 128 + sub * 16;       // even columns of this block
        int8_t* qo = qe + 64;                          // odd columns
        for (int k = 0; k < 16; ++k) {
            qe[k] = int8_t(_mm_cvtss_si32(_mm_set_ss(xb[2 * k] * inv)));  // round to nearest even
            qo[k] = int8_t(_mm_cvtss_si32(_mm_set_ss(xb[2 * k + 1] * inv)));
        }
        for (int k = 0; k < 4; ++k) dscale[chunk * 16 + sub * 4 + k] = d;
    }
    for (int64_t g = 0; g < L.groups; ++g) {
        float s = 0.0f, res = 0.0f;
        for (int64_t c = g * w.group_size; c < (g + 1) * w.group_size; ++c) {
            const int64_t chunk = c / 128, within = c % 128;
            const int8_t xq = q[chunk * 128 + (within % 2) * 64 + within / 2];
            s += x[c];
            res += x[c] - dscale[chunk * 16 + within / 8] * float(xq);
        }
        xsum[g] = s;
        xres[g] = res;
    }
}

template <int G, int RB>
void q8_block(const uint8_t* codes, int64_t row_bytes, const Q8Layout& L, const float* prep, const float* sc,
              const float* bi, int64_t cols, float* y) {
    const auto* q = reinterpret_cast<const int8_t*>(prep);
    const float* dscale = prep + L.dscale_offset();
    const float* xsum = prep + L.xsum_offset();
    const float* xres = prep + L.xres_offset();
    const __m512i low = _mm512_set1_epi8(0x0f);
    const __m512i ones = _mm512_set1_epi16(1);
    // lane k covers columns 8k .. 8k+7 of the chunk, i.e. group (8k) / G within it
    const __m512i group_of_lane = _mm512_srli_epi32(
        _mm512_setr_epi32(0, 8, 16, 24, 32, 40, 48, 56, 64, 72, 80, 88, 96, 104, 112, 120),
        G == 32 ? 5 : G == 64 ? 6 : 7);
    __m512 acc[RB];
    for (int i = 0; i < RB; ++i) acc[i] = _mm512_setzero_ps();
    for (int64_t ch = 0; ch < L.chunks; ++ch) {
        const int64_t left = cols - ch * 128;
        const __mmask64 m = left >= 128 ? ~__mmask64(0) : (__mmask64(1) << (left / 2)) - 1;
        const __m512i xe = _mm512_loadu_si512(q + ch * 128);
        const __m512i xo = _mm512_loadu_si512(q + ch * 128 + 64);
        const __m512 dv = _mm512_loadu_ps(dscale + ch * 16);
        const int64_t g0 = ch * 128 / G;
        for (int i = 0; i < RB; ++i) {
            const __m512i v = _mm512_maskz_loadu_epi8(m, codes + i * row_bytes + ch * 64);
            const __m512i lo = _mm512_and_si512(v, low);
            const __m512i hi = _mm512_and_si512(_mm512_srli_epi16(v, 4), low);
            const __m512i p16 = _mm512_add_epi16(_mm512_maddubs_epi16(lo, xe), _mm512_maddubs_epi16(hi, xo));
            const __m512 sum = _mm512_cvtepi32_ps(_mm512_madd_epi16(p16, ones));
            // the chunk's (up to 4) group scales, spread over its lanes; sc is padded by 4 floats
            const __m512 s4 = _mm512_castps128_ps512(_mm_loadu_ps(sc + i * L.groups + g0));
            const __m512 sv = _mm512_permutexvar_ps(group_of_lane, s4);
            acc[i] = _mm512_fmadd_ps(sum, _mm512_mul_ps(sv, dv), acc[i]);
        }
    }
    for (int i = 0; i < RB; ++i) {
        // sum_g b_g xsum_g + 7.5 s_g xres_g
        const __m512 centre = _mm512_set1_ps(7.5f);
        __m512 bacc = _mm512_setzero_ps();
        for (int64_t g = 0; g < L.groups; g += 16) {
            const int64_t left = L.groups - g;
            const __mmask16 m = left >= 16 ? __mmask16(0xffff) : __mmask16((1u << left) - 1u);
            const __m512 s = _mm512_maskz_loadu_ps(m, sc + i * L.groups + g);
            bacc = _mm512_fmadd_ps(_mm512_maskz_loadu_ps(m, bi + i * L.groups + g), _mm512_maskz_loadu_ps(m, xsum + g),
                                   bacc);
            bacc = _mm512_fmadd_ps(_mm512_mul_ps(s, centre), _mm512_maskz_loadu_ps(m, xres + g), bacc);
        }
        y[i] = _mm512_reduce_add_ps(acc[i]) + _mm512_reduce_add_ps(bacc);
    }
}

template <int G>
void q8_matvec(const Matrix& w, const float* prep, float* y, int64_t r0, int64_t r1) {
    const Q8Layout L = layout_of(w);
    const int64_t row_bytes = int64_t(w.row_bytes());
    const auto* base = static_cast<const uint8_t*>(w.data);
    ScratchFloats params(size_t(8 * L.groups + 8));  // + padding read by the 4-wide scale loads
    float* sc = params.data();
    float* bi = params.data() + 4 * L.groups + 4;
    int64_t r = r0;
    for (; r + 4 <= r1; r += 4) {
        if (r + 8 <= r1)  // the next block: rows are too short for the hardware prefetcher
            for (int64_t off = 0; off < 4 * row_bytes; off += 64)
                _mm_prefetch(reinterpret_cast<const char*>(base + (r + 4) * row_bytes + off), _MM_HINT_T0);
        for (int i = 0; i < 4; ++i) avx512_load_params(w, r + i, L.groups, sc + i * L.groups, bi + i * L.groups);
        q8_block<G, 4>(base + r * row_bytes, row_bytes, L, prep, sc, bi, w.cols, y + r);
    }
    for (; r < r1; ++r) {
        avx512_load_params(w, r, L.groups, sc, bi);
        q8_block<G, 1>(base + r * row_bytes, row_bytes, L, prep, sc, bi, w.cols, y + r);
    }
}

void rows(const KernelArgs& a, int64_t r0, int64_t r1) {
    const Matrix& w = *a.w;
    if (!uses_q8(w, a.n)) {
        avx512_kernels().rows(a, r0, r1);
        return;
    }
    switch (w.group_size) {
        case 32: q8_matvec<32>(w, a.xprep, a.y, r0, r1); return;
        case 64: q8_matvec<64>(w, a.xprep, a.y, r0, r1); return;
        default: q8_matvec<128>(w, a.xprep, a.y, r0, r1); return;
    }
}

}  // namespace

const IsaKernels& avx512_q8_kernels() {
    static const IsaKernels k{prep_floats, prepare, rows};
    return k;
}

}  // namespace flashmoe::cpu
