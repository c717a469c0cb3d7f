#include "store/expert_store.h"

#include "util/error.h"

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cstdlib>
#include <cstring>
#include <filesystem>

namespace flashmoe {

#ifndef MADV_POPULATE_READ
#define MADV_POPULATE_READ 22  // Linux 5.14; older kernels answer EINVAL and pages are touched instead
#endif

std::string_view io_mode_name(IoMode mode) {
    switch (mode) {
        case IoMode::PageCache: return "page-cache";
        case IoMode::Direct: return "direct";
        case IoMode::Mmap: return "mmap";
    }
    return "?";
}

IoMode parse_io_mode(const std::string& text) {
    if (text == "page-cache") return IoMode::PageCache;
    if (text == "direct") return IoMode::Direct;
    if (text == "mmap") return IoMode::Mmap;
    fail(ErrorKind::BadInput, "--io '{}' is not one of page-cache, direct, mmap", text);
}

ExpertStore::ExpertStore(const std::string& model_dir, int64_t num_layers, int64_t num_experts,
                         const ExpertRecordLayout& layout, const ExpertStoreOptions& options)
    : dir_(model_dir), num_layers_(num_layers), num_experts_(num_experts), layout_(layout), options_(options) {
    const size_t stride = layout_.record_stride;
    if (options_.mode != IoMode::Mmap) {
        size_t capacity = options_.cache_bytes / stride;
        if (capacity == 0) {
            fail(ErrorKind::BadInput, "--cache {} bytes cannot hold one expert ({} bytes)", options_.cache_bytes,
                 stride);
        }
        capacity = std::min(capacity, size_t(num_layers * num_experts));
        // Scratch buffers carry the reads that must not displace this token's cached experts; one per
        // I/O thread keeps the disk busy.
        const size_t scratch = size_t(std::max(1, options_.io_threads));
        cache_slots_ = capacity;
        slots_.resize(capacity + scratch);
        for (size_t i = capacity; i-- > 0;) free_slots_.push_back(i);
        for (size_t i = capacity + scratch; i-- > capacity;) {
            slots_[i].scratch = true;
            free_scratch_.push_back(i);
        }
    }

    for (int64_t l = 0; l < num_layers; ++l) {
        std::string path = (std::filesystem::path(dir_) / expert_file_name(l)).string();
        int flags = O_RDONLY | O_CLOEXEC | (options_.mode == IoMode::Direct ? O_DIRECT : 0);
        int fd = ::open(path.c_str(), flags);
        if (fd < 0 && options_.mode == IoMode::Direct && errno == EINVAL) {
            fail(ErrorKind::Io, "{}: this file system does not support O_DIRECT; use --io page-cache", path);
        }
        if (fd < 0) {
            int err = errno;
            for (int f : fds_) ::close(f);
            fail(errno == ENOENT ? ErrorKind::BadModel : ErrorKind::Io, "cannot open {}: {}", path, std::strerror(err));
        }
        fds_.push_back(fd);
        struct stat st {};
        ::fstat(fd, &st);
        uint64_t need = uint64_t(num_experts) * stride;
        if (uint64_t(st.st_size) < need) {
            for (int f : fds_) ::close(f);
            fail(ErrorKind::BadModel, "{}: {} bytes, but {} experts of {} bytes need {} (truncated?)", path,
                 uint64_t(st.st_size), num_experts, stride, need);
        }
    }
    if (options_.mode == IoMode::Mmap) map_files();
    int threads = std::max(1, options_.io_threads);
    for (int i = 0; i < threads; ++i) io_threads_.emplace_back([this] { io_loop(); });
}

void ExpertStore::map_files() {
    map_bytes_ = size_t(num_experts_) * layout_.record_stride;
    for (size_t l = 0; l < fds_.size(); ++l) {
        void* p = ::mmap(nullptr, map_bytes_, PROT_READ, MAP_SHARED, fds_[l], 0);
        if (p == MAP_FAILED) {
            const int err = errno;
            for (uint8_t* m : maps_) ::munmap(m, map_bytes_);
            for (int f : fds_) ::close(f);
            fail(ErrorKind::Io, "cannot map {}: {}",
                 (std::filesystem::path(dir_) / expert_file_name(int64_t(l))).string(), std::strerror(err));
        }
        maps_.push_back(static_cast<uint8_t*>(p));
    }
}

ExpertStore::~ExpertStore() {
    {
        std::lock_guard<std::mutex> lock(queue_mutex_);
        stopping_ = true;
    }
    queue_cv_.notify_all();
    for (auto& t : io_threads_) t.join();
    for (uint8_t* m : maps_) ::munmap(m, map_bytes_);
    for (int fd : fds_) ::close(fd);
    for (auto& s : slots_) std::free(s.buffer);
}

void ExpertStore::io_loop() {
    for (;;) {
        ReadJob job;
        {
            std::unique_lock<std::mutex> lock(queue_mutex_);
            queue_cv_.wait(lock, [&] { return stopping_ || !queue_.empty(); });
            if (queue_.empty()) return;
            job = queue_.front();
            queue_.pop_front();
        }
        Completion c{job, {}};
        if (job.slot == kNoSlot) {
            fault_record(job, &c.error);
        } else {
            read_record(job, &c.error);
        }
        {
            std::lock_guard<std::mutex> lock(queue_mutex_);
            done_.push_back(std::move(c));
        }
        done_cv_.notify_one();
    }
}

void ExpertStore::read_record(const ReadJob& job, std::string* error) {
    Slot& slot = slots_[job.slot];
    const size_t stride = layout_.record_stride;
    if (!slot.buffer) {
        slot.buffer = static_cast<uint8_t*>(std::aligned_alloc(kExpertAlignment, stride));
        if (!slot.buffer) {
            *error = "out of memory for the expert cache";
            return;
        }
    }
    const int fd = fds_[size_t(job.layer)];
    const off_t base = off_t(job.expert) * off_t(stride);
    size_t done = 0;
    while (done < stride) {
        ssize_t n = ::pread(fd, slot.buffer + done, stride - done, base + off_t(done));
        if (n < 0 && errno == EINTR) continue;
        if (n <= 0) {
            *error = fmt::format("{}: expert {}: read of {} bytes at offset {} failed: {}",
                                 (std::filesystem::path(dir_) / expert_file_name(job.layer)).string(), job.expert,
                                 stride, uint64_t(base), n < 0 ? std::strerror(errno) : "unexpected end of file");
            return;
        }
        done += size_t(n);
    }
}

bool ExpertStore::take_cache_slot(size_t* out) {
    if (!free_slots_.empty()) {
        *out = free_slots_.back();
        free_slots_.pop_back();
        return true;
    }
    if (lru_.empty()) return false;
    size_t s = lru_.front();
    Slot& slot = slots_[s];
    if (slot.last_use == epoch_) return false;  // everything unpinned was used this token: keep it
    lru_.pop_front();
    slot.in_lru = false;
    index_.erase(slot.key);
    slot.key = -1;
    slot.prefetched = false;
    *out = s;
    return true;
}

bool ExpertStore::take_scratch_slot(size_t* out) {
    if (free_scratch_.empty()) return false;
    *out = free_scratch_.back();
    free_scratch_.pop_back();
    return true;
}

void ExpertStore::touch(size_t s) {
    Slot& slot = slots_[s];
    if (slot.in_lru) {
        lru_.erase(slot.lru_pos);
        slot.in_lru = false;
    }
    slot.last_use = epoch_;
}

void ExpertStore::unpin(size_t s) {
    Slot& slot = slots_[s];
    if (--slot.pins > 0) return;
    if (slot.scratch) {
        slot.key = -1;
        free_scratch_.push_back(s);
        return;
    }
    if (slot.key < 0) {
        free_slots_.push_back(s);
        return;
    }
    slot.lru_pos = lru_.insert(lru_.end(), s);
    slot.in_lru = true;
}

void ExpertStore::start_read(size_t s, int64_t layer, int64_t expert, Call* call) {
    Slot& slot = slots_[s];
    slot.key = key(layer, expert);
    slot.loading = true;
    slot.pins = 1;  // the read's own pin
    slot.waiter = -1;
    if (!slot.scratch) index_[slot.key] = s;
    submit({s, layer, expert}, call);
}

void ExpertStore::submit(const ReadJob& job, Call* call) {
    {
        std::lock_guard<std::mutex> lock(queue_mutex_);
        queue_.push_back(job);
    }
    queue_cv_.notify_one();
    ++in_flight_;
    if (call) {
        ++call->reads;
        call->in_flight_sum += in_flight_;
        call->max_in_flight = std::max<uint64_t>(call->max_in_flight, in_flight_);
    }
}

void ExpertStore::finish_read(Completion c, Call* call) {
    --in_flight_;
    if (c.job.slot == kNoSlot) {  // a mapped record faulted in
        if (c.error.empty()) {
            std::lock_guard<std::mutex> lock(stats_mutex_);
            stats_.bytes_read += layout_.record_stride;
            stats_.reads += 1;
        }
        if (c.job.waiter < 0 || !call) return;  // a prefetch: an error is met again on demand
        --call->outstanding;
        if (!c.error.empty()) {
            if (call->first_error.empty()) call->first_error = c.error;
        } else {
            call->ready_mapped.push_back(size_t(c.job.waiter));
        }
        return;
    }
    Slot& slot = slots_[c.job.slot];
    slot.loading = false;
    const int64_t waiter = slot.waiter;
    slot.waiter = -1;
    if (waiter >= 0) --waiters_;
    if (!c.error.empty()) {
        if (!slot.scratch) index_.erase(slot.key);
        slot.key = -1;
        slot.prefetched = false;
        if (waiter >= 0) {
            if (call && call->first_error.empty()) call->first_error = c.error;
            unpin(c.job.slot);  // the waiter's pin
        }
        unpin(c.job.slot);  // the read's pin: back to the free list
        return;
    }
    {
        std::lock_guard<std::mutex> lock(stats_mutex_);
        stats_.bytes_read += layout_.record_stride;
        stats_.reads += 1;
    }
    if (waiter >= 0 && call) call->ready.emplace_back(c.job.slot, size_t(waiter));
    unpin(c.job.slot);  // the read's pin; a waiter keeps its own
}

bool ExpertStore::drain_one(bool wait, Call* call) {
    Completion c;
    {
        std::unique_lock<std::mutex> lock(queue_mutex_);
        if (done_.empty()) {
            if (!wait) return false;
            done_cv_.wait(lock, [&] { return !done_.empty(); });
        }
        c = std::move(done_.front());
        done_.pop_front();
    }
    finish_read(std::move(c), call);
    return true;
}

void ExpertStore::prefetch(int64_t layer, std::span<const int32_t> ids) {
    if (layer < 0 || layer >= num_layers_) return;
    while (drain_one(false, nullptr)) {
    }
    uint64_t started = 0;
    if (options_.mode == IoMode::Mmap) {
        for (int32_t id : ids) {
            if (id < 0 || id >= num_experts_ || record_resident(layer, id)) continue;
            start_fault(layer, id, -1, nullptr);
            ++started;
        }
        std::lock_guard<std::mutex> lock(stats_mutex_);
        stats_.prefetched += started;
        return;
    }
    for (int32_t id : ids) {
        if (id < 0 || id >= num_experts_ || index_.count(key(layer, id))) continue;
        size_t s;
        if (!take_cache_slot(&s)) break;  // no room that this token does not need: skip the hint
        slots_[s].prefetched = true;
        slots_[s].last_use = epoch_;
        start_read(s, layer, id, nullptr);
        ++started;
    }
    std::lock_guard<std::mutex> lock(stats_mutex_);
    stats_.prefetched += started;
}

ExpertWeights ExpertStore::view(const uint8_t* rec) const {
    return {layout_.matrices[0].view(rec), layout_.matrices[1].view(rec), layout_.matrices[2].view(rec)};
}

void ExpertStore::with_experts(int64_t layer, std::span<const int32_t> ids,
                               const std::function<void(size_t, const ExpertWeights&)>& use) {
    using clock = std::chrono::steady_clock;
    if (layer < 0 || layer >= num_layers_) fail(ErrorKind::Internal, "expert layer {} out of range", layer);
    if (options_.mode == IoMode::Mmap) return with_mapped_experts(layer, ids, use);
    if (layer <= last_layer_) ++epoch_;  // a new token (or a new forward) starts over at an early layer
    last_layer_ = layer;

    Call call;
    std::vector<size_t> misses;  // request indices still to read
    uint64_t hits = 0, prefetch_hits = 0, bypassed = 0;
    for (size_t i = 0; i < ids.size(); ++i) {
        if (ids[i] < 0 || ids[i] >= num_experts_) fail(ErrorKind::Internal, "expert id {} out of range", ids[i]);
        auto it = index_.find(key(layer, ids[i]));
        if (it == index_.end()) {
            misses.push_back(i);
            continue;
        }
        Slot& slot = slots_[it->second];
        touch(it->second);
        ++slot.pins;
        if (slot.prefetched) {
            ++prefetch_hits;
            slot.prefetched = false;
        }
        if (slot.loading) {
            slot.waiter = int64_t(i);  // handed over when its read completes
            ++waiters_;
        } else {
            call.ready.emplace_back(it->second, i);
        }
        ++hits;
    }

    size_t next_miss = 0;
    std::exception_ptr use_error;
    double waited = 0;

    for (;;) {
        // Start reads while there is room: cache slots not needed this token, else scratch buffers.
        while (next_miss < misses.size() && call.first_error.empty() && !use_error) {
            size_t s;
            bool cached = take_cache_slot(&s);
            if (!cached && !take_scratch_slot(&s)) break;
            if (!cached) ++bypassed;
            size_t idx = misses[next_miss++];
            start_read(s, layer, ids[idx], &call);
            slots_[s].waiter = int64_t(idx);
            ++waiters_;
            slots_[s].last_use = epoch_;
            ++slots_[s].pins;  // the waiter's pin
        }
        if (!call.first_error.empty() || use_error) next_miss = misses.size();  // abandon the rest

        if (!call.ready.empty()) {
            auto [s, idx] = call.ready.back();
            call.ready.pop_back();
            if (!use_error) {
                try {
                    use(idx, view(slots_[s].buffer));
                } catch (...) {
                    use_error = std::current_exception();
                }
            }
            unpin(s);
            continue;
        }
        // Handle finished reads without waiting, then wait only if this call still needs one.
        if (drain_one(false, &call)) continue;
        const bool need_more = next_miss < misses.size() || waiters_ > 0;
        if (!need_more) break;
        if (in_flight_ == 0) fail(ErrorKind::Internal, "expert store has no buffer to read into");
        auto t0 = clock::now();
        drain_one(true, &call);
        waited += std::chrono::duration<double>(clock::now() - t0).count();
    }

    {
        std::lock_guard<std::mutex> lock(stats_mutex_);
        stats_.requests += ids.size();
        stats_.hits += hits;
        stats_.misses += misses.size();
        stats_.prefetch_hits += prefetch_hits;
        stats_.bypassed += bypassed;
        stats_.in_flight_sum += call.in_flight_sum;
        stats_.max_in_flight = std::max(stats_.max_in_flight, call.max_in_flight);
        stats_.io_wait_seconds += waited;
    }
    if (use_error) std::rethrow_exception(use_error);
    if (!call.first_error.empty()) throw Error(ErrorKind::Io, call.first_error);
}

const uint8_t* ExpertStore::mapped_record(int64_t layer, int64_t expert) const {
    return maps_[size_t(layer)] + size_t(expert) * layout_.record_stride;
}

namespace {
size_t page_size() {
    static const size_t size = size_t(::sysconf(_SC_PAGESIZE));
    return size;
}
}  // namespace

std::pair<uint8_t*, size_t> ExpertStore::mapped_pages(int64_t layer, int64_t expert) const {
    const uintptr_t begin = reinterpret_cast<uintptr_t>(mapped_record(layer, expert));
    const uintptr_t start = begin & ~uintptr_t(page_size() - 1);
    return {reinterpret_cast<uint8_t*>(start), begin + layout_.record_stride - start};
}

bool ExpertStore::record_resident(int64_t layer, int64_t expert) const {
    const auto [start, len] = mapped_pages(layer, expert);
    thread_local std::vector<unsigned char> pages;
    pages.resize((len + page_size() - 1) / page_size());
    if (::mincore(start, len, pages.data()) != 0) return false;
    for (unsigned char p : pages)
        if ((p & 1) == 0) return false;
    return true;
}

void ExpertStore::start_fault(int64_t layer, int64_t expert, int64_t waiter, Call* call) {
    submit({kNoSlot, layer, expert, waiter}, call);
    if (call) ++call->outstanding;
}

// Reads a mapped record into the page cache and maps its pages: one large read-ahead request, then
// the page tables filled, so the forward's first touch does not fault page by page.
void ExpertStore::fault_record(const ReadJob& job, std::string* error) {
    const auto [start, len] = mapped_pages(job.layer, job.expert);
    void* addr = start;
    ::madvise(addr, len, MADV_WILLNEED);
    if (::madvise(addr, len, MADV_POPULATE_READ) == 0) return;
    const int err = errno;
    if (err == EINVAL) {  // a kernel without MADV_POPULATE_READ: touch every page
        volatile const uint8_t* p = start;
        uint8_t sink = 0;
        for (size_t off = 0; off < len; off += page_size()) sink ^= p[off];
        (void)sink;
        return;
    }
    *error = fmt::format("{}: expert {}: reading {} mapped bytes at offset {} failed: {}",
                         (std::filesystem::path(dir_) / expert_file_name(job.layer)).string(), job.expert,
                         layout_.record_stride, uint64_t(job.expert) * layout_.record_stride,
                         err == EFAULT ? "the file is shorter than its records (truncated?)" : std::strerror(err));
}

void ExpertStore::with_mapped_experts(int64_t layer, std::span<const int32_t> ids,
                                      const std::function<void(size_t, const ExpertWeights&)>& use) {
    using clock = std::chrono::steady_clock;
    Call call;
    std::vector<size_t> resident;
    for (size_t i = 0; i < ids.size(); ++i) {
        if (ids[i] < 0 || ids[i] >= num_experts_) fail(ErrorKind::Internal, "expert id {} out of range", ids[i]);
        if (record_resident(layer, ids[i])) {
            resident.push_back(i);
        } else {
            start_fault(layer, ids[i], int64_t(i), &call);
        }
    }
    const uint64_t misses = call.outstanding;
    std::exception_ptr use_error;
    auto run = [&](size_t i) {
        if (use_error || !call.first_error.empty()) return;
        try {
            use(i, view(mapped_record(layer, ids[i])));
        } catch (...) {
            use_error = std::current_exception();
        }
    };
    for (size_t i : resident) {
        while (drain_one(false, &call)) {
        }
        run(i);
    }
    double waited = 0;
    for (;;) {
        while (!call.ready_mapped.empty()) {
            const size_t i = call.ready_mapped.back();
            call.ready_mapped.pop_back();
            run(i);
        }
        if (call.outstanding == 0) break;
        auto t0 = clock::now();
        drain_one(true, &call);
        waited += std::chrono::duration<double>(clock::now() - t0).count();
    }
    {
        std::lock_guard<std::mutex> lock(stats_mutex_);
        stats_.requests += ids.size();
        stats_.hits += ids.size() - misses;
        stats_.misses += misses;
        stats_.in_flight_sum += call.in_flight_sum;
        stats_.max_in_flight = std::max(stats_.max_in_flight, call.max_in_flight);
        stats_.io_wait_seconds += waited;
    }
    if (use_error) std::rethrow_exception(use_error);
    if (!call.first_error.empty()) throw Error(ErrorKind::Io, call.first_error);
}

ExpertStoreStats ExpertStore::stats() const {
    std::lock_guard<std::mutex> lock(stats_mutex_);
    return stats_;
}

void ExpertStore::reset_stats() {
    std::lock_guard<std::mutex> lock(stats_mutex_);
    stats_ = {};
}

size_t ExpertStore::cached_records() const { return index_.size(); }

}  // namespace flashmoe
