#include "model/state.h"

#include <algorithm>

namespace flashmoe {

SequenceState::SequenceState(const ModelConfig& c) {
    layers.resize(size_t(c.num_layers));
    for (int64_t i = 0; i < c.num_layers; ++i) {
        if (c.layer_kinds[size_t(i)] != LayerKind::DeltaNet) continue;
        auto& L = layers[size_t(i)];
        L.conv.assign(size_t((c.linear_conv_kernel - 1) * c.linear_conv_dim()), 0.0f);
        L.recurrent.assign(size_t(c.linear_num_value_heads * c.linear_key_head_dim * c.linear_value_head_dim), 0.0f);
    }
}

void SequenceState::reset() {
    position = 0;
    for (auto& L : layers) {
        L.keys.clear();
        L.values.clear();
        std::fill(L.conv.begin(), L.conv.end(), 0.0f);
        std::fill(L.recurrent.begin(), L.recurrent.end(), 0.0f);
    }
}

size_t SequenceState::bytes() const {
    size_t n = 0;
    for (auto& L : layers) n += (L.keys.capacity() + L.values.capacity() + L.conv.size() + L.recurrent.size()) * 4;
    return n;
}

}  // namespace flashmoe
