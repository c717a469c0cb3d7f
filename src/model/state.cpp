#include "model/state.h"

#include "util/error.h"

#include <algorithm>

namespace flashmoe {

namespace {

class CpuSnapshot final : public StateSnapshot {
public:
    int64_t position() const override { return position_; }
    size_t bytes() const override {
        size_t n = 0;
        for (auto& L : layers) n += (L.conv.size() + L.recurrent.size()) * 4;
        return n;
    }
    int64_t position_ = 0;
    std::vector<LayerState> layers;  // conv and recurrent only
};

}  // namespace

SequenceState::SequenceState(const ModelConfig& c) : kv_row_(c.num_kv_heads * c.head_dim) {
    layers.resize(size_t(c.num_layers));
    for (int64_t i = 0; i < c.num_layers; ++i) {
        if (c.layer_kinds[size_t(i)] != LayerKind::DeltaNet) continue;
        auto& L = layers[size_t(i)];
        L.conv.assign(size_t((c.linear_conv_kernel - 1) * c.linear_conv_dim()), 0.0f);
        L.recurrent.assign(size_t(c.linear_num_value_heads * c.linear_key_head_dim * c.linear_value_head_dim), 0.0f);
    }
}

void SequenceState::reset() {
    position_ = 0;
    for (auto& L : layers) {
        L.keys.clear();
        L.values.clear();
        std::fill(L.conv.begin(), L.conv.end(), 0.0f);
        std::fill(L.recurrent.begin(), L.recurrent.end(), 0.0f);
    }
}

std::unique_ptr<StateSnapshot> SequenceState::snapshot() const {
    auto s = std::make_unique<CpuSnapshot>();
    s->position_ = position_;
    s->layers.resize(layers.size());
    for (size_t i = 0; i < layers.size(); ++i) {
        s->layers[i].conv = layers[i].conv;
        s->layers[i].recurrent = layers[i].recurrent;
    }
    return s;
}

void SequenceState::restore(const StateSnapshot& snapshot) {
    auto* s = dynamic_cast<const CpuSnapshot*>(&snapshot);
    if (!s || s->layers.size() != layers.size() || s->position_ > position_) {
        fail(ErrorKind::Internal, "snapshot does not belong to this sequence");
    }
    for (size_t i = 0; i < layers.size(); ++i) {
        LayerState& L = layers[i];
        L.keys.resize(std::min(L.keys.size(), size_t(s->position_ * kv_row_)));
        L.values.resize(std::min(L.values.size(), size_t(s->position_ * kv_row_)));
        L.conv = s->layers[i].conv;
        L.recurrent = s->layers[i].recurrent;
    }
    position_ = s->position_;
}

size_t SequenceState::bytes() const {
    size_t n = 0;
    for (auto& L : layers) n += (L.keys.capacity() + L.values.capacity() + L.conv.size() + L.recurrent.size()) * 4;
    return n;
}

}  // namespace flashmoe
