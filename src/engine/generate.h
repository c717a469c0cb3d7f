// The generation loop: prefill the prompt in one batch, then decode token by token with a sampler
// until a stop token or the token limit. Reports each token as it is produced and timing figures
// at the end. Single-threaded driver (the forward uses the thread pool inside).
#pragma once

#include "engine/sampler.h"
#include "engine/session.h"

#include <functional>
#include <span>
#include <vector>

namespace flashmoe {

struct GenerateOptions {
    int64_t max_new_tokens = 16;
    int64_t k = 0;                        // routed experts per token; 0 = the model's
    std::vector<int32_t> stop_tokens;     // generation ends after emitting one of these
    std::vector<int64_t> boundaries;      // prompt positions to snapshot for later reuse
    PrefillControl prefill;               // batch size and progress / stop for the prompt
};

struct GenerateStats {
    int64_t prompt_tokens = 0;
    int64_t cached_tokens = 0;   // prompt tokens reused from the session's earlier work
    int64_t new_tokens = 0;
    double prefill_seconds = 0;  // prompt processing, up to the first sampled token
    double decode_seconds = 0;   // all later tokens
    bool stopped_by_token = false;
    bool stopped_in_prompt = false;  // prefill.on_progress stopped the prompt; nothing was generated

    double prefill_tok_s() const {
        return prefill_seconds > 0 ? double(prompt_tokens - cached_tokens) / prefill_seconds : 0;
    }
    double decode_tok_s() const {
        return decode_seconds > 0 && new_tokens > 1 ? double(new_tokens - 1) / decode_seconds : 0;
    }
};

// Runs the prompt through `session` (reusing what it already holds), then samples up to
// max_new_tokens. `on_token(id)` returns false to stop early (e.g. the client went away).
GenerateStats generate(Session& session, std::span<const int32_t> prompt, const GenerateOptions& options,
                       Sampler& sampler, const std::function<bool(int32_t)>& on_token);

}  // namespace flashmoe
