// A fixed pool of worker threads for data-parallel loops. parallel_for blocks until every chunk is
// done; the calling thread works too. One parallel_for at a time per pool (calls are serialised);
// a nested call from inside a chunk runs inline on the calling worker. Exceptions thrown by a
// chunk are rethrown to the caller of parallel_for after all chunks finished.
//
// A decode step makes over a thousand small parallel_for calls, so hand-offs must be cheap: idle
// workers and the waiting caller spin for a short while (FLASHMOE_SPIN_US, default 200 us; 0 turns
// spinning off) before they sleep on a condition variable, and a call wakes sleepers only when
// there are any. Chunks are claimed with an atomic counter.
#pragma once

#include <atomic>
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
    void worker_loop();
    void run_chunks();
    void wait_for_workers();

    std::vector<std::thread> workers_;
    std::mutex call_mutex_;  // serialises parallel_for calls
    std::mutex mutex_;       // guards sleeping on the condition variables and error_
    std::condition_variable wake_;
    std::condition_variable done_;
    const std::function<void(int64_t, int64_t)>* fn_ = nullptr;  // written before generation_ moves
    int64_t n_ = 0, chunk_ = 1;
    std::atomic<int64_t> next_{0};          // next chunk start
    std::atomic<int> busy_{0};              // workers still inside the current job
    std::atomic<uint64_t> generation_{0};   // bumped once per job
    std::atomic<int> sleeping_workers_{0};  // workers asleep (or about to be) on wake_
    std::atomic<bool> caller_sleeping_{false};
    std::atomic<bool> failed_{false};
    std::atomic<bool> stop_{false};
    std::exception_ptr error_;
    int64_t spin_ns_;
};

// The process-wide pool, sized by FLASHMOE_THREADS or the number of online CPUs.
ThreadPool& default_pool();
// Replace the process-wide pool size (before first heavy use; e.g. from --threads).
void set_default_pool_threads(int threads);

}  // namespace flashmoe
