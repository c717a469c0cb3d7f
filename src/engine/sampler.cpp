#include "engine/sampler.h"

#include "util/error.h"

#include <algorithm>
#include <cmath>
#include <numeric>

namespace flashmoe {

void SamplingParams::validate() const {
    if (!(temperature >= 0) || !std::isfinite(temperature)) fail(ErrorKind::BadInput, "temperature must be >= 0, got {}", temperature);
    if (!(top_p > 0 && top_p <= 1)) fail(ErrorKind::BadInput, "top_p must be in (0, 1], got {}", top_p);
    if (top_k < 0) fail(ErrorKind::BadInput, "top_k must be >= 0, got {}", top_k);
    if (!(min_p >= 0 && min_p <= 1)) fail(ErrorKind::BadInput, "min_p must be in [0, 1], got {}", min_p);
    if (!(repetition_penalty > 0) || !std::isfinite(repetition_penalty)) {
        fail(ErrorKind::BadInput, "repetition_penalty must be > 0, got {}", repetition_penalty);
    }
    if (!std::isfinite(presence_penalty) || std::fabs(presence_penalty) > 2) {
        fail(ErrorKind::BadInput, "presence_penalty must be in [-2, 2], got {}", presence_penalty);
    }
    if (!std::isfinite(frequency_penalty) || std::fabs(frequency_penalty) > 2) {
        fail(ErrorKind::BadInput, "frequency_penalty must be in [-2, 2], got {}", frequency_penalty);
    }
}

Sampler::Sampler(const SamplingParams& params) : params_(params), rng_(params.seed) { params_.validate(); }

void Sampler::add_prompt(std::span<const int32_t> tokens) { seen_.insert(seen_.end(), tokens.begin(), tokens.end()); }

int32_t Sampler::sample(std::span<float> logits) {
    const int64_t V = int64_t(logits.size());
    if (params_.repetition_penalty != 1.0f) {
        seen_mask_.assign(size_t(V), 0);
        for (int32_t t : seen_)
            if (t >= 0 && t < V) seen_mask_[size_t(t)] = 1;
        for (int64_t i = 0; i < V; ++i) {
            if (!seen_mask_[size_t(i)]) continue;
            float& l = logits[size_t(i)];
            l = l > 0 ? l / params_.repetition_penalty : l * params_.repetition_penalty;
        }
    }
    for (auto& [t, count] : generated_counts_) {
        if (t < 0 || t >= V) continue;
        logits[size_t(t)] -= params_.presence_penalty + params_.frequency_penalty * float(count);
    }

    int32_t chosen;
    if (params_.temperature == 0.0f) {
        chosen = int32_t(std::max_element(logits.begin(), logits.end()) - logits.begin());
    } else {
        std::vector<int32_t> idx(static_cast<size_t>(V));
        std::iota(idx.begin(), idx.end(), 0);
        auto by_logit = [&](int32_t a, int32_t b) {
            return logits[size_t(a)] > logits[size_t(b)] || (logits[size_t(a)] == logits[size_t(b)] && a < b);
        };
        const double mx = *std::max_element(logits.begin(), logits.end());
        auto weight = [&](int32_t token) { return std::exp((double(logits[size_t(token)]) - mx) / params_.temperature); };
        int64_t keep = V;
        std::vector<double> p;
        auto fill_probs = [&](int64_t count, double norm) {
            p.resize(size_t(count));
            for (int64_t i = 0; i < count; ++i) p[size_t(i)] = weight(idx[size_t(i)]) / norm;
        };
        if (params_.top_k > 0 && params_.top_k < V) {
            keep = params_.top_k;
            std::partial_sort(idx.begin(), idx.begin() + keep, idx.end(), by_logit);
            double sum = 0;
            for (int64_t i = 0; i < keep; ++i) sum += weight(idx[size_t(i)]);
            fill_probs(keep, sum);
        } else {
            double z = 0;
            for (int64_t i = 0; i < V; ++i) z += weight(int32_t(i));
            if (params_.top_p >= 1.0f && params_.min_p <= 0.0f) {
                fill_probs(V, z);  // every token stays: no order needed
            } else {
                // Sort only as long a head of the vocabulary as the top-p / min-p cuts can reach.
                for (keep = std::min<int64_t>(V, 64);; keep = std::min<int64_t>(V, keep * 4)) {
                    std::partial_sort(idx.begin(), idx.begin() + keep, idx.end(), by_logit);
                    fill_probs(keep, z);
                    if (keep == V) break;
                    const double mass = std::accumulate(p.begin(), p.end(), 0.0);
                    const bool top_p_inside = params_.top_p >= 1.0f || mass >= params_.top_p;
                    const bool min_p_inside = params_.min_p <= 0.0f || p.back() < p[0] * params_.min_p;
                    if (top_p_inside && min_p_inside) break;
                }
            }
        }
        if (params_.top_p < 1.0f) {
            double cum = 0;
            int64_t cut = keep;
            for (int64_t i = 0; i < keep; ++i) {
                cum += p[size_t(i)];
                if (cum >= params_.top_p) {
                    cut = i + 1;
                    break;
                }
            }
            keep = cut;
        }
        if (params_.min_p > 0.0f) {
            const double floor = p[0] * params_.min_p;
            int64_t cut = 1;
            while (cut < keep && p[size_t(cut)] >= floor) ++cut;
            keep = cut;
        }
        double total = 0;
        for (int64_t i = 0; i < keep; ++i) total += p[size_t(i)];
        double r = std::uniform_real_distribution<double>(0.0, total)(rng_);
        chosen = idx[size_t(keep - 1)];
        for (int64_t i = 0; i < keep; ++i) {
            r -= p[size_t(i)];
            if (r < 0) {
                chosen = idx[size_t(i)];
                break;
            }
        }
    }
    generated_counts_[chosen]++;
    seen_.push_back(chosen);
    return chosen;
}

}  // namespace flashmoe
