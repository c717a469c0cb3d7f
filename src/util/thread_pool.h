// A fixed pool of worker threads for data-parallel loops. parallel_for blocks until every chunk is
// done; the calling thread works too. One parallel_for at a time per pool (calls are serialised);
// a nested call from inside a chunk runs inline on the calling worker. Exceptions thrown by a
// chunk are rethrown to the caller of parallel_for after all chunks finished.
#pragma once

#include <condition_variable>
#include <cstdint>
#include <exception>
#include <functional>
#include <mutex>
#include <thread>
#include <vector>

namespace flashmoe {

class ThreadPool {
public:
    explicit ThreadPool(int threads);  // total threads including the caller; >= 1
    ~ThreadPool();
    ThreadPool(const ThreadPool&) = delete;
    ThreadPool& operator=(const ThreadPool&) = delete;

    int size() const { return int(workers_.size()) + 1; }

    // Calls fn(begin, end) over [0, n) in chunks of at least `grain` items.
    void parallel_for(int64_t n, int64_t grain, const std::function<void(int64_t, int64_t)>& fn);

private:
    void worker_loop(int index);
    void run_chunks();

    std::vector<std::thread> workers_;
    std::mutex call_mutex_;  // serialises parallel_for calls
    std::mutex mutex_;
    std::condition_variable wake_;
    std::condition_variable done_;
    const std::function<void(int64_t, int64_t)>* fn_ = nullptr;
    int64_t n_ = 0, chunk_ = 1;
    int64_t next_ = 0;        // next chunk start, guarded by mutex_
    int busy_ = 0;            // workers still inside the current job
    uint64_t generation_ = 0;
    bool stop_ = false;
    std::exception_ptr error_;
};

// The process-wide pool, sized by FLASHMOE_THREADS or the number of online CPUs.
ThreadPool& default_pool();
// Replace the process-wide pool size (before first heavy use; e.g. from --threads).
void set_default_pool_threads(int threads);

}  // namespace flashmoe
