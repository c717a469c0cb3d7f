// Helpers for the CPU kernel tests: random weight matrices in every format that own their storage
// (at a chosen misalignment), fresh seeds, and the error bound the kernels are held to.
#pragma once

#include "kernels/cpu/matmul.h"
#include "ops/tensor.h"
#include "util/half.h"

#include <gtest/gtest.h>

#include <cmath>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <random>
#include <string>
#include <utility>
#include <vector>

namespace flashmoe::test {

// A fresh seed per run (so repeated runs explore new data); FLASHMOE_TEST_SEED replays a failure.
inline uint64_t test_seed() {
    if (const char* env = std::getenv("FLASHMOE_TEST_SEED")) return std::strtoull(env, nullptr, 10);
    static const uint64_t seed = (uint64_t(std::random_device{}()) << 32) ^ std::random_device{}();
    return seed;
}

struct MatrixSpec {
    WeightFormat format = WeightFormat::F32;
    int64_t rows = 0, cols = 0;
    int bits = 0, group = 0;
    DType scale_dtype = DType::BF16;
    size_t misalign = 0;  // bytes added to every pointer's 64-byte-aligned base

    std::string name() const {
        std::string s = std::string(weight_format_name(format)) + " [" + std::to_string(rows) + ", " +
                         std::to_string(cols) + "]";
        if (format == WeightFormat::Affine)
            s += " bits " + std::to_string(bits) + " group " + std::to_string(group) + " scales " +
                 std::string(dtype_name(scale_dtype));
        return s + " misalign " + std::to_string(misalign);
    }
};

// Storage at (64-byte aligned base + offset): deliberately misaligned views.
struct Buffer {
    std::vector<uint8_t> bytes;
    size_t offset = 0;
    void resize(size_t n, size_t misalign) {
        bytes.assign(n + 128, 0);
        auto base = reinterpret_cast<uintptr_t>(bytes.data());
        offset = ((base + 63) & ~uintptr_t(63)) - base + misalign;
    }
    uint8_t* data() { return bytes.data() + offset; }
};

inline void store_scalar(uint8_t* p, DType dtype, float v) {
    if (dtype == DType::F32) {
        std::memcpy(p, &v, 4);
    } else {
        uint16_t h = dtype == DType::BF16 ? float_to_bf16(v) : float_to_f16(v);
        std::memcpy(p, &h, 2);
    }
}

inline float load_scalar(const uint8_t* p, DType dtype) {
    if (dtype == DType::F32) {
        float v;
        std::memcpy(&v, p, 4);
        return v;
    }
    uint16_t h;
    std::memcpy(&h, p, 2);
    return dtype == DType::BF16 ? bf16_to_float(h) : f16_to_float(h);
}

// A weight matrix with random contents (never all zeros) that owns its storage.
struct RandomMatrix {
    MatrixSpec spec;
    Buffer data, scales, biases;
    Matrix view;

    RandomMatrix(const MatrixSpec& s, std::mt19937_64& rng) : spec(s) {
        view.format = s.format;
        view.rows = s.rows;
        view.cols = s.cols;
        view.bits = s.bits;
        view.group_size = s.group;
        view.scale_dtype = s.scale_dtype;
        data.resize(view.data_bytes(), s.misalign);
        std::normal_distribution<float> normal(0.0f, 0.5f);
        if (s.format == WeightFormat::Affine) {
            std::uniform_int_distribution<int> byte(0, 255);
            for (size_t i = 0; i < view.data_bytes(); ++i) data.data()[i] = uint8_t(byte(rng));
            const int64_t n = s.rows * (s.cols / s.group);
            const size_t es = dtype_size(s.scale_dtype);
            scales.resize(size_t(n) * es, s.misalign);
            biases.resize(size_t(n) * es, s.misalign);
            // Like MLX: scale ~ range / (2^bits - 1) of a group, bias ~ its minimum.
            std::uniform_real_distribution<float> scale(0.2f, 1.0f), bias(-0.6f, -0.2f);
            const float levels = float((1 << s.bits) - 1);
            for (int64_t i = 0; i < n; ++i) {
                store_scalar(scales.data() + i * es, s.scale_dtype, scale(rng) / levels);
                store_scalar(biases.data() + i * es, s.scale_dtype, bias(rng));
            }
            view.scales = scales.data();
            view.biases = biases.data();
        } else {
            const size_t count = size_t(s.rows * s.cols);
            for (size_t i = 0; i < count; ++i) {
                float v = normal(rng);
                if (s.format == WeightFormat::F32) {
                    std::memcpy(data.data() + i * 4, &v, 4);
                } else {
                    store_scalar(data.data() + i * 2, s.format == WeightFormat::BF16 ? DType::BF16 : DType::F16, v);
                }
            }
        }
        view.data = data.data();
    }

    // (scale, bias) of column c of `row` (affine only).
    std::pair<float, float> group_params(int64_t row, int64_t c) const {
        const int64_t g = row * (spec.cols / spec.group) + c / spec.group;
        const size_t es = dtype_size(spec.scale_dtype);
        return {load_scalar(scales.bytes.data() + scales.offset + size_t(g) * es, spec.scale_dtype),
                load_scalar(biases.bytes.data() + biases.offset + size_t(g) * es, spec.scale_dtype)};
    }

    // |scale * q| + |bias| for column c of `row` (the magnitude that the weight's own rounding
    // scales with); |w| for dense formats.
    std::vector<float> weight_magnitudes(int64_t row, const std::vector<float>& w) const {
        std::vector<float> m(size_t(spec.cols));
        for (int64_t c = 0; c < spec.cols; ++c) {
            if (spec.format != WeightFormat::Affine) {
                m[size_t(c)] = std::fabs(w[size_t(c)]);
                continue;
            }
            const int64_t g = row * (spec.cols / spec.group) + c / spec.group;
            const size_t es = dtype_size(spec.scale_dtype);
            const float b = load_scalar(biases.bytes.data() + biases.offset + size_t(g) * es, spec.scale_dtype);
            m[size_t(c)] = std::fabs(w[size_t(c)] - b) + std::fabs(b);
        }
        return m;
    }
};

// Activations [n, cols] at a misaligned address (one float past a 64-byte boundary).
struct Activations {
    Buffer buf;
    float* x = nullptr;
    Activations(int64_t n, int64_t cols, std::mt19937_64& rng) {
        buf.resize(size_t(n * cols) * 4, 4);
        x = reinterpret_cast<float*>(buf.data());
        std::normal_distribution<float> normal(0.0f, 1.0f);
        for (int64_t i = 0; i < n * cols; ++i) x[i] = normal(rng);
    }
};

// Error bound for one output y = sum_c w_c x_c computed in fp32 by a kernel whose longest chain of
// dependent additions is `chain`, compared with the exact sum of the reference weights:
//   |y - exact| <= eps * (chain * sum_c |w_c x_c| + 2 * sum_c m_c |x_c|)
// The first term is the classic bound for a chain of fp32 additions; the second covers a weight
// that a kernel dequantises with one rounding fewer (fma(scale, q, bias)) than the reference.
inline double fp32_bound(double chain, double sum_abs_wx, double sum_abs_mx) {
    const double eps = std::ldexp(1.0, -24);  // unit roundoff of fp32
    return eps * (chain * sum_abs_wx + 2.0 * sum_abs_mx) + 1e-30;
}

}  // namespace flashmoe::test
