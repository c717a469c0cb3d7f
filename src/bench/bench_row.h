// One row of `flashmoe bench`: a model opened with one (K, cache, I/O mode, device) combination,
// then `reps` repetitions of "prefill a random prompt of `prompt_tokens` ids, generate `gen_tokens`"
// in fresh sessions that share the expert store (so later repetitions see a warm expert cache, as a
// long-running process would). Every figure the report shows comes from here: speeds per repetition,
// the expert store's counters and the process's real disk reads split into prefill and decode, peak RSS.
//
// Rows are normally run each in a fresh child process (cmd_bench.cpp), so that peak RSS and the page
// cache state belong to the row; the result travels back as JSON (to_json / row_result_from_json).
//
// Thread-safety: run_row drives the model from the calling thread. Failure: errors from the model
// (I/O, bad K) propagate as flashmoe::Error; a bad spec is Error (BadInput).
#pragma once

#include <cstdint>
#include <functional>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <vector>

namespace flashmoe {
class LoadedModel;
}

namespace flashmoe::bench {

struct RowSpec {
    int64_t k = 0;              // routed experts per token; 0 = the model's
    uint64_t cache_bytes = 0;
    std::string cache_text;     // as given ("8GiB")
    std::string io = "page-cache";
    std::string device = "cpu";
    int64_t prompt_tokens = 512;
    int64_t gen_tokens = 128;
    int reps = 3;
    uint64_t seed = 1;
    std::string start_state;    // how the page cache was prepared ("cold (fadvise)", "warm (preloaded)", "as found")
};

// Figures of one phase (prefill or decode) summed over repetitions.
struct PhaseIo {
    uint64_t tokens = 0;         // prompt tokens, or decode steps (generated tokens - 1)
    double seconds = 0;
    uint64_t requests = 0, hits = 0, store_bytes = 0, reads = 0;
    double io_wait_seconds = 0;
    std::optional<uint64_t> disk_bytes;  // /proc/self/io read_bytes difference
    double cpu_seconds = 0;              // CPU time of all threads (compute and I/O)
    double runqueue_seconds = 0;         // time threads were runnable but waited for a CPU (others' load)

    double hit_rate() const { return requests ? double(hits) / double(requests) : 0; }
    double store_bytes_per_token() const { return tokens ? double(store_bytes) / double(tokens) : 0; }
    // Real disk traffic when the kernel accounts it, else what the store asked for.
    double disk_bytes_per_token() const {
        return tokens ? double(disk_bytes ? *disk_bytes : store_bytes) / double(tokens) : 0;
    }
    double io_wait_share() const { return seconds > 0 ? io_wait_seconds / seconds : 0; }
    double cores_used() const { return seconds > 0 ? cpu_seconds / seconds : 0; }
};

struct RowResult {
    RowSpec spec;
    std::string status = "ok";  // "ok", or why the row did not run ("skipped: ...", "failed: ...")
    int64_t k_used = 0;
    std::vector<double> prefill_tok_s, decode_tok_s, ttft_s;  // one per repetition
    PhaseIo prefill, decode;
    uint64_t peak_rss = 0;     // bytes; of the process that ran the row
    uint64_t peak_vram = 0;    // bytes; 0 on the CPU
    double cache_resident_share_start = -1;  // model files in the page cache when the row began (-1 unknown)
    double load_start = 0, load_end = 0;     // 1-minute load average
    double seconds = 0;                      // wall time of the row including loading

    bool ok() const { return status == "ok"; }
};

struct Summary {
    double mean = 0, sd = 0;
};
Summary summarize(const std::vector<double>& values);  // sample sd (n-1); sd 0 for one value

// `milestone` marks the lines worth keeping in a log (a repetition starting or ending); the others
// are for a live status line only.
using RowProgress = std::function<void(const std::string& line, bool milestone)>;

// Runs the row on an opened model (opened with the spec's cache and I/O mode). `progress` gets a
// short status line while it runs (may be empty).
RowResult run_row(LoadedModel& model, const RowSpec& spec, const RowProgress& progress);

nlohmann::ordered_json to_json(const RowSpec& spec);
nlohmann::ordered_json to_json(const RowResult& row);
RowResult row_result_from_json(const nlohmann::json& j);  // Error (BadInput) on a malformed document

}  // namespace flashmoe::bench
