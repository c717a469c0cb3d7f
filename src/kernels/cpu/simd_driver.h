// Loop structure shared by the SIMD kernels, written once over a vector-traits type V that each
// ISA TU (matmul_avx2.cpp, matmul_avx512.cpp) defines in its own anonymous namespace. Include
// only from such a TU: everything here has internal linkage, so each ISA gets its own copy
// compiled with its own flags (see kernels_internal.h for why that matters).
//
// V provides: F (vector of W floats), W, zero(), set1(f), load(p), load_tail(p, n) (lanes >= n are
// zero, no read past p + n), store(p, v), fmadd(a, b, c), add(a, b), hsum(v), dense weight loads
// load_bf16 / load_f16 (+ _tail), and dequant_row(w, row, out) -> bool (false: no fast path, use
// the reference dequantisation).
//
// Thread-safety: pure functions over their arguments; scratch is per call.
#pragma once

#include "kernels/cpu/kernels_internal.h"

// GCC 12 warns inside its own avx512fintrin.h (bug 105593: _mm512_undefined_* self-initialise);
// silence that for the header's lines only.
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wuninitialized"
#if !defined(__clang__)
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#endif
#include <immintrin.h>
#pragma GCC diagnostic pop

#include <cstdint>
#include <cstring>

namespace flashmoe::cpu {
namespace {

// Local helpers instead of std::min / util/half.h: see kernels_internal.h (no shared inline code).
inline int64_t imin(int64_t a, int64_t b) { return a < b ? a : b; }
inline float bf16_bits_to_float(uint16_t h) {
    uint32_t bits = uint32_t(h) << 16;
    float f;
    std::memcpy(&f, &bits, 4);
    return f;
}
inline float f16_bits_to_float(uint16_t h) { return _cvtsh_ss(h); }  // F16C: every SIMD TU has it

// Dense weight loaders: row pointer + column -> W fp32 weights.
template <class V>
struct LoadF32 {
    static constexpr int64_t kBytes = 4;
    static typename V::F full(const uint8_t* row, int64_t c) { return V::load(reinterpret_cast<const float*>(row) + c); }
    static typename V::F tail(const uint8_t* row, int64_t c, int n) {
        return V::load_tail(reinterpret_cast<const float*>(row) + c, n);
    }
};
template <class V>
struct LoadBf16 {
    static constexpr int64_t kBytes = 2;
    static typename V::F full(const uint8_t* row, int64_t c) { return V::load_bf16(row + c * 2); }
    static typename V::F tail(const uint8_t* row, int64_t c, int n) { return V::load_bf16_tail(row + c * 2, n); }
};
template <class V>
struct LoadF16 {
    static constexpr int64_t kBytes = 2;
    static typename V::F full(const uint8_t* row, int64_t c) { return V::load_f16(row + c * 2); }
    static typename V::F tail(const uint8_t* row, int64_t c, int n) { return V::load_f16_tail(row + c * 2, n); }
};

// n == 1 over a dense matrix: RB rows share each x load, two accumulators per row hide FMA latency.
template <class V, class Load, int RB>
void dense_matvec_block(const uint8_t* w0, int64_t row_stride, const float* x, int64_t cols, float* y) {
    using F = typename V::F;
    constexpr int W = V::W;
    F acc[RB][2];
    for (int i = 0; i < RB; ++i) acc[i][0] = acc[i][1] = V::zero();
    int64_t c = 0;
    for (; c + 2 * W <= cols; c += 2 * W) {
        F x0 = V::load(x + c), x1 = V::load(x + c + W);
        for (int i = 0; i < RB; ++i) {
            acc[i][0] = V::fmadd(Load::full(w0 + i * row_stride, c), x0, acc[i][0]);
            acc[i][1] = V::fmadd(Load::full(w0 + i * row_stride, c + W), x1, acc[i][1]);
        }
    }
    for (; c < cols; c += W) {
        const int n = int(imin(W, cols - c));
        F xv = n == W ? V::load(x + c) : V::load_tail(x + c, n);
        for (int i = 0; i < RB; ++i)
            acc[i][0] = V::fmadd(n == W ? Load::full(w0 + i * row_stride, c) : Load::tail(w0 + i * row_stride, c, n),
                                 xv, acc[i][0]);
    }
    for (int i = 0; i < RB; ++i) y[i] = V::hsum(V::add(acc[i][0], acc[i][1]));
}

template <class V, class Load>
void dense_matvec(const Matrix& w, const float* x, float* y, int64_t r0, int64_t r1) {
    const auto* base = static_cast<const uint8_t*>(w.data);
    const int64_t stride = w.cols * Load::kBytes;
    int64_t r = r0;
    for (; r + 4 <= r1; r += 4) dense_matvec_block<V, Load, 4>(base + r * stride, stride, x, w.cols, y + r);
    for (; r < r1; ++r) dense_matvec_block<V, Load, 1>(base + r * stride, stride, x, w.cols, y + r);
}

template <class V>
void dequant_row_any(const Matrix& w, int64_t row, float* out) {
    if (!V::dequant_row(w, row, out)) dequantize_row_ref(w, row, out);
}

// n == 1 for formats without a dedicated kernel: dequantise a row into fp32, then a SIMD dot.
template <class V>
void generic_matvec(const Matrix& w, const float* x, float* y, int64_t r0, int64_t r1) {
    ScratchFloats buf(size_t(w.cols));
    for (int64_t r = r0; r < r1; ++r) {
        dequant_row_any<V>(w, r, buf.data());
        const auto* row = reinterpret_cast<const uint8_t*>(buf.data());
        dense_matvec_block<V, LoadF32<V>, 1>(row, 0, x, w.cols, y + r);
    }
}

// ---- n > 1: dequantise a tile of rows once, reuse it for every token ----

constexpr int64_t kTileRows = 16;  // rows dequantised together (matmul.cpp chunks are multiples)
constexpr int64_t kTileCols = 1024;  // reduction slice: keeps 4 weight rows + 4 token rows near L1/L2
constexpr int kMr = 4;               // micro-tile: rows
constexpr int kNr = 4;               // micro-tile: tokens

// y[t, i] += sum_{k in [k0, k1)} wt[i, k] * x[t, k] for MR rows and NR tokens. wt rows are
// zero-padded to a multiple of W; x reads stop at `cols`.
template <class V, int MR, int NR>
void micro_tile(const float* wt, int64_t ldw, const float* x, int64_t ldx, int64_t k0, int64_t k1, int64_t cols,
                float* y, int64_t ldy) {
    using F = typename V::F;
    constexpr int W = V::W;
    F acc[MR][NR];
    for (int i = 0; i < MR; ++i)
        for (int t = 0; t < NR; ++t) acc[i][t] = V::zero();
    const int64_t kend = imin(k1, cols);
    int64_t k = k0;
    for (; k + W <= kend; k += W) {
        F xv[NR];
        for (int t = 0; t < NR; ++t) xv[t] = V::load(x + t * ldx + k);
        for (int i = 0; i < MR; ++i) {
            F wv = V::load(wt + i * ldw + k);
            for (int t = 0; t < NR; ++t) acc[i][t] = V::fmadd(wv, xv[t], acc[i][t]);
        }
    }
    if (k < kend) {
        const int n = int(kend - k);
        F xv[NR];
        for (int t = 0; t < NR; ++t) xv[t] = V::load_tail(x + t * ldx + k, n);
        for (int i = 0; i < MR; ++i) {
            F wv = V::load(wt + i * ldw + k);  // padded with zeros up to W
            for (int t = 0; t < NR; ++t) acc[i][t] = V::fmadd(wv, xv[t], acc[i][t]);
        }
    }
    for (int i = 0; i < MR; ++i)
        for (int t = 0; t < NR; ++t) y[t * ldy + i] += V::hsum(acc[i][t]);
}

template <class V, int MR>
void micro_tile_n(int nr, const float* wt, int64_t ldw, const float* x, int64_t ldx, int64_t k0, int64_t k1,
                  int64_t cols, float* y, int64_t ldy) {
    switch (nr) {
        case 4: micro_tile<V, MR, 4>(wt, ldw, x, ldx, k0, k1, cols, y, ldy); break;
        case 3: micro_tile<V, MR, 3>(wt, ldw, x, ldx, k0, k1, cols, y, ldy); break;
        case 2: micro_tile<V, MR, 2>(wt, ldw, x, ldx, k0, k1, cols, y, ldy); break;
        default: micro_tile<V, MR, 1>(wt, ldw, x, ldx, k0, k1, cols, y, ldy); break;
    }
}

template <class V>
void tiled_matmul(const Matrix& w, const float* x, int64_t n, float* y, int64_t r0, int64_t r1) {
    constexpr int W = V::W;
    const int64_t cols = w.cols;
    const int64_t ldw = (cols + W - 1) / W * W;
    ScratchFloats tile(size_t(kTileRows * ldw));  // zeroed: the padding columns stay 0
    for (int64_t rb = r0; rb < r1; rb += kTileRows) {
        const int64_t mr_total = imin(kTileRows, r1 - rb);
        for (int64_t i = 0; i < mr_total; ++i) dequant_row_any<V>(w, rb + i, tile.data() + i * ldw);
        for (int64_t t = 0; t < n; ++t)
            for (int64_t i = 0; i < mr_total; ++i) y[t * w.rows + rb + i] = 0.0f;
        for (int64_t k0 = 0; k0 < cols; k0 += kTileCols) {
            const int64_t k1 = imin(cols, k0 + kTileCols);
            for (int64_t t0 = 0; t0 < n; t0 += kNr) {
                const int nr = int(imin(kNr, n - t0));
                for (int64_t i0 = 0; i0 < mr_total; i0 += kMr) {
                    const float* wt = tile.data() + i0 * ldw;
                    const float* xt = x + t0 * cols;
                    float* yt = y + t0 * w.rows + rb + i0;
                    switch (imin(kMr, mr_total - i0)) {
                        case 4: micro_tile_n<V, 4>(nr, wt, ldw, xt, cols, k0, k1, cols, yt, w.rows); break;
                        case 3: micro_tile_n<V, 3>(nr, wt, ldw, xt, cols, k0, k1, cols, yt, w.rows); break;
                        case 2: micro_tile_n<V, 2>(nr, wt, ldw, xt, cols, k0, k1, cols, yt, w.rows); break;
                        default: micro_tile_n<V, 1>(nr, wt, ldw, xt, cols, k0, k1, cols, yt, w.rows); break;
                    }
                }
            }
        }
    }
}

// Scales or biases of one row, converted to fp32 (affine kernels broadcast them from here).
inline void load_group_params(const Matrix& w, int64_t row, int64_t groups, float* scales, float* biases) {
    const size_t es = dtype_size(w.scale_dtype);
    const auto* s = static_cast<const uint8_t*>(w.scales) + size_t(row * groups) * es;
    const auto* b = static_cast<const uint8_t*>(w.biases) + size_t(row * groups) * es;
    for (int64_t g = 0; g < groups; ++g) {
        if (w.scale_dtype == DType::F32) {
            std::memcpy(&scales[g], s + g * 4, 4);
            std::memcpy(&biases[g], b + g * 4, 4);
        } else {
            uint16_t hs, hb;
            std::memcpy(&hs, s + g * 2, 2);
            std::memcpy(&hb, b + g * 2, 2);
            scales[g] = w.scale_dtype == DType::BF16 ? bf16_bits_to_float(hs) : f16_bits_to_float(hs);
            biases[g] = w.scale_dtype == DType::BF16 ? bf16_bits_to_float(hb) : f16_bits_to_float(hb);
        }
    }
}

}  // namespace
}  // namespace flashmoe::cpu
