// The scalar reference kernels: simple enough to be obviously right, fp32 accumulation in column
// order. Every SIMD kernel is tested against these; they stay forever.
#include "kernels/cpu/kernels_internal.h"
#include "util/half.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <vector>

namespace flashmoe::cpu {

namespace {

// Memcpy loads: weight views may sit at any byte offset inside a mapped file.
uint16_t load_u16(const void* base, int64_t index) {
    uint16_t v;
    std::memcpy(&v, static_cast<const uint8_t*>(base) + index * 2, 2);
    return v;
}

float load_f32(const void* base, int64_t index) {
    float v;
    std::memcpy(&v, static_cast<const uint8_t*>(base) + index * 4, 4);
    return v;
}

float load_scalar(const void* base, DType dtype, int64_t index) {
    switch (dtype) {
        case DType::BF16: return bf16_to_float(load_u16(base, index));
        case DType::F16: return f16_to_float(load_u16(base, index));
        default: return load_f32(base, index);  // check_matrix allows only bf16, f16, f32
    }
}

// Code of column `col` in a little-endian bit stream of `bits`-bit codes (bits <= 8, so a code
// spans at most two bytes).
uint32_t extract_code(const uint8_t* row, int64_t col, int bits) {
    int64_t bit = col * bits;
    int64_t byte = bit >> 3;
    int shift = int(bit & 7);
    uint32_t v = row[byte];
    if (shift + bits > 8) v |= uint32_t(row[byte + 1]) << 8;
    return (v >> shift) & ((1u << bits) - 1u);
}

size_t prep_floats(const Matrix&, int64_t) { return 0; }
void prepare(const Matrix&, const float*, int64_t, float*) {}

void rows(const KernelArgs& a, int64_t row_begin, int64_t row_end) {
    const Matrix& w = *a.w;
    std::vector<float> wrow(size_t(w.cols));
    for (int64_t r = row_begin; r < row_end; ++r) {
        dequantize_row_ref(w, r, wrow.data());
        for (int64_t t = 0; t < a.n; ++t) {
            const float* xt = a.x + t * w.cols;
            float acc = 0.0f;
            for (int64_t c = 0; c < w.cols; ++c) acc += wrow[size_t(c)] * xt[c];
            a.y[t * w.rows + r] = acc;
        }
    }
}

// ---- int8 activations (MatmulActivations::Int8), the reference ----
//
// Per token, `prepare` stores [cols int8 codes, padded to whole floats | d per group | sum of the
// codes per group (as float, exact)]; `rows` forms y = sum_g s d idot + b d isum with the integer
// dot product idot exact and the rest in fp32, groups in column order.

int64_t q8_token_floats(const Matrix& w) { return (w.cols + 3) / 4 + 2 * (w.cols / w.group_size); }

size_t q8_prep_floats(const Matrix& w, int64_t n) {
    return uses_int8_activations(w) ? size_t(n * q8_token_floats(w)) : 0;
}

void q8_prepare(const Matrix& w, const float* x, int64_t n, float* prep) {
    if (!uses_int8_activations(w)) return;
    const int64_t cols = w.cols, G = w.group_size, groups = cols / G;
    for (int64_t t = 0; t < n; ++t) {
        float* base = prep + t * q8_token_floats(w);
        auto* q = reinterpret_cast<int8_t*>(base);
        float* d = base + (cols + 3) / 4;
        float* isum = d + groups;
        const float* xt = x + t * cols;
        for (int64_t g = 0; g < groups; ++g) {
            float amax = 0.0f;
            for (int64_t c = g * G; c < (g + 1) * G; ++c) amax = std::max(amax, std::fabs(xt[c]));
            const float inv = amax > 0.0f ? 127.0f / amax : 0.0f;
            int32_t sum = 0;
            for (int64_t c = g * G; c < (g + 1) * G; ++c) {
                const float v = std::nearbyint(xt[c] * inv);  // half to even (default rounding mode)
                const int32_t qi = int32_t(std::clamp(v, -127.0f, 127.0f));
                q[c] = int8_t(qi);
                sum += qi;
            }
            d[g] = amax / 127.0f;
            isum[g] = float(sum);
        }
    }
}

void q8_rows(const KernelArgs& a, int64_t row_begin, int64_t row_end) {
    const Matrix& w = *a.w;
    if (!uses_int8_activations(w)) {
        rows(a, row_begin, row_end);
        return;
    }
    const int64_t cols = w.cols, G = w.group_size, groups = cols / G;
    const uint8_t* data = static_cast<const uint8_t*>(w.data);
    std::vector<int32_t> codes(static_cast<size_t>(cols));
    for (int64_t r = row_begin; r < row_end; ++r) {
        const uint8_t* row = data + r * int64_t(w.row_bytes());
        for (int64_t c = 0; c < cols; ++c) codes[size_t(c)] = int32_t(extract_code(row, c, w.bits));
        for (int64_t t = 0; t < a.n; ++t) {
            const float* base = a.xprep + t * q8_token_floats(w);
            const auto* q = reinterpret_cast<const int8_t*>(base);
            const float* d = base + (cols + 3) / 4;
            const float* isum = d + groups;
            float acc = 0.0f;
            for (int64_t g = 0; g < groups; ++g) {
                int32_t idot = 0;
                for (int64_t c = g * G; c < (g + 1) * G; ++c) idot += codes[size_t(c)] * int32_t(q[c]);
                const float s = load_scalar(w.scales, w.scale_dtype, r * groups + g);
                const float b = load_scalar(w.biases, w.scale_dtype, r * groups + g);
                acc += s * d[g] * float(idot);
                acc += b * d[g] * isum[g];
            }
            a.y[t * w.rows + r] = acc;
        }
    }
}

}  // namespace

const IsaKernels& scalar_q8_kernels() {
    static const IsaKernels k{q8_prep_floats, q8_prepare, q8_rows};
    return k;
}

void dequantize_row_ref(const Matrix& w, int64_t row, float* out) {
    const int64_t cols = w.cols;
    switch (w.format) {
        case WeightFormat::F32:
            std::memcpy(out, static_cast<const uint8_t*>(w.data) + row * cols * 4, size_t(cols) * 4);
            return;
        case WeightFormat::F16:
            for (int64_t c = 0; c < cols; ++c) out[c] = f16_to_float(load_u16(w.data, row * cols + c));
            return;
        case WeightFormat::BF16:
            for (int64_t c = 0; c < cols; ++c) out[c] = bf16_to_float(load_u16(w.data, row * cols + c));
            return;
        case WeightFormat::Affine: {
            const uint8_t* q = static_cast<const uint8_t*>(w.data) + row * int64_t(w.row_bytes());
            const int64_t groups = cols / w.group_size;
            for (int64_t g = 0; g < groups; ++g) {
                float scale = load_scalar(w.scales, w.scale_dtype, row * groups + g);
                float bias = load_scalar(w.biases, w.scale_dtype, row * groups + g);
                for (int64_t c = g * w.group_size; c < (g + 1) * w.group_size; ++c)
                    out[c] = scale * float(extract_code(q, c, w.bits)) + bias;
            }
            return;
        }
    }
}

const IsaKernels& scalar_kernels() {
    static const IsaKernels k{prep_floats, prepare, rows};
    return k;
}

}  // namespace flashmoe::cpu
