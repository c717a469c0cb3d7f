#include "model/cuda/expert_cache.h"

#include "util/error.h"

#include <algorithm>
#include <cstring>

namespace flashmoe::cuda {

namespace {

constexpr size_t kAlign = 256;
constexpr size_t kSlotsPerChunk = 64;

size_t align_up(size_t v, size_t a) { return (v + a - 1) / a * a; }

int32_t dformat(WeightFormat f) {
    switch (f) {
        case WeightFormat::F32: return kF32;
        case WeightFormat::F16: return kF16;
        case WeightFormat::BF16: return kBF16;
        case WeightFormat::Affine: return kAffine;
    }
    return kF32;
}

int32_t dscale(DType d) { return d == DType::BF16 ? kBF16 : d == DType::F16 ? kF16 : kF32; }

}  // namespace

ExpertCache::LayerLayout ExpertCache::layout_of(const ExpertWeights& w) const {
    LayerLayout L;
    const Matrix* ms[3] = {&w.gate, &w.up, &w.down};
    size_t off = 0;
    for (int i = 0; i < 3; ++i) {
        const Matrix& m = *ms[i];
        MatLayout& d = L.mats[size_t(i)];
        d.format = dformat(m.format);
        d.bits = m.bits;
        d.group = m.group_size;
        d.scale_dtype = dscale(m.scale_dtype);
        d.rows = m.rows;
        d.cols = m.cols;
        d.row_bytes = int64_t(m.row_bytes());
        d.data_bytes = m.data_bytes();
        d.scale_bytes = m.scale_bytes();
        d.data_offset = off;
        off = align_up(off + d.data_bytes, kAlign);
        if (d.scale_bytes) {
            d.scales_offset = off;
            off = align_up(off + d.scale_bytes, kAlign);
            d.biases_offset = off;
            off = align_up(off + d.scale_bytes, kAlign);
        }
    }
    L.bytes = off;
    return L;
}

ExpertCache::ExpertCache(const ModelConfig& config, ExpertSource& source, const ExpertCacheOptions& options,
                         cudaStream_t compute)
    : num_layers_(config.num_layers), num_experts_(config.num_experts), source_(source), compute_(compute) {
    // Each layer's layout, from its expert 0 (layers may be quantised differently).
    layouts_.resize(size_t(num_layers_));
    const int32_t first = 0;
    for (int64_t l = 0; l < num_layers_; ++l) {
        source_.with_experts(l, std::span<const int32_t>(&first, 1), [&](size_t, const ExpertWeights& w) {
            layouts_[size_t(l)] = layout_of(w);
        });
        slot_bytes_ = std::max(slot_bytes_, layouts_[size_t(l)].bytes);
    }
    slot_bytes_ = align_up(std::max<size_t>(slot_bytes_, 1), 4096);
    init_tier(vram_, options.vram_bytes, true);
    init_tier(host_, options.host_bytes, false);
}

ExpertCache::~ExpertCache() {
    // Copies may still read host slots or write VRAM slots: let them finish before freeing.
    cudaStreamSynchronize(copy_.get());
    cudaStreamSynchronize(compute_);
}

void ExpertCache::init_tier(Tier& t, size_t budget, bool device) {
    const size_t total = size_t(num_layers_ * num_experts_);
    t.device = device;
    t.capacity = std::clamp<size_t>(budget / slot_bytes_, 1, std::max<size_t>(total, 1));
    t.key.assign(t.capacity, -1);
    t.pins.assign(t.capacity, 0);
    t.lru_pos.resize(t.capacity);
    t.in_lru.assign(t.capacity, false);
    t.event.resize(t.capacity);
    t.free_slots.resize(t.capacity);
    for (size_t i = 0; i < t.capacity; ++i) t.free_slots[i] = t.capacity - 1 - i;
}

uint8_t* ExpertCache::slot_ptr(Tier& t, size_t slot) {
    const size_t chunk = slot / kSlotsPerChunk;
    const size_t per = std::min(kSlotsPerChunk, t.capacity - chunk * kSlotsPerChunk);
    if (t.device) {
        if (t.device_chunks.size() <= chunk) t.device_chunks.resize(chunk + 1);
        if (!t.device_chunks[chunk].get()) t.device_chunks[chunk] = DeviceBuffer(per * slot_bytes_);
        return t.device_chunks[chunk].as<uint8_t>() + (slot % kSlotsPerChunk) * slot_bytes_;
    }
    if (t.host_chunks.size() <= chunk) t.host_chunks.resize(chunk + 1);
    if (!t.host_chunks[chunk].get()) t.host_chunks[chunk] = PinnedBuffer(per * slot_bytes_);
    return t.host_chunks[chunk].as<uint8_t>() + (slot % kSlotsPerChunk) * slot_bytes_;
}

Event& ExpertCache::event(Tier& t, size_t slot) {
    if (!t.event[slot]) t.event[slot] = std::make_unique<Event>();
    return *t.event[slot];
}

bool ExpertCache::take_slot(Tier& t, size_t* out) {
    if (!t.free_slots.empty()) {
        *out = t.free_slots.back();
        t.free_slots.pop_back();
        return true;
    }
    if (t.lru.empty()) return false;
    const size_t s = t.lru.front();
    t.lru.pop_front();
    t.in_lru[s] = false;
    t.index.erase(t.key[s]);
    t.key[s] = -1;
    *out = s;
    return true;
}

void ExpertCache::pin(Tier& t, size_t s) {
    if (t.in_lru[s]) {
        t.lru.erase(t.lru_pos[s]);
        t.in_lru[s] = false;
    }
    ++t.pins[s];
}

void ExpertCache::unpin(Tier& t, size_t s) {
    if (--t.pins[s] > 0) return;
    if (t.key[s] < 0) {
        t.free_slots.push_back(s);
        return;
    }
    t.lru_pos[s] = t.lru.insert(t.lru.end(), s);
    t.in_lru[s] = true;
}

ExpertMats ExpertCache::mats(int64_t layer, size_t vram_slot) {
    const LayerLayout& L = layouts_[size_t(layer)];
    const uint8_t* base = slot_ptr(vram_, vram_slot);
    DMat out[3];
    for (size_t i = 0; i < 3; ++i) {
        const MatLayout& m = L.mats[i];
        DMat& d = out[i];
        d.format = m.format;
        d.bits = m.bits;
        d.group = m.group;
        d.scale_dtype = m.scale_dtype;
        d.rows = m.rows;
        d.cols = m.cols;
        d.row_bytes = m.row_bytes;
        d.data = base + m.data_offset;
        d.scales = m.scale_bytes ? base + m.scales_offset : nullptr;
        d.biases = m.scale_bytes ? base + m.biases_offset : nullptr;
    }
    return {out[0], out[1], out[2]};
}

void ExpertCache::load_all() {
    if (!holds_all()) fail(ErrorKind::Internal, "load_all: the VRAM budget cannot hold every expert");
    std::vector<int32_t> ids(static_cast<size_t>(num_experts_));
    for (int64_t e = 0; e < num_experts_; ++e) ids[size_t(e)] = int32_t(e);
    for (int64_t l = 0; l < num_layers_; ++l) run(l, ids, [](std::span<const size_t>, std::span<const ExpertMats>) {});
    CUDA_CHECK(cudaStreamSynchronize(copy_.get()));
}

ExpertMats ExpertCache::resident(int64_t layer, int64_t expert) {
    auto it = vram_.index.find(key(layer, expert));
    if (it == vram_.index.end()) fail(ErrorKind::Internal, "expert {} of layer {} is not resident", expert, layer);
    return mats(layer, it->second);
}

void ExpertCache::run(int64_t layer, std::span<const int32_t> ids, const WaveFn& run_wave) {
    const LayerLayout& L = layouts_[size_t(layer)];
    stats_.requests += ids.size();

    // Experts already in VRAM first: their wave computes while the rest are read and copied.
    std::vector<size_t> order;
    order.reserve(ids.size());
    for (size_t i = 0; i < ids.size(); ++i)
        if (vram_.index.count(key(layer, ids[i]))) order.push_back(i);
    for (size_t i = 0; i < ids.size(); ++i)
        if (!vram_.index.count(key(layer, ids[i]))) order.push_back(i);

    size_t pos = 0;
    while (pos < order.size()) {
        std::vector<size_t> which, slots;
        struct Load { size_t request, vslot; };
        std::vector<Load> from_host_tier, from_source;
        std::vector<size_t> host_slots;
        bool wave_of_hits = false;
        while (pos < order.size() && which.size() < vram_.capacity) {
            const size_t i = order[pos];
            const int64_t k = key(layer, ids[i]);
            auto it = vram_.index.find(k);
            if (which.empty()) wave_of_hits = it != vram_.index.end();
            if ((it != vram_.index.end()) != wave_of_hits) break;  // hits and misses in separate waves
            size_t vs;
            if (it != vram_.index.end()) {
                vs = it->second;
                pin(vram_, vs);
                ++stats_.vram_hits;
            } else {
                if (!take_slot(vram_, &vs)) break;  // every slot is pinned by this wave
                pin(vram_, vs);
                auto hit = host_.index.find(k);
                if (hit != host_.index.end()) {
                    from_host_tier.push_back({i, vs});
                    host_slots.push_back(hit->second);
                    ++stats_.host_hits;
                } else {
                    from_source.push_back({i, vs});
                    ++stats_.source_loads;
                }
            }
            which.push_back(i);
            slots.push_back(vs);
            ++pos;
        }
        if (which.empty()) fail(ErrorKind::Internal, "expert VRAM cache has no free slot");

        // The wave's slots are unpinned at the end of this iteration, also on a failure (a VRAM slot
        // that never got its expert goes back to the free list).
        struct Unwind {
            ExpertCache* self;
            std::vector<size_t>* vslots;
            std::vector<size_t>* hslots;
            ~Unwind() {
                for (size_t s : *vslots) self->unpin(self->vram_, s);
                for (size_t s : *hslots) self->unpin(self->host_, s);
            }
        } unwind{this, &slots, &host_slots};
        auto copy_in = [&](size_t vs, size_t hs) {
            Event& last_use = event(vram_, vs);
            CUDA_CHECK(cudaStreamWaitEvent(copy_.get(), last_use.get(), 0));
            CUDA_CHECK(cudaMemcpyAsync(slot_ptr(vram_, vs), slot_ptr(host_, hs), L.bytes, cudaMemcpyHostToDevice,
                                       copy_.get()));
            CUDA_CHECK(cudaEventRecord(event(host_, hs).get(), copy_.get()));
            stats_.bytes_to_device += L.bytes;
        };
        for (size_t hs : host_slots) pin(host_, hs);
        for (size_t j = 0; j < from_host_tier.size(); ++j) copy_in(from_host_tier[j].vslot, host_slots[j]);
        if (!from_source.empty()) {
            std::vector<int32_t> src_ids(from_source.size());
            for (size_t j = 0; j < from_source.size(); ++j) src_ids[j] = ids[from_source[j].request];
            source_.with_experts(layer, src_ids, [&](size_t j, const ExpertWeights& w) {
                LayerLayout got = layout_of(w);
                for (size_t m = 0; m < 3; ++m) {
                    const MatLayout &a = got.mats[m], &b = L.mats[m];
                    if (a.format != b.format || a.rows != b.rows || a.cols != b.cols || a.bits != b.bits ||
                        a.group != b.group || a.scale_dtype != b.scale_dtype) {
                        fail(ErrorKind::BadModel, "expert {} of layer {} is stored unlike expert 0 of its layer",
                             src_ids[j], layer);
                    }
                }
                size_t hs;
                if (!take_slot(host_, &hs)) fail(ErrorKind::Internal, "pinned expert cache has no free slot");
                CUDA_CHECK(cudaEventSynchronize(event(host_, hs).get()));  // its last copy has left
                uint8_t* dst = slot_ptr(host_, hs);
                const Matrix* ms[3] = {&w.gate, &w.up, &w.down};
                for (size_t m = 0; m < 3; ++m) {
                    const MatLayout& d = L.mats[m];
                    std::memcpy(dst + d.data_offset, ms[m]->data, d.data_bytes);
                    if (d.scale_bytes) {
                        std::memcpy(dst + d.scales_offset, ms[m]->scales, d.scale_bytes);
                        std::memcpy(dst + d.biases_offset, ms[m]->biases, d.scale_bytes);
                    }
                }
                host_.key[hs] = key(layer, src_ids[j]);
                host_.index[host_.key[hs]] = hs;
                pin(host_, hs);
                copy_in(from_source[j].vslot, hs);
                host_slots.push_back(hs);
            });
        }
        if (!wave_of_hits) {
            for (size_t j = 0; j < which.size(); ++j) {
                const int64_t k = key(layer, ids[which[j]]);
                vram_.key[slots[j]] = k;
                vram_.index[k] = slots[j];
            }
            CUDA_CHECK(cudaEventRecord(copies_done_.get(), copy_.get()));
            CUDA_CHECK(cudaStreamWaitEvent(compute_, copies_done_.get(), 0));
        }

        std::vector<ExpertMats> m(which.size());
        for (size_t j = 0; j < which.size(); ++j) m[j] = mats(layer, slots[j]);
        run_wave(which, m);
        for (size_t vs : slots) CUDA_CHECK(cudaEventRecord(event(vram_, vs).get(), compute_));
    }
}

}  // namespace flashmoe::cuda
