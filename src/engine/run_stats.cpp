#include "engine/run_stats.h"

#include "util/progress.h"

#include <fmt/format.h>

#include <algorithm>

namespace flashmoe {

ExpertStoreStats operator-(const ExpertStoreStats& b, const ExpertStoreStats& a) {
    ExpertStoreStats d;
    d.requests = b.requests - a.requests;
    d.hits = b.hits - a.hits;
    d.misses = b.misses - a.misses;
    d.bytes_read = b.bytes_read - a.bytes_read;
    d.reads = b.reads - a.reads;
    d.in_flight_sum = b.in_flight_sum - a.in_flight_sum;
    d.max_in_flight = b.max_in_flight;
    d.prefetched = b.prefetched - a.prefetched;
    d.prefetch_hits = b.prefetch_hits - a.prefetch_hits;
    d.bypassed = b.bypassed - a.bypassed;
    d.io_wait_seconds = b.io_wait_seconds - a.io_wait_seconds;
    return d;
}

std::string RunStats::describe() const {
    const GenerateStats& g = generation;
    std::string out;
    out += fmt::format("prompt:      {} tokens in {:.3f} s ({:.2f} tok/s, time to first token {:.3f} s)\n",
                       g.prompt_tokens, g.prefill_seconds, g.prefill_tok_s(), g.prefill_seconds);
    out += fmt::format("generated:   {} tokens, decode {:.2f} tok/s\n", g.new_tokens, g.decode_tok_s());
    if (streamed) {
        auto io_line = [&](const char* name, const ExpertStoreStats& s, int64_t tokens, double seconds) {
            const double per_token = tokens > 0 ? double(s.bytes_read) / double(tokens) : 0;
            const double wait = tokens > 0 ? s.io_wait_seconds / double(tokens) : 0;
            const double total = tokens > 0 ? seconds / double(tokens) : 0;
            std::string prefetch;
            if (s.prefetched > 0) {
                prefetch = fmt::format(", prefetched {:.1f}/token ({:.0f}% used)", double(s.prefetched) / double(tokens),
                                       100.0 * double(s.prefetch_hits) / double(s.prefetched));
            }
            return fmt::format(
                "{}  {}/token from disk, hit rate {:.1f}%{}, reads in flight {:.1f} mean / {} max, "
                "per token {:.1f} ms I/O wait + {:.1f} ms compute\n",
                name, format_bytes(uint64_t(per_token)), s.hit_rate() * 100, prefetch, s.mean_in_flight(),
                s.max_in_flight, wait * 1e3, std::max(0.0, total - wait) * 1e3);
        };
        out += io_line("prefill io:", prefill_io, g.prompt_tokens, g.prefill_seconds);
        const int64_t decoded = std::max<int64_t>(g.new_tokens - 1, 0);
        out += io_line("decode io: ", decode_io, decoded, g.decode_seconds);
    }
    out += fmt::format("peak RSS:    {}\n", format_bytes(peak_rss));
    return out;
}

}  // namespace flashmoe
