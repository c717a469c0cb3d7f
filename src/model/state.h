// The CPU forward's per-sequence state: the KV cache of each attention layer and the convolution
// window and recurrent matrix of each Gated DeltaNet layer, in host memory.
#pragma once

#include "model/config.h"
#include "model/model_runner.h"

#include <cstdint>
#include <vector>

namespace flashmoe {

struct LayerState {
    // Attention: [position][kv_head][head_dim], grown as tokens arrive.
    std::vector<float> keys;
    std::vector<float> values;
    // DeltaNet: the last kernel-1 raw qkv inputs [kernel-1][conv_dim] (oldest first), and the
    // recurrent state [value_heads][key_head_dim][value_head_dim].
    std::vector<float> conv;
    std::vector<float> recurrent;
};

class SequenceState final : public ModelState {
public:
    explicit SequenceState(const ModelConfig& config);

    int64_t position() const override { return position_; }
    void reset() override;
    std::unique_ptr<StateSnapshot> snapshot() const override;
    void restore(const StateSnapshot& snapshot) override;
    size_t bytes() const override;

    std::vector<LayerState> layers;
    void advance(int64_t tokens) { position_ += tokens; }

private:
    int64_t kv_row_ = 0;  // floats per position in a layer's key (and value) cache
    int64_t position_ = 0;
};

}  // namespace flashmoe
