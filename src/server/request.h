// Request bodies of /v1/chat/completions and /v1/completions, checked and normalised. Parsing is
// pure (no model needed): every field is type-checked and every unsupported option refused with an
// ApiError (400) naming the parameter, so nothing reaches the engine half-understood. Unknown
// fields are ignored, as vLLM and llama-server do.
//
// Messages are normalised for the chat template: "developer" becomes "system", content parts are
// kept as text parts only, and an assistant's tool_calls[].function.arguments given as a JSON
// string (OpenAI's wire form) becomes an object (Qwen3.5's template iterates over it).
//
// Thread-safe (no shared state). Bodies are parsed as ordered_json so tool schemas keep key order.
#pragma once

#include "engine/sampler.h"

#include <nlohmann/json.hpp>

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace flashmoe::server {

enum class Endpoint { Chat, Completion };

struct ToolChoice {
    enum class Mode { Auto, None, Required, Named } mode = Mode::Auto;
    std::string name;  // the function, for Named
};

struct ApiRequest {
    Endpoint endpoint = Endpoint::Chat;

    // Chat: what the template renders.
    nlohmann::ordered_json messages = nlohmann::ordered_json::array();
    nlohmann::ordered_json tools;  // the request's tool list, or null; rendered unless tool_choice is none
    ToolChoice tool_choice;
    nlohmann::ordered_json template_kwargs = nlohmann::ordered_json::object();  // chat_template_kwargs

    // Completion: a text prompt or token ids.
    std::string prompt;
    std::vector<int32_t> prompt_ids;

    SamplingParams sampling;
    std::optional<int64_t> max_tokens;  // absent: the endpoint's default
    std::vector<std::string> stop;      // non-empty stop strings
    bool stream = false;
    bool include_usage = false;  // stream_options.include_usage
    bool ignore_eos = false;     // vLLM extension: generate to max_tokens
    std::string last_user_text;  // text of the last user message (or the prompt): what test scripts match

    bool thinking_enabled() const;  // chat_template_kwargs.enable_thinking, default true
    bool renders_tools() const { return tools.is_array() && tool_choice.mode != ToolChoice::Mode::None; }
};

// The body as a JSON object; 400 for malformed JSON or a non-object.
nlohmann::ordered_json parse_body(std::string_view body);

// `defaults`: the model's sampling defaults (generation_config.json, flags); fields given override
// them, and a request without "seed" gets a random one.
ApiRequest parse_chat_request(const nlohmann::ordered_json& body, const SamplingParams& defaults);
ApiRequest parse_completion_request(const nlohmann::ordered_json& body, const SamplingParams& defaults);

}  // namespace flashmoe::server
