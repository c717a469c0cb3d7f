// From a parsed request to an engine job: the chat template renders the conversation (tools and
// chat_template_kwargs included) or the completion prompt is encoded, the context limit is
// checked, and sampling, stop strings, tool choice and reasoning handling are settled. Runs on
// HTTP threads: LoadedModel's tokenizer and template are thread-safe.
//
// Failure: ApiError 400 for a prompt the template rejects, an empty prompt, a token id outside
// the vocabulary, or prompt + max_tokens beyond the context (code context_length_exceeded).
#pragma once

#include "server/engine_loop.h"
#include "server/request.h"

#include <cstdint>
#include <string>

namespace flashmoe {
class LoadedModel;
}

namespace flashmoe::server {

struct JobLimits {
    int64_t context = 0;  // prompt + completion tokens a sequence may hold
};

// `stop_tokens`: the model's end-of-turn ids (generation_config.json, tokenizer).
JobSpec prepare_job(LoadedModel& model, const ApiRequest& request, const JobLimits& limits,
                    const std::vector<int32_t>& stop_tokens);

}  // namespace flashmoe::server
