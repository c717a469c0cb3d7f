// The Qwen3.5-MoE forward on the CPU, written once for every size of the family: embeddings, then
// per layer RMSNorm -> Gated DeltaNet or gated attention -> residual -> RMSNorm -> sparse MoE
// (router softmax, top-k renormalised, routed experts + sigmoid-gated shared expert) -> residual,
// then the final norm and lm_head. Activations are fp32. A call consumes a batch of tokens (a whole
// prompt at once or one decode step) and appends them to the sequence state.
//
// Not thread-safe per instance (it keeps scratch statistics); separate instances may share weights.
// Bad token ids are an Error (BadInput); expert I/O failures propagate from the ExpertSource.
#pragma once

#include "model/config.h"
#include "model/experts.h"
#include "model/model_runner.h"
#include "model/state.h"
#include "model/weights.h"

#include <cstdint>
#include <span>
#include <vector>

namespace flashmoe {

class ThreadPool;

class Qwen35Moe final : public ModelRunner {
public:
    Qwen35Moe(const ModelConfig& config, const DenseWeights& weights, ExpertSource& experts, ThreadPool* pool);

    // `state` must come from new_state() of a CPU runner (Error Internal otherwise).
    void forward(ModelState& state, std::span<const int32_t> tokens, const ForwardOptions& options,
                 std::vector<float>* logits) override;

    const ModelConfig& config() const override { return config_; }
    std::unique_ptr<ModelState> new_state() const override { return std::make_unique<SequenceState>(config_); }

private:
    void attention(int64_t layer, LayerState& st, int64_t position, int64_t n, const float* x, float* out);
    void deltanet(int64_t layer, LayerState& st, int64_t n, const float* x, float* out);
    void moe(int64_t layer, int64_t k, int64_t n, const float* x, float* out);
    void prefetch_experts(int64_t layer, int64_t k, const float* x);

    const ModelConfig& config_;
    const DenseWeights& weights_;
    ExpertSource& experts_;
    ThreadPool* pool_;
};

}  // namespace flashmoe
