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
#include "model/state.h"
#include "model/weights.h"

#include <cstdint>
#include <span>
#include <vector>

namespace flashmoe {

class ThreadPool;

enum class LogitsFor { None, Last, All };

struct ForwardOptions {
    int64_t k = 0;           // routed experts per token; 0 = the config's num_experts_per_tok
    LogitsFor logits = LogitsFor::Last;
};

class Qwen35Moe {
public:
    Qwen35Moe(const ModelConfig& config, const DenseWeights& weights, ExpertSource& experts, ThreadPool* pool);

    // Runs `tokens` at positions state.position.., appends them to `state`, and writes logits:
    // [1, vocab] for LogitsFor::Last, [tokens.size(), vocab] for All, nothing for None.
    void forward(SequenceState& state, std::span<const int32_t> tokens, const ForwardOptions& options,
                 std::vector<float>* logits);

    const ModelConfig& config() const { return config_; }
    SequenceState new_state() const { return SequenceState(config_); }

private:
    void attention(int64_t layer, LayerState& st, int64_t position, int64_t n, const float* x, float* out);
    void deltanet(int64_t layer, LayerState& st, int64_t n, const float* x, float* out);
    void moe(int64_t layer, int64_t k, int64_t n, const float* x, float* out);

    const ModelConfig& config_;
    const DenseWeights& weights_;
    ExpertSource& experts_;
    ThreadPool* pool_;
};

}  // namespace flashmoe
