// Temporary scalar-only matmul until the kernel set lands.
#include "kernels/cpu/matmul.h"

#include "util/error.h"
#include "util/half.h"
#include "util/thread_pool.h"

#include <cstring>
#include <vector>

namespace flashmoe {

Isa detected_isa() { return Isa::Scalar; }
Isa active_isa() { return Isa::Scalar; }
std::string_view isa_name(Isa) { return "scalar"; }

static float scale_at(const Matrix& w, size_t i, const void* p) {
    const uint8_t* b = static_cast<const uint8_t*>(p);
    uint16_t h;
    float f;
    switch (w.scale_dtype) {
        case DType::BF16: std::memcpy(&h, b + 2 * i, 2); return bf16_to_float(h);
        case DType::F16: std::memcpy(&h, b + 2 * i, 2); return f16_to_float(h);
        default: std::memcpy(&f, b + 4 * i, 4); return f;
    }
}

void dequantize_row(const Matrix& w, int64_t row, float* out) {
    const uint8_t* base = static_cast<const uint8_t*>(w.data) + size_t(row) * w.row_bytes();
    switch (w.format) {
        case WeightFormat::F32: std::memcpy(out, base, size_t(w.cols) * 4); return;
        case WeightFormat::BF16:
            for (int64_t c = 0; c < w.cols; ++c) {
                uint16_t h;
                std::memcpy(&h, base + 2 * c, 2);
                out[c] = bf16_to_float(h);
            }
            return;
        case WeightFormat::F16:
            for (int64_t c = 0; c < w.cols; ++c) {
                uint16_t h;
                std::memcpy(&h, base + 2 * c, 2);
                out[c] = f16_to_float(h);
            }
            return;
        case WeightFormat::Affine: {
            const int64_t groups = w.cols / w.group_size;
            for (int64_t c = 0; c < w.cols; ++c) {
                uint64_t bit = uint64_t(c) * uint64_t(w.bits);
                uint32_t word = 0;
                std::memcpy(&word, base + bit / 8, std::min<size_t>(4, w.row_bytes() - bit / 8));
                uint32_t q = (word >> (bit % 8)) & ((1u << w.bits) - 1);
                size_t g = size_t(row) * size_t(groups) + size_t(c / w.group_size);
                out[c] = scale_at(w, g, w.scales) * float(q) + scale_at(w, g, w.biases);
            }
            return;
        }
    }
}

void matmul_rows(Isa, const Matrix& w, const float* x, int64_t n, float* y, int64_t row_begin, int64_t row_end) {
    std::vector<float> row(size_t(w.cols));
    for (int64_t r = row_begin; r < row_end; ++r) {
        dequantize_row(w, r, row.data());
        for (int64_t t = 0; t < n; ++t) {
            float s = 0;
            const float* xt = x + t * w.cols;
            for (int64_t c = 0; c < w.cols; ++c) s += row[size_t(c)] * xt[c];
            y[t * w.rows + r] = s;
        }
    }
}

void matmul(const Matrix& w, const float* x, int64_t n, float* y, ThreadPool* pool) {
    if (!pool) return matmul_rows(Isa::Scalar, w, x, n, y, 0, w.rows);
    pool->parallel_for(w.rows, 16, [&](int64_t b, int64_t e) { matmul_rows(Isa::Scalar, w, x, n, y, b, e); });
}

}  // namespace flashmoe
