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

// Whether the work before the event's last record has completed (a never-recorded event has).
bool event_done(const Event& e) {
    const cudaError_t r = cudaEventQuery(e.get());
    if (r == cudaErrorNotReady) {
        (void)cudaGetLastError();  // not an error: keep it out of the next launch check
        return false;
    }
    CUDA_CHECK(r);
    return true;
}

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
    t.arrival.resize(device ? t.capacity : 0);
    t.unchecked.assign(device ? t.capacity : 0, false);
    t.guessed.assign(device ? t.capacity : 0, false);
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

Event& ExpertCache::arrival(size_t vram_slot) {
    if (!vram_.arrival[vram_slot]) vram_.arrival[vram_slot] = std::make_unique<Event>();
    return *vram_.arrival[vram_slot];
}

bool ExpertCache::take_slot(Tier& t, size_t* out) {
    if (!t.free_slots.empty()) {
        *out = t.free_slots.back();
        t.free_slots.pop_back();
        return true;
    }
    if (t.lru.empty()) return false;
    const size_t s = t.lru.front();
    evict(t, s);
    *out = s;
    return true;
}

bool ExpertCache::take_idle_vram_slot(size_t* out) {
    if (vram_.free_slots.empty() && vram_.lru.empty()) return false;
    const size_t next = vram_.free_slots.empty() ? vram_.lru.front() : vram_.free_slots.back();
    const auto& last_use = vram_.event[next];
    if (last_use && !event_done(*last_use)) return false;
    return take_slot(vram_, out);
}

void ExpertCache::evict(Tier& t, size_t s) {
    t.lru.erase(t.lru_pos[s]);
    t.in_lru[s] = false;
    t.index.erase(t.key[s]);
    t.key[s] = -1;
    if (t.device) {
        // Whatever is copied in next is queued behind the prefetch's copy and waited for by the
        // wave that uses it.
        t.unchecked[s] = false;
        t.guessed[s] = false;
    }
}

void ExpertCache::publish(Tier& t, size_t s, int64_t k) {
    t.key[s] = k;
    t.index[k] = s;
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

void ExpertCache::copy_in(const LayerLayout& L, size_t vs, size_t hs, bool slot_idle) {
    if (!slot_idle) CUDA_CHECK(cudaStreamWaitEvent(copy_.get(), event(vram_, vs).get(), 0));  // its last use
    CUDA_CHECK(cudaMemcpyAsync(slot_ptr(vram_, vs), slot_ptr(host_, hs), L.bytes, cudaMemcpyHostToDevice, copy_.get()));
    CUDA_CHECK(cudaEventRecord(event(host_, hs).get(), copy_.get()));
    stats_.bytes_to_device += L.bytes;
}

void ExpertCache::load_from_source(int64_t layer, std::span<const int32_t> ids, std::span<const size_t> vslots) {
    const LayerLayout& L = layouts_[size_t(layer)];
    source_.with_experts(layer, ids, [&](size_t j, const ExpertWeights& w) {
        LayerLayout got = layout_of(w);
        for (size_t m = 0; m < 3; ++m) {
            const MatLayout &a = got.mats[m], &b = L.mats[m];
            if (a.format != b.format || a.rows != b.rows || a.cols != b.cols || a.bits != b.bits ||
                a.group != b.group || a.scale_dtype != b.scale_dtype) {
                fail(ErrorKind::BadModel, "expert {} of layer {} is stored unlike expert 0 of its layer", ids[j], layer);
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
        publish(host_, hs, key(layer, ids[j]));
        touch(host_, hs);
        copy_in(L, vslots[j], hs);
    });
}

void ExpertCache::run(int64_t layer, std::span<const int32_t> ids, const WaveFn& run_wave) {
    const LayerLayout& L = layouts_[size_t(layer)];
    stats_.requests += ids.size();

    // Sort the requests: ready in VRAM, prefetched but still arriving, missing.
    std::vector<size_t> slot_of(ids.size(), 0);
    std::vector<size_t> ready, arriving, missing;
    for (size_t i = 0; i < ids.size(); ++i) {
        auto it = vram_.index.find(key(layer, ids[i]));
        if (it == vram_.index.end()) {
            missing.push_back(i);
            continue;
        }
        const size_t s = it->second;
        slot_of[i] = s;
        ++stats_.vram_hits;
        bool in_flight = false;
        if (vram_.unchecked[s]) {
            in_flight = !event_done(arrival(s));
            if (!in_flight) vram_.unchecked[s] = false;
        }
        if (vram_.guessed[s]) {
            vram_.guessed[s] = false;
            ++stats_.prefetch_used;
            if (in_flight) ++stats_.prefetch_late;
        }
        (in_flight ? arriving : ready).push_back(i);
    }
    // Guesses not asked for are the first to be evicted (from here on, by this layer's misses).
    for (size_t s : guesses_) {
        if (!vram_.guessed[s]) continue;  // asked for, or evicted since
        vram_.guessed[s] = false;
        if (vram_.in_lru[s]) {
            vram_.lru.erase(vram_.lru_pos[s]);
            vram_.lru_pos[s] = vram_.lru.insert(vram_.lru.begin(), s);
        }
    }
    guesses_.clear();

    // Slots held by this call are unpinned when their wave has been enqueued, or on a failure (a
    // slot that never got its expert goes back to the free list).
    struct Held {
        ExpertCache& cache;
        std::vector<size_t>& slot_of;
        std::vector<bool> held;
        void hold(size_t i) {
            cache.pin(cache.vram_, slot_of[i]);
            held[i] = true;
        }
        void release(size_t i) {
            held[i] = false;
            cache.unpin(cache.vram_, slot_of[i]);
        }
        ~Held() {
            for (size_t i = 0; i < held.size(); ++i)
                if (held[i]) cache.unpin(cache.vram_, slot_of[i]);
        }
    } held{*this, slot_of, std::vector<bool>(ids.size(), false)};
    for (size_t i : ready) held.hold(i);
    for (size_t i : arriving) held.hold(i);

    // Misses take slots and start their copies from the pinned tier before anything is launched;
    // source reads (which block) wait until the waves already possible are launched.
    std::vector<size_t> from_host, from_source, later;
    auto take = [&](size_t i, std::vector<size_t>& host_list, std::vector<size_t>& source_list) {
        size_t vs;
        if (!take_slot(vram_, &vs)) return false;
        slot_of[i] = vs;
        held.hold(i);
        auto h = host_.index.find(key(layer, ids[i]));
        if (h != host_.index.end()) {
            copy_in(L, vs, h->second);
            touch(host_, h->second);
            ++stats_.host_hits;
            host_list.push_back(i);
        } else {
            ++stats_.source_loads;
            source_list.push_back(i);
        }
        return true;
    };
    for (size_t i : missing)
        if (!later.empty() || !take(i, from_host, from_source)) later.push_back(i);

    auto launch = [&](const std::vector<size_t>& which) {
        if (which.empty()) return;
        std::vector<ExpertMats> m(which.size());
        for (size_t j = 0; j < which.size(); ++j) m[j] = mats(layer, slot_of[which[j]]);
        run_wave(which, m);
        for (size_t i : which) {
            CUDA_CHECK(cudaEventRecord(event(vram_, slot_of[i]).get(), compute_));
            held.release(i);
        }
    };
    // The compute stream waits for everything queued on the copy stream so far; the copied
    // experts become hits for later calls.
    auto arrived = [&](const std::vector<size_t>& copied) {
        CUDA_CHECK(cudaEventRecord(copies_done_.get(), copy_.get()));
        CUDA_CHECK(cudaStreamWaitEvent(compute_, copies_done_.get(), 0));
        for (size_t i : copied) publish(vram_, slot_of[i], key(layer, ids[i]));
    };
    auto read_source = [&](const std::vector<size_t>& list) {
        if (list.empty()) return;
        std::vector<int32_t> src_ids(list.size());
        std::vector<size_t> vslots(list.size());
        for (size_t j = 0; j < list.size(); ++j) {
            src_ids[j] = ids[list[j]];
            vslots[j] = slot_of[list[j]];
        }
        load_from_source(layer, src_ids, vslots);
    };

    launch(ready);
    if (!arriving.empty() || !from_host.empty()) {
        // Prefetches were queued before these copies: one wait covers both.
        if (!from_host.empty()) arrived(from_host);
        else
            for (size_t i : arriving) CUDA_CHECK(cudaStreamWaitEvent(compute_, arrival(slot_of[i]).get(), 0));
        for (size_t i : arriving) vram_.unchecked[slot_of[i]] = false;
        std::vector<size_t> wave = arriving;
        wave.insert(wave.end(), from_host.begin(), from_host.end());
        launch(wave);
    }
    if (!from_source.empty()) {
        read_source(from_source);
        arrived(from_source);
        launch(from_source);
    }
    // VRAM too small for the layer: further waves, each as large as the slots allow.
    size_t pos = 0;
    while (pos < later.size()) {
        std::vector<size_t> wave, wave_source;
        while (pos < later.size() && take(later[pos], wave, wave_source)) ++pos;
        if (wave.empty() && wave_source.empty()) fail(ErrorKind::Internal, "expert VRAM cache has no free slot");
        read_source(wave_source);
        wave.insert(wave.end(), wave_source.begin(), wave_source.end());
        arrived(wave);
        launch(wave);
    }
}

void ExpertCache::prefetch(int64_t layer, std::span<const int32_t> ids) {
    const LayerLayout& L = layouts_[size_t(layer)];
    std::vector<int32_t> elsewhere;
    bool room = true;
    for (int32_t e : ids) {
        const int64_t k = key(layer, e);
        if (auto it = vram_.index.find(k); it != vram_.index.end()) {
            touch(vram_, it->second);  // not evicted by the guesses after it
            continue;
        }
        auto h = host_.index.find(k);
        if (h == host_.index.end()) {
            elsewhere.push_back(e);
            continue;
        }
        size_t vs;
        if (!room || !(room = take_idle_vram_slot(&vs))) continue;
        copy_in(L, vs, h->second, true);
        touch(host_, h->second);
        CUDA_CHECK(cudaEventRecord(arrival(vs).get(), copy_.get()));
        publish(vram_, vs, k);
        vram_.unchecked[vs] = true;
        vram_.guessed[vs] = true;
        touch(vram_, vs);
        guesses_.push_back(vs);
        ++stats_.prefetched;
    }
    if (!elsewhere.empty() && source_.wants_prefetch()) source_.prefetch(layer, elsewhere);
}

}  // namespace flashmoe::cuda
