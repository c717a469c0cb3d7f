// What `flashmoe bench` needs to know about the machine and to do to its page cache: a description
// of the host (CPU, cores, RAM, kernel, load), the process's real disk-read counter, and the page
// cache state of a model's files (drop, preload, measure residency).
//
// Thread-safety: every function is reentrant; none keeps state. Failure: facts that cannot be read
// come back empty or zero (a benchmark report should still be written); page-cache operations report
// what they could not do in their result's `note` instead of throwing, except an unreadable model
// directory, which is Error (Io).
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

namespace flashmoe::bench {

struct MachineInfo {
    std::string cpu_model;      // /proc/cpuinfo "model name" ("" when unknown)
    int cpus = 0;               // online CPUs
    uint64_t ram_bytes = 0;     // MemTotal
    std::string kernel;         // uname -sr
    std::string hostname;
    std::string date_utc;       // ISO 8601, when collected
    std::string gpu;            // "" when no GPU is visible to this build
};
MachineInfo collect_machine_info();

// The 1-minute load average (-1 when unknown).
double load_average_1m();

// Bytes this process (all its threads) caused to be read from storage: /proc/self/io read_bytes.
// Empty when the kernel does not account it.
std::optional<uint64_t> process_disk_read_bytes();

// CPU time used by this process's live threads and time they spent runnable but waiting for a CPU
// (the run queue: other programs' load), from /proc/self/task/*/schedstat. Zero when unavailable.
struct CpuTimes {
    double cpu_seconds = 0, runqueue_seconds = 0;
};
CpuTimes process_cpu_times();

// Every regular file under a model directory (model.json, dense weights, expert files).
std::vector<std::string> model_files(const std::string& model_dir);

// How a page-cache operation went.
struct PageCacheResult {
    std::string method;   // "drop_caches+fadvise", "fadvise", "preload", ...
    std::string note;     // what was not possible and why ("" when all went as asked)
    double seconds = 0;
};

// Evicts the model's files from the page cache: posix_fadvise(DONTNEED) on each file (per file, no
// privilege needed, leaves other programs' cache alone); with `system_wide` it first writes 1 to
// /proc/sys/vm/drop_caches (root only; the note says so when refused).
PageCacheResult drop_page_cache(const std::string& model_dir, bool system_wide);

// Reads every model file once through the page cache so that later buffered reads are served from
// RAM. The note says when the files are larger than the memory available for caching.
PageCacheResult preload_page_cache(const std::string& model_dir);

// Share (0..1) of the model files' pages resident in the page cache, by mincore(2); -1 on failure.
double page_cache_resident_share(const std::string& model_dir);

}  // namespace flashmoe::bench
