// The CUDA backend's routed-expert hierarchy: a VRAM cache bounded by `vram_bytes`, over a pinned
// host cache bounded by `host_bytes`, over an ExpertSource (the ExpertStore's RAM cache and disk, or
// a resident checkpoint). Each tier holds whole experts (gate, up and down with their scales and
// biases) in fixed-size slots, evicting the least recently used. Misses are copied host -> device on
// a copy stream of their own; the compute stream waits on an event for exactly the copies a wave of
// experts needs, so experts already in VRAM are computed while the others are still being read or
// copied. The bytes in a VRAM slot are the bytes of the source: results do not depend on the tier
// that served an expert.
//
// Memory is allocated in chunks as slots are first used, so a generous budget costs nothing until
// the experts arrive. Not thread-safe: one forward at a time (the owning runner's). Failures: CUDA
// errors and allocation failures are Error (Internal / OutOfMemory); an expert whose shapes differ
// from its layer's first expert is Error (BadModel); source I/O errors propagate.
#pragma once

#include "kernels/cuda/cuda_util.h"
#include "kernels/cuda/dmat.h"
#include "model/config.h"
#include "model/experts.h"

#include <array>
#include <cstdint>
#include <functional>
#include <list>
#include <memory>
#include <span>
#include <unordered_map>
#include <vector>

namespace flashmoe::cuda {

struct ExpertCacheOptions {
    size_t vram_bytes = size_t(6) << 30;
    size_t host_bytes = size_t(2) << 30;  // pinned host tier
};

struct ExpertCacheStats {
    uint64_t requests = 0;
    uint64_t vram_hits = 0;
    uint64_t host_hits = 0;     // copied from the pinned host tier
    uint64_t source_loads = 0;  // fetched from the ExpertSource (its RAM cache or disk)
    uint64_t bytes_to_device = 0;  // demand copies and prefetches
    uint64_t prefetched = 0;       // experts copied to VRAM by prefetch()
    uint64_t prefetch_used = 0;    // of those, asked for by their layer (counted in vram_hits)
    uint64_t prefetch_late = 0;    // of the used, still in flight when asked for (the compute waited)
};

// The three matrices of one expert, in VRAM.
struct ExpertMats {
    DMat gate, up, down;
};

class ExpertCache {
public:
    ExpertCache(const ModelConfig& config, ExpertSource& source, const ExpertCacheOptions& options,
                cudaStream_t compute);
    ~ExpertCache();
    ExpertCache(const ExpertCache&) = delete;
    ExpertCache& operator=(const ExpertCache&) = delete;

    // Makes the experts `ids` (distinct) of `layer` available in VRAM, in waves of at most
    // vram_capacity() experts: for each wave, `run_wave(which, mats)` is called with the positions in
    // `ids` it covers and their matrices, after the compute stream has been made to wait for the
    // wave's copies. run_wave must enqueue all its use of the matrices on the compute stream before
    // returning; the slots may be reused by later waves once that work completes.
    // Waves: the experts ready in VRAM; then prefetched experts still in flight with the misses
    // found in the pinned tier (whose copies start before any wave is launched); then misses read
    // from the source; then, only when VRAM is too small for one layer, further waves of misses.
    using WaveFn = std::function<void(std::span<const size_t> which, std::span<const ExpertMats> mats)>;
    void run(int64_t layer, std::span<const int32_t> ids, const WaveFn& run_wave);

    // A guess that `ids` of `layer` will be asked for by the next run(): those in the pinned tier are
    // copied into VRAM slots whose last use has completed (never one in use, so a wrong guess costs
    // copy bandwidth, not a wait), behind the copies already queued; guesses found nowhere above the
    // source are passed to the source's own prefetch. Guesses that the next run() does not ask for
    // go to the front of the LRU. Returns at once.
    void prefetch(int64_t layer, std::span<const int32_t> ids);

    // Whether VRAM can hold every expert of the model at once; load_all() then loads them (once;
    // nothing is evicted afterwards) and resident(layer, expert) gives each one's matrices.
    bool holds_all() const { return vram_.capacity >= size_t(num_layers_ * num_experts_); }
    void load_all();
    ExpertMats resident(int64_t layer, int64_t expert);

    size_t slot_bytes() const { return slot_bytes_; }
    size_t vram_capacity() const { return vram_.capacity; }
    size_t host_capacity() const { return host_.capacity; }
    ExpertCacheStats stats() const { return stats_; }
    void reset_stats() { stats_ = {}; }

private:
    struct MatLayout {
        int32_t format = 0, bits = 0, group = 0, scale_dtype = 0;
        int64_t rows = 0, cols = 0, row_bytes = 0;
        size_t data_offset = 0, scales_offset = 0, biases_offset = 0;
        size_t data_bytes = 0, scale_bytes = 0;
    };
    struct LayerLayout {
        std::array<MatLayout, 3> mats;
        size_t bytes = 0;
    };
    // One tier: fixed-size slots in lazily allocated chunks, an LRU of unpinned occupied slots.
    struct Tier {
        bool device = false;
        size_t capacity = 0;
        std::vector<DeviceBuffer> device_chunks;
        std::vector<PinnedBuffer> host_chunks;
        std::vector<int64_t> key;  // per slot; -1 = free
        std::vector<int> pins;
        std::vector<std::list<size_t>::iterator> lru_pos;
        std::vector<bool> in_lru;
        std::vector<std::unique_ptr<Event>> event;  // VRAM: last use by compute; host: last copy out
        // VRAM only. arrival: recorded after a prefetch's copy. unchecked: the compute stream has not
        // yet waited for (or seen the end of) that copy. guessed: prefetched, not yet asked for.
        std::vector<std::unique_ptr<Event>> arrival;
        std::vector<bool> unchecked, guessed;
        std::vector<size_t> free_slots;             // descending, so that pop_back takes the lowest
        std::list<size_t> lru;
        std::unordered_map<int64_t, size_t> index;
    };

    void init_tier(Tier& t, size_t budget, bool device);
    uint8_t* slot_ptr(Tier& t, size_t slot);
    bool take_slot(Tier& t, size_t* out);  // free, or LRU unpinned evicted; false if none
    bool take_idle_vram_slot(size_t* out);   // as take_slot, but only a slot whose last use has completed
    void evict(Tier& t, size_t slot);
    void pin(Tier& t, size_t slot);
    void unpin(Tier& t, size_t slot);
    void touch(Tier& t, size_t slot) { pin(t, slot); unpin(t, slot); }  // most recently used
    void publish(Tier& t, size_t slot, int64_t key);
    Event& event(Tier& t, size_t slot);
    Event& arrival(size_t vram_slot);
    // Enqueues the copy of host slot `hs` into VRAM slot `vs` on the copy stream, after the VRAM
    // slot's last use unless that is known to have completed (`slot_idle`).
    void copy_in(const LayerLayout& L, size_t vs, size_t hs, bool slot_idle = false);
    // Reads experts `ids` of `layer` from the source into pinned slots and copies each into its VRAM
    // slot `vslots[j]`.
    void load_from_source(int64_t layer, std::span<const int32_t> ids, std::span<const size_t> vslots);
    LayerLayout layout_of(const ExpertWeights& w) const;
    ExpertMats mats(int64_t layer, size_t vram_slot);
    int64_t key(int64_t layer, int64_t expert) const { return layer * num_experts_ + expert; }

    int64_t num_layers_, num_experts_;
    ExpertSource& source_;
    cudaStream_t compute_;
    Stream copy_;
    Event copies_done_;
    std::vector<LayerLayout> layouts_;  // per layer
    size_t slot_bytes_ = 0;
    Tier vram_, host_;
    std::vector<size_t> guesses_;  // VRAM slots filled by the last prefetch()
    ExpertCacheStats stats_;
};

}  // namespace flashmoe::cuda
