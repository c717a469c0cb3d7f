#include "engine/generate.h"

#include "util/error.h"

#include <algorithm>
#include <chrono>

namespace flashmoe {

GenerateStats generate(Session& session, std::span<const int32_t> prompt, const GenerateOptions& options,
                       Sampler& sampler, const std::function<bool(int32_t)>& on_token) {
    using clock = std::chrono::steady_clock;
    if (prompt.empty()) fail(ErrorKind::BadInput, "the prompt is empty");
    GenerateStats stats;
    stats.prompt_tokens = int64_t(prompt.size());
    sampler.add_prompt(prompt);

    std::vector<float> logits;
    auto start = clock::now();
    PrefillResult pr = session.prefill(prompt, options.boundaries, options.k, &logits, options.prefill);
    stats.cached_tokens = pr.cached_tokens;
    if (pr.stopped) {
        stats.stopped_in_prompt = true;
        stats.prefill_seconds = std::chrono::duration<double>(clock::now() - start).count();
        return stats;
    }
    auto decode_start = start;

    for (int64_t i = 0; i < options.max_new_tokens; ++i) {
        int32_t token = sampler.sample(logits);
        if (i == 0) {
            decode_start = clock::now();
            stats.prefill_seconds = std::chrono::duration<double>(decode_start - start).count();
        }
        ++stats.new_tokens;
        bool keep_going = on_token(token);
        if (std::find(options.stop_tokens.begin(), options.stop_tokens.end(), token) != options.stop_tokens.end()) {
            stats.stopped_by_token = true;
            break;
        }
        if (!keep_going || i + 1 == options.max_new_tokens) break;
        session.step(token, options.k, &logits);
    }
    stats.decode_seconds = std::chrono::duration<double>(clock::now() - decode_start).count();
    return stats;
}

}  // namespace flashmoe
