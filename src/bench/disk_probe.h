// The disk bandwidth a packed model's experts can be streamed at, measured the way the ExpertStore
// reads them: parallel positional O_DIRECT reads of one expert record each, at random (layer,
// expert) positions across the expert files, for a fixed time. This is the bandwidth in the
// streaming limit decode tok/s <= bandwidth / bytes read per token.
//
// Thread-safety: probe_disk is reentrant (its threads are its own). Failure: a file that cannot be
// opened or read is Error (Io) naming it. Where the file system refuses O_DIRECT the probe falls back
// to buffered reads after evicting the files from the page cache, and says so in `note`.
#pragma once

#include <cstdint>
#include <string>

namespace flashmoe::bench {

struct DiskProbeOptions {
    std::string model_dir;
    int64_t layers = 0, experts = 0;  // expert files and records per file
    size_t record_stride = 0;         // bytes per read (4 KiB multiple)
    int threads = 8;                  // reads in flight
    double seconds = 3.0;             // measuring time (after a short warm-up)
    uint64_t seed = 1;
};

struct DiskProbeResult {
    double bytes_per_second = 0;
    uint64_t reads = 0, bytes = 0;
    double seconds = 0;
    double mean_latency_ms = 0;  // per read
    int threads = 0;
    size_t record_bytes = 0;
    bool direct = true;          // O_DIRECT was used
    std::string note;
};

DiskProbeResult probe_disk(const DiskProbeOptions& options);

}  // namespace flashmoe::bench
