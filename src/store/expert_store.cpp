#include "store/expert_store.h"

#include "util/error.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cstdlib>
#include <cstring>
#include <filesystem>

namespace flashmoe {

std::string_view io_mode_name(IoMode mode) { return mode == IoMode::Direct ? "direct" : "page-cache"; }

IoMode parse_io_mode(const std::string& text) {
    if (text == "page-cache") return IoMode::PageCache;
    if (text == "direct") return IoMode::Direct;
    fail(ErrorKind::BadInput, "--io '{}' is not one of page-cache, direct", text);
}

ExpertStore::ExpertStore(const std::string& model_dir, int64_t num_layers, int64_t num_experts,
                         const ExpertRecordLayout& layout, const ExpertStoreOptions& options)
    : dir_(model_dir), num_layers_(num_layers), num_experts_(num_experts), layout_(layout), options_(options) {
    const size_t stride = layout_.record_stride;
    size_t capacity = options_.cache_bytes / stride;
    if (capacity == 0) {
        fail(ErrorKind::BadInput, "--cache {} bytes cannot hold one expert ({} bytes)", options_.cache_bytes, stride);
    }
    capacity = std::min(capacity, size_t(num_layers * num_experts));
    slots_.resize(capacity);
    for (size_t i = capacity; i-- > 0;) free_slots_.push_back(i);

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
    int threads = std::max(1, options_.io_threads);
    for (int i = 0; i < threads; ++i) io_threads_.emplace_back([this] { io_loop(); });
}

ExpertStore::~ExpertStore() {
    {
        std::lock_guard<std::mutex> lock(queue_mutex_);
        stopping_ = true;
    }
    queue_cv_.notify_all();
    for (auto& t : io_threads_) t.join();
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
        read_record(job, &c.error);
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

bool ExpertStore::take_slot(size_t* out) {
    if (!free_slots_.empty()) {
        *out = free_slots_.back();
        free_slots_.pop_back();
        return true;
    }
    if (lru_.empty()) return false;
    size_t s = lru_.front();
    lru_.pop_front();
    Slot& slot = slots_[s];
    slot.in_lru = false;
    index_.erase(slot.key);
    slot.key = -1;
    *out = s;
    return true;
}

void ExpertStore::unpin(size_t s) {
    Slot& slot = slots_[s];
    if (--slot.pins > 0) return;
    if (slot.key < 0) {
        free_slots_.push_back(s);
        return;
    }
    slot.lru_pos = lru_.insert(lru_.end(), s);
    slot.in_lru = true;
}

ExpertWeights ExpertStore::view(size_t s) const {
    const uint8_t* rec = slots_[s].buffer;
    return {layout_.matrices[0].view(rec), layout_.matrices[1].view(rec), layout_.matrices[2].view(rec)};
}

void ExpertStore::with_experts(int64_t layer, std::span<const int32_t> ids,
                               const std::function<void(size_t, const ExpertWeights&)>& use) {
    using clock = std::chrono::steady_clock;
    if (layer < 0 || layer >= num_layers_) fail(ErrorKind::Internal, "expert layer {} out of range", layer);

    std::vector<size_t> ready;     // slots with their request index, ready to use
    std::vector<size_t> ready_index;
    std::vector<size_t> misses;    // request indices still to read
    uint64_t hits = 0;
    for (size_t i = 0; i < ids.size(); ++i) {
        if (ids[i] < 0 || ids[i] >= num_experts_) fail(ErrorKind::Internal, "expert id {} out of range", ids[i]);
        auto it = index_.find(key(layer, ids[i]));
        if (it == index_.end()) {
            misses.push_back(i);
            continue;
        }
        Slot& slot = slots_[it->second];
        if (slot.in_lru) {
            lru_.erase(slot.lru_pos);
            slot.in_lru = false;
        }
        ++slot.pins;
        ready.push_back(it->second);
        ready_index.push_back(i);
        ++hits;
    }

    size_t next_miss = 0, in_flight = 0;
    std::string first_error;
    std::exception_ptr use_error;
    double waited = 0;
    uint64_t reads = 0, in_flight_sum = 0, max_in_flight = 0;

    while (next_miss < misses.size() || in_flight > 0 || !ready.empty()) {
        // Start as many reads as free or evictable slots allow (none after an error).
        while (next_miss < misses.size() && first_error.empty() && !use_error) {
            size_t s;
            if (!take_slot(&s)) break;
            size_t idx = misses[next_miss++];
            slots_[s].pins = 1;
            slots_[s].key = -1;
            {
                std::lock_guard<std::mutex> lock(queue_mutex_);
                queue_.push_back({s, idx, layer, ids[idx]});
            }
            queue_cv_.notify_one();
            ++in_flight;
            ++reads;
            in_flight_sum += in_flight;
            max_in_flight = std::max<uint64_t>(max_in_flight, in_flight);
        }
        if (!first_error.empty() || use_error) next_miss = misses.size();  // abandon the rest

        if (!ready.empty()) {
            size_t s = ready.back(), idx = ready_index.back();
            ready.pop_back();
            ready_index.pop_back();
            if (!use_error) {
                try {
                    use(idx, view(s));
                } catch (...) {
                    use_error = std::current_exception();
                }
            }
            unpin(s);
            continue;
        }
        if (in_flight == 0) {
            if (next_miss < misses.size()) fail(ErrorKind::Internal, "expert cache has no slot to read into");
            break;
        }
        Completion c;
        {
            auto t0 = clock::now();
            std::unique_lock<std::mutex> lock(queue_mutex_);
            done_cv_.wait(lock, [&] { return !done_.empty(); });
            c = std::move(done_.front());
            done_.pop_front();
            waited += std::chrono::duration<double>(clock::now() - t0).count();
        }
        --in_flight;
        if (!c.error.empty()) {
            if (first_error.empty()) first_error = c.error;
            unpin(c.job.slot);  // key is -1: back to the free list
            continue;
        }
        Slot& slot = slots_[c.job.slot];
        slot.key = key(c.job.layer, c.job.expert);
        index_[slot.key] = c.job.slot;
        ready.push_back(c.job.slot);
        ready_index.push_back(c.job.request_index);
    }

    {
        std::lock_guard<std::mutex> lock(stats_mutex_);
        stats_.requests += ids.size();
        stats_.hits += hits;
        stats_.misses += misses.size();
        stats_.reads += reads;
        stats_.bytes_read += reads * layout_.record_stride;
        stats_.in_flight_sum += in_flight_sum;
        stats_.max_in_flight = std::max(stats_.max_in_flight, max_in_flight);
        stats_.io_wait_seconds += waited;
    }
    if (use_error) std::rethrow_exception(use_error);
    if (!first_error.empty()) throw Error(ErrorKind::Io, first_error);
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
