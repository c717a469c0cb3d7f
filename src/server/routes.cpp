#include "server/routes.h"

#include "engine/chat_prompt.h"
#include "engine/loaded_model.h"
#include "text/tokenizer.h"

#include <fmt/format.h>

namespace flashmoe::server {

JobSpec prepare_job(LoadedModel& model, const ApiRequest& r, const JobLimits& limits,
                    const std::vector<int32_t>& stop_tokens) {
    JobSpec spec;
    const Tokenizer& tok = model.tokenizer();
    const char* prompt_param = "prompt";
    if (r.endpoint == Endpoint::Chat) {
        prompt_param = "messages";
        const nlohmann::ordered_json tools = r.renders_tools() ? r.tools : nlohmann::ordered_json();
        ChatPrompt cp = build_chat_prompt(model, r.messages, tools, r.template_kwargs);
        spec.prompt = std::move(cp.tokens);
        spec.boundaries = std::move(cp.boundaries);
        spec.output.split_reasoning = true;
        spec.output.starts_in_reasoning = cp.opens_thinking;
        spec.output.parse_tools = r.renders_tools();
        spec.output.tools = r.tools;
        if (r.tool_choice.mode == ToolChoice::Mode::Required) spec.forced_text = "<tool_call>\n<function=";
        if (r.tool_choice.mode == ToolChoice::Mode::Named) {
            spec.forced_text = fmt::format("<tool_call>\n<function={}>\n", r.tool_choice.name);
        }
    } else if (!r.prompt_ids.empty()) {
        for (int32_t id : r.prompt_ids) {
            if (size_t(id) >= tok.vocab_size()) {
                throw ApiError::bad_request(
                    fmt::format("token id {} is outside the vocabulary (size {})", id, tok.vocab_size()), "prompt");
            }
        }
        spec.prompt = r.prompt_ids;
    } else {
        spec.prompt = tok.encode(r.prompt);
    }
    const int64_t n = int64_t(spec.prompt.size());
    if (n == 0) throw ApiError::bad_request("the prompt encodes to no tokens", prompt_param);
    if (n >= limits.context) {
        throw ApiError(400, "invalid_request_error",
                       fmt::format("This model's maximum context length is {} tokens. However, your prompt has {} "
                                   "tokens, which leaves no room for a completion.",
                                   limits.context, n),
                       prompt_param, "context_length_exceeded");
    }
    // OpenAI's default for completions is 16; a chat reply may use the rest of the context.
    const int64_t max_tokens = r.max_tokens.value_or(r.endpoint == Endpoint::Completion ? 16 : limits.context - n);
    if (max_tokens > limits.context - n) {
        throw ApiError(400, "invalid_request_error",
                       fmt::format("This model's maximum context length is {} tokens. However, you requested {} "
                                   "tokens ({} in the {}, {} in the completion).",
                                   limits.context, uint64_t(n) + uint64_t(max_tokens), n, prompt_param, max_tokens),
                       "max_tokens", "context_length_exceeded");
    }
    spec.max_tokens = max_tokens;
    spec.sampling = r.sampling;
    if (!r.ignore_eos) spec.stop_tokens = stop_tokens;
    spec.output.stop = r.stop;
    spec.script_key = r.last_user_text;
    return spec;
}

}  // namespace flashmoe::server
