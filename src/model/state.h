// The per-sequence state of a Qwen3.5-MoE forward: the KV cache of each attention layer and the
// convolution window and recurrent matrix of each Gated DeltaNet layer. Owned by one sequence;
// copyable, so a prefix can be snapshotted (the DeltaNet state cannot be rewound, only restored).
#pragma once

#include "model/config.h"

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

struct SequenceState {
    int64_t position = 0;  // tokens consumed so far
    std::vector<LayerState> layers;

    explicit SequenceState(const ModelConfig& config);
    SequenceState() = default;
    void reset();
    size_t bytes() const;  // memory held by caches and states
};

}  // namespace flashmoe
