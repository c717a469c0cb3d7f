#include "bench/disk_probe.h"

#include "store/packed_format.h"
#include "util/error.h"

#include <fcntl.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <memory>
#include <mutex>
#include <random>
#include <thread>
#include <vector>

namespace flashmoe::bench {

namespace {

struct Fds {
    std::vector<int> fds;
    ~Fds() {
        for (int fd : fds) ::close(fd);
    }
};

}  // namespace

DiskProbeResult probe_disk(const DiskProbeOptions& o) {
    using clock = std::chrono::steady_clock;
    if (o.layers <= 0 || o.experts <= 0 || o.record_stride == 0 || o.record_stride % kExpertAlignment != 0) {
        fail(ErrorKind::Internal, "disk probe: bad record geometry");
    }
    DiskProbeResult r;
    r.threads = std::max(1, o.threads);
    r.record_bytes = o.record_stride;

    Fds files;
    for (int64_t l = 0; l < o.layers; ++l) {
        std::string path = (std::filesystem::path(o.model_dir) / expert_file_name(l)).string();
        int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC | O_DIRECT);
        if (fd < 0 && errno == EINVAL) {
            r.direct = false;
            fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
            if (fd >= 0) ::posix_fadvise(fd, 0, 0, POSIX_FADV_DONTNEED);
        }
        if (fd < 0) fail(ErrorKind::Io, "disk probe: cannot open {}: {}", path, std::strerror(errno));
        files.fds.push_back(fd);
    }
    if (!r.direct) r.note = "the file system refused O_DIRECT: buffered reads after evicting the files (may be cached)";

    std::atomic<bool> measuring{false}, stop{false};
    std::atomic<uint64_t> reads{0};
    std::atomic<int64_t> latency_ns{0};
    std::mutex error_mutex;
    std::string error;
    std::vector<std::thread> workers;
    for (int t = 0; t < r.threads; ++t) {
        workers.emplace_back([&, t] {
            std::unique_ptr<void, decltype(&std::free)> buf(std::aligned_alloc(kExpertAlignment, o.record_stride),
                                                            &std::free);
            std::mt19937_64 rng(o.seed * 7919 + uint64_t(t));
            std::uniform_int_distribution<int64_t> pick_layer(0, o.layers - 1), pick_expert(0, o.experts - 1);
            while (!stop.load(std::memory_order_relaxed)) {
                const int64_t layer = pick_layer(rng), expert = pick_expert(rng);
                const off_t base = off_t(expert) * off_t(o.record_stride);
                auto t0 = clock::now();
                size_t done = 0;
                while (done < o.record_stride) {
                    ssize_t n = ::pread(files.fds[size_t(layer)], static_cast<char*>(buf.get()) + done,
                                        o.record_stride - done, base + off_t(done));
                    if (n < 0 && errno == EINTR) continue;
                    if (n <= 0) {
                        std::lock_guard<std::mutex> lock(error_mutex);
                        if (error.empty()) {
                            error = fmt::format("disk probe: read of {} at layer {} expert {} failed: {}",
                                                o.record_stride, layer, expert,
                                                n < 0 ? std::strerror(errno) : "unexpected end of file");
                        }
                        stop = true;
                        return;
                    }
                    done += size_t(n);
                }
                if (measuring.load(std::memory_order_relaxed)) {
                    reads.fetch_add(1, std::memory_order_relaxed);
                    latency_ns.fetch_add(std::chrono::duration_cast<std::chrono::nanoseconds>(clock::now() - t0).count(),
                                         std::memory_order_relaxed);
                }
            }
        });
    }
    // A short warm-up so that every thread has a read in flight when the clock starts.
    std::this_thread::sleep_for(std::chrono::milliseconds(200));
    auto start = clock::now();
    measuring = true;
    std::this_thread::sleep_for(std::chrono::duration<double>(std::max(0.1, o.seconds)));
    measuring = false;
    auto end = clock::now();
    stop = true;
    for (auto& w : workers) w.join();
    if (!error.empty()) throw Error(ErrorKind::Io, error);

    r.reads = reads.load();
    r.bytes = r.reads * o.record_stride;
    r.seconds = std::chrono::duration<double>(end - start).count();
    r.bytes_per_second = r.seconds > 0 ? double(r.bytes) / r.seconds : 0;
    r.mean_latency_ms = r.reads ? double(latency_ns.load()) / double(r.reads) / 1e6 : 0;
    return r;
}

}  // namespace flashmoe::bench
