// The figures of one generation: speeds from GenerateStats, and the expert store's counters split
// into the prompt (prefill) and the generated tokens (decode). Used by `run --stats`, chat's status
// line and bench.
#pragma once

#include "engine/generate.h"
#include "store/expert_store.h"

#include <string>

namespace flashmoe {

struct RunStats {
    GenerateStats generation;
    ExpertStoreStats prefill_io;  // counters accumulated while processing the prompt
    ExpertStoreStats decode_io;   // counters accumulated while generating
    bool streamed = false;        // experts came through an ExpertStore
    uint64_t peak_rss = 0;

    // Multi-line human-readable report.
    std::string describe() const;
};

// Counter differences (b - a).
ExpertStoreStats operator-(const ExpertStoreStats& b, const ExpertStoreStats& a);

}  // namespace flashmoe
