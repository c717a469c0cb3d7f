#include "ops/cpu_ops.h"

#include <algorithm>
#include <cmath>
#include <numeric>
#include <vector>

namespace flashmoe::cpu {

void rmsnorm(const float* x, const float* w, int64_t n, double eps, float* out) {
    double ss = 0;
    for (int64_t i = 0; i < n; ++i) ss += double(x[i]) * double(x[i]);
    float inv = float(1.0 / std::sqrt(ss / double(n) + eps));
    for (int64_t i = 0; i < n; ++i) out[i] = (x[i] * inv) * w[i];
}

void softmax(float* x, int64_t n) {
    float mx = *std::max_element(x, x + n);
    double sum = 0;
    for (int64_t i = 0; i < n; ++i) {
        x[i] = std::exp(x[i] - mx);
        sum += x[i];
    }
    float inv = float(1.0 / sum);
    for (int64_t i = 0; i < n; ++i) x[i] *= inv;
}

void l2norm(float* x, int64_t n, float eps) {
    double ss = 0;
    for (int64_t i = 0; i < n; ++i) ss += double(x[i]) * double(x[i]);
    float inv = float(1.0 / std::sqrt(ss + double(eps)));
    for (int64_t i = 0; i < n; ++i) x[i] *= inv;
}

void top_k(std::span<const float> values, int64_t k, int32_t* out_index) {
    std::vector<int32_t> idx(values.size());
    std::iota(idx.begin(), idx.end(), 0);
    std::partial_sort(idx.begin(), idx.begin() + k, idx.end(), [&](int32_t a, int32_t b) {
        return values[size_t(a)] > values[size_t(b)] || (values[size_t(a)] == values[size_t(b)] && a < b);
    });
    std::copy(idx.begin(), idx.begin() + k, out_index);
}

void rope(float* head, int64_t rotary_dim, int64_t position, double theta) {
    const int64_t half = rotary_dim / 2;
    for (int64_t i = 0; i < half; ++i) {
        // Computed as transformers does: inv_freq and the angle in fp32, cos/sin of that.
        float inv_freq = 1.0f / std::pow(float(theta), float(2 * i) / float(rotary_dim));
        float angle = float(position) * inv_freq;
        float c = std::cos(angle), s = std::sin(angle);
        float a = head[i], b = head[i + half];
        head[i] = a * c - b * s;
        head[i + half] = b * c + a * s;
    }
}

}  // namespace flashmoe::cpu
