// ExpertStore: routed experts read from a packed model's expert files at token time, through a
// cache bounded by a byte budget.
//
// For each layer the forward asks for the experts its router picked. Hits are handed over at once;
// misses are read with parallel positional reads on a pool of I/O threads, and each expert is handed
// to the forward as soon as its read completes, while the others are still in flight. Two modes:
// page-cache (buffered pread: the OS page cache is a second cache tier), direct (O_DIRECT into the
// store's own aligned buffers: predictable memory, no double caching) and mmap (the expert files are
// mapped and experts are used in place: no copy at all, the OS page cache is the only cache and the
// byte budget does not apply; misses are faulted in by the I/O threads with MADV_WILLNEED +
// MADV_POPULATE_READ, in parallel. Fastest when the model fits in RAM. A file truncated while mapped
// can end the process with SIGBUS, as with any mapped file, so it is not the default). The cache holds whole expert
// records, evicting the least recently used unpinned one, except that a record used during the
// current token is never evicted for another of the same token: when the token's experts outnumber
// the cache, the overflow streams through a few scratch buffers instead, so the cached part keeps
// hitting every token (plain LRU would cycle and hit nothing). It works with as little as one record.
// prefetch() starts reads for experts the forward expects next (e.g. the next layer's likely
// picks); with_experts then finds them cached or in flight.
//
// Thread-safety: with_experts is called by one thread at a time (the forward); stats may be read
// from any thread. Failure: a read error or short read throws Error (kind Io) naming the file and
// expert, after all reads in flight have finished; the store stays usable. Opening fails (BadModel)
// when an expert file is missing or shorter than its records, or when the budget cannot hold one record.
#pragma once

#include "model/experts.h"
#include "store/packed_format.h"

#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <deque>
#include <list>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <unordered_map>
#include <utility>
#include <vector>

namespace flashmoe {

enum class IoMode { PageCache, Direct, Mmap };
std::string_view io_mode_name(IoMode mode);
IoMode parse_io_mode(const std::string& text);  // "page-cache" | "direct" | "mmap"; BadInput otherwise

struct ExpertStoreOptions {
    IoMode mode = IoMode::PageCache;
    size_t cache_bytes = size_t(2) << 30;
    int io_threads = 8;
};

struct ExpertStoreStats {
    uint64_t requests = 0;     // experts asked for
    uint64_t hits = 0;
    uint64_t misses = 0;
    uint64_t bytes_read = 0;
    uint64_t reads = 0;
    uint64_t in_flight_sum = 0;  // reads in flight summed at each submission (mean = sum / reads)
    uint64_t max_in_flight = 0;
    uint64_t prefetched = 0;      // reads started by prefetch()
    uint64_t prefetch_hits = 0;   // requests served by a prefetched record
    uint64_t bypassed = 0;        // reads that went through scratch buffers, not the cache
    double io_wait_seconds = 0;  // time the forward waited for reads

    double hit_rate() const { return requests ? double(hits) / double(requests) : 0; }
    double mean_in_flight() const { return reads ? double(in_flight_sum) / double(reads) : 0; }
};

class ExpertStore final : public ExpertSource {
public:
    ExpertStore(const std::string& model_dir, int64_t num_layers, int64_t num_experts, const ExpertRecordLayout& layout,
                const ExpertStoreOptions& options);
    ~ExpertStore() override;

    void with_experts(int64_t layer, std::span<const int32_t> ids,
                      const std::function<void(size_t, const ExpertWeights&)>& use) override;
    void prefetch(int64_t layer, std::span<const int32_t> ids) override;
    bool wants_prefetch() const override { return true; }

    ExpertStoreStats stats() const;
    void reset_stats();
    size_t cache_capacity_records() const { return cache_slots_; }
    size_t cached_records() const;
    const ExpertRecordLayout& layout() const { return layout_; }

private:
    struct Slot {
        uint8_t* buffer = nullptr;  // record_stride bytes, 4 KiB aligned, allocated on first use
        int64_t key = -1;           // layer * num_experts + expert, or -1 when free
        int pins = 0;               // a read in flight, and each use waiting for or holding it
        bool loading = false;       // a read into this slot is in flight
        bool scratch = false;       // outside the cache: never indexed, freed after use
        bool prefetched = false;    // filled by prefetch() and not yet asked for
        int64_t waiter = -1;        // request index of the with_experts call waiting for the read
        uint64_t last_use = 0;      // token epoch of the last use
        std::list<size_t>::iterator lru_pos;
        bool in_lru = false;
    };
    struct ReadJob {
        size_t slot;  // kNoSlot: fault a mapped record in (mmap mode)
        int64_t layer, expert;
        int64_t waiter = -1;  // mmap mode: request index of the with_experts call waiting, or -1
    };
    static constexpr size_t kNoSlot = ~size_t(0);
    struct Completion {
        ReadJob job;
        std::string error;  // empty on success
    };
    // Work of the with_experts call in progress.
    struct Call {
        std::vector<std::pair<size_t, size_t>> ready;  // (slot, request index)
        std::vector<size_t> ready_mapped;              // mmap mode: request indices faulted in
        size_t outstanding = 0;                        // mmap mode: this call's faults in flight
        std::string first_error;
        uint64_t reads = 0, in_flight_sum = 0, max_in_flight = 0;
    };

    int64_t key(int64_t layer, int64_t expert) const { return layer * num_experts_ + expert; }
    bool take_cache_slot(size_t* out);    // a free slot, or the LRU one not used this token, evicted
    bool take_scratch_slot(size_t* out);  // a scratch buffer outside the budget
    void start_read(size_t slot, int64_t layer, int64_t expert, Call* call);
    void finish_read(Completion c, Call* call);  // on the forward's thread
    bool drain_one(bool wait, Call* call);        // handles one completion; false if none (and !wait)
    void unpin(size_t slot);
    void touch(size_t slot);
    void io_loop();
    void read_record(const ReadJob& job, std::string* error);
    ExpertWeights view(const uint8_t* record) const;  // the three matrices of one record
    void submit(const ReadJob& job, Call* call);       // queues a job for the I/O threads

    // mmap mode
    void map_files();
    const uint8_t* mapped_record(int64_t layer, int64_t expert) const;
    std::pair<uint8_t*, size_t> mapped_pages(int64_t layer, int64_t expert) const;  // whole pages covering it
    bool record_resident(int64_t layer, int64_t expert) const;
    void start_fault(int64_t layer, int64_t expert, int64_t waiter, Call* call);
    void fault_record(const ReadJob& job, std::string* error);
    void with_mapped_experts(int64_t layer, std::span<const int32_t> ids,
                             const std::function<void(size_t, const ExpertWeights&)>& use);

    std::string dir_;
    int64_t num_layers_, num_experts_;
    ExpertRecordLayout layout_;
    ExpertStoreOptions options_;
    std::vector<int> fds_;  // one per layer file
    std::vector<uint8_t*> maps_;  // mmap mode: one mapping per layer file
    size_t map_bytes_ = 0;

    std::vector<Slot> slots_;  // [0, cache_slots_) the cache, then scratch buffers
    size_t cache_slots_ = 0;
    std::vector<size_t> free_slots_;
    std::vector<size_t> free_scratch_;
    size_t in_flight_ = 0;      // reads submitted and not yet handled
    size_t waiters_ = 0;        // reads the with_experts call in progress waits for
    uint64_t epoch_ = 1;        // token counter: bumped when a request goes back to an earlier layer
    int64_t last_layer_ = -1;
    std::list<size_t> lru_;  // front = least recently used, unpinned slots only
    std::unordered_map<int64_t, size_t> index_;

    std::mutex queue_mutex_;
    std::condition_variable queue_cv_, done_cv_;
    std::deque<ReadJob> queue_;
    std::deque<Completion> done_;
    bool stopping_ = false;
    std::vector<std::thread> io_threads_;

    mutable std::mutex stats_mutex_;
    ExpertStoreStats stats_;
};

}  // namespace flashmoe
