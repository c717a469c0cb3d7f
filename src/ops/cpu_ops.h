// The small fp32 operations of the forward on the CPU (everything but the weight matrix products,
// which are in kernels/cpu/matmul.h). Scalar, simple, and the reference for other backends.
// Stateless and thread-safe; buffers are caller-owned and may not alias unless stated.
#pragma once

#include <cmath>
#include <cstdint>
#include <span>

namespace flashmoe::cpu {

// out[i] = x[i] / sqrt(mean(x^2) + eps) * w[i]; out may alias x.
void rmsnorm(const float* x, const float* w, int64_t n, double eps, float* out);

inline float sigmoid(float x) { return 1.0f / (1.0f + std::exp(-x)); }
inline float silu(float x) { return x / (1.0f + std::exp(-x)); }
// torch.nn.functional.softplus with beta 1 and threshold 20.
inline float softplus(float x) { return x > 20.0f ? x : std::log1p(std::exp(x)); }

// In-place softmax over n values (max-subtracted, fp32).
void softmax(float* x, int64_t n);

// x *= 1 / sqrt(sum(x^2) + eps), as transformers' l2norm for Gated DeltaNet.
void l2norm(float* x, int64_t n, float eps);

// Indices of the k largest values (descending; ties keep the lower index first).
void top_k(std::span<const float> values, int64_t k, int32_t* out_index);

// NeoX-style rotary embedding of the first `rotary_dim` dims of one head vector at `position`:
// pairs (i, i + rotary_dim/2) rotate by position * theta^(-2i/rotary_dim).
void rope(float* head, int64_t rotary_dim, int64_t position, double theta);

}  // namespace flashmoe::cpu
