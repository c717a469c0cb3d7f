#include "util/thread_pool.h"

#include <algorithm>
#include <cstdlib>
#include <memory>

namespace flashmoe {

namespace {
thread_local bool t_inside_pool = false;
}

ThreadPool::ThreadPool(int threads) {
    threads = std::max(threads, 1);
    for (int i = 1; i < threads; ++i) workers_.emplace_back([this, i] { worker_loop(i); });
}

ThreadPool::~ThreadPool() {
    {
        std::lock_guard<std::mutex> lock(mutex_);
        stop_ = true;
    }
    wake_.notify_all();
    for (auto& t : workers_) t.join();
}

void ThreadPool::run_chunks() {
    for (;;) {
        int64_t begin;
        {
            std::lock_guard<std::mutex> lock(mutex_);
            if (next_ >= n_ || error_) return;
            begin = next_;
            next_ += chunk_;
        }
        int64_t end = std::min(begin + chunk_, n_);
        try {
            (*fn_)(begin, end);
        } catch (...) {
            std::lock_guard<std::mutex> lock(mutex_);
            if (!error_) error_ = std::current_exception();
        }
    }
}

void ThreadPool::worker_loop(int) {
    t_inside_pool = true;
    uint64_t seen = 0;
    for (;;) {
        {
            std::unique_lock<std::mutex> lock(mutex_);
            wake_.wait(lock, [&] { return stop_ || generation_ != seen; });
            if (stop_) return;
            seen = generation_;
        }
        run_chunks();
        {
            std::lock_guard<std::mutex> lock(mutex_);
            --busy_;
        }
        done_.notify_one();
    }
}

void ThreadPool::parallel_for(int64_t n, int64_t grain, const std::function<void(int64_t, int64_t)>& fn) {
    if (n <= 0) return;
    grain = std::max<int64_t>(grain, 1);
    if (workers_.empty() || t_inside_pool || n <= grain) {
        fn(0, n);
        return;
    }
    std::lock_guard<std::mutex> call_lock(call_mutex_);
    int64_t threads = size();
    // A few chunks per thread balances uneven work without much locking.
    int64_t chunk = std::max(grain, (n + threads * 4 - 1) / (threads * 4));
    {
        std::lock_guard<std::mutex> lock(mutex_);
        fn_ = &fn;
        n_ = n;
        chunk_ = chunk;
        next_ = 0;
        error_ = nullptr;
        busy_ = int(workers_.size());
        ++generation_;
    }
    wake_.notify_all();
    t_inside_pool = true;
    run_chunks();
    t_inside_pool = false;
    std::exception_ptr error;
    {
        std::unique_lock<std::mutex> lock(mutex_);
        done_.wait(lock, [&] { return busy_ == 0; });
        fn_ = nullptr;
        error = error_;
        error_ = nullptr;
    }
    if (error) std::rethrow_exception(error);
}

namespace {
std::unique_ptr<ThreadPool>& pool_slot() {
    static std::unique_ptr<ThreadPool> pool;
    return pool;
}

int default_thread_count() {
    if (const char* env = std::getenv("FLASHMOE_THREADS")) {
        int n = std::atoi(env);
        if (n > 0) return n;
    }
    unsigned hc = std::thread::hardware_concurrency();
    return hc ? int(hc) : 1;
}
}  // namespace

ThreadPool& default_pool() {
    auto& slot = pool_slot();
    if (!slot) slot = std::make_unique<ThreadPool>(default_thread_count());
    return *slot;
}

void set_default_pool_threads(int threads) {
    pool_slot() = std::make_unique<ThreadPool>(threads > 0 ? threads : default_thread_count());
}

}  // namespace flashmoe
