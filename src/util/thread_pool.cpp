#include "util/thread_pool.h"

#include <algorithm>
#include <chrono>
#include <cstdlib>
#include <memory>

#if defined(__x86_64__) || defined(__i386__)
#include <immintrin.h>
#endif

namespace flashmoe {

namespace {
thread_local bool t_inside_pool = false;

void cpu_relax() {
#if defined(__x86_64__) || defined(__i386__)
    _mm_pause();
#elif defined(__aarch64__)
    asm volatile("yield");
#endif
}

int64_t spin_ns_from_env() {
    if (const char* env = std::getenv("FLASHMOE_SPIN_US")) {
        char* end = nullptr;
        long us = std::strtol(env, &end, 10);
        if (end != env && *end == '\0' && us >= 0) return int64_t(std::min(us, 100000L)) * 1000;
    }
    return 200 * 1000;
}

// Spins until done() or `spin_ns` passed; true if done() became true. After the first few
// microseconds it yields between checks, so that on an oversubscribed machine the thread it waits
// for gets the CPU instead of this one.
template <class Done>
bool spin_until(Done done, int64_t spin_ns) {
    if (spin_ns <= 0) return done();
    constexpr auto kPauseOnly = std::chrono::microseconds(20);
    const auto start = std::chrono::steady_clock::now();
    for (int i = 0;; ++i) {
        if (done()) return true;
        cpu_relax();
        if ((i & 63) != 63) continue;
        const auto spent = std::chrono::steady_clock::now() - start;
        if (spent > std::chrono::nanoseconds(spin_ns)) return done();
        if (spent > kPauseOnly) std::this_thread::yield();
    }
}
}  // namespace

ThreadPool::ThreadPool(int threads) : spin_ns_(spin_ns_from_env()) {
    threads = std::max(threads, 1);
    for (int i = 1; i < threads; ++i) workers_.emplace_back([this] { worker_loop(); });
}

ThreadPool::~ThreadPool() {
    {
        std::lock_guard<std::mutex> lock(mutex_);
        stop_.store(true);
    }
    wake_.notify_all();
    for (auto& t : workers_) t.join();
}

void ThreadPool::run_chunks() {
    for (;;) {
        if (failed_.load(std::memory_order_relaxed)) return;
        const int64_t begin = next_.fetch_add(chunk_, std::memory_order_relaxed);
        if (begin >= n_) return;
        const int64_t end = std::min(begin + chunk_, n_);
        try {
            (*fn_)(begin, end);
        } catch (...) {
            std::lock_guard<std::mutex> lock(mutex_);
            if (!error_) error_ = std::current_exception();
            failed_.store(true, std::memory_order_relaxed);
        }
    }
}

// Sleeping uses a Dekker-style handshake with seq_cst atomics: a sleeper announces itself before it
// re-checks the condition, and the waker changes the condition before it looks for sleepers, so at
// least one of them sees the other.
void ThreadPool::worker_loop() {
    t_inside_pool = true;
    uint64_t seen = 0;
    for (;;) {
        auto has_job = [&] { return stop_.load() || generation_.load() != seen; };
        if (!spin_until(has_job, spin_ns_)) {
            std::unique_lock<std::mutex> lock(mutex_);
            sleeping_workers_.fetch_add(1);
            wake_.wait(lock, has_job);
            sleeping_workers_.fetch_sub(1);
        }
        if (stop_.load()) return;
        seen = generation_.load();
        run_chunks();
        if (busy_.fetch_sub(1) == 1 && caller_sleeping_.load()) {
            std::lock_guard<std::mutex> lock(mutex_);
            done_.notify_one();
        }
    }
}

void ThreadPool::wait_for_workers() {
    auto all_done = [&] { return busy_.load() == 0; };
    if (spin_until(all_done, spin_ns_)) return;
    std::unique_lock<std::mutex> lock(mutex_);
    caller_sleeping_.store(true);
    done_.wait(lock, all_done);
    caller_sleeping_.store(false);
}

void ThreadPool::parallel_for(int64_t n, int64_t grain, const std::function<void(int64_t, int64_t)>& fn) {
    if (n <= 0) return;
    grain = std::max<int64_t>(grain, 1);
    if (workers_.empty() || t_inside_pool || n <= grain) {
        fn(0, n);
        return;
    }
    std::lock_guard<std::mutex> call_lock(call_mutex_);
    const int64_t threads = size();
    // A few chunks per thread balances uneven work without much contention.
    chunk_ = std::max(grain, (n + threads * 4 - 1) / (threads * 4));
    fn_ = &fn;
    n_ = n;
    next_.store(0);
    failed_.store(false);
    busy_.store(int(workers_.size()));
    generation_.fetch_add(1);  // publishes the job (seq_cst)
    if (sleeping_workers_.load() > 0) {
        { std::lock_guard<std::mutex> lock(mutex_); }
        wake_.notify_all();
    }
    t_inside_pool = true;
    run_chunks();
    t_inside_pool = false;
    wait_for_workers();
    fn_ = nullptr;
    std::exception_ptr error;
    {
        std::lock_guard<std::mutex> lock(mutex_);
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
