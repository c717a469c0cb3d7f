#include "server/response.h"

#include <fmt/format.h>

#include <chrono>
#include <random>

namespace flashmoe::server {
namespace {

using json = nlohmann::ordered_json;

json tool_call_json(const ToolCallOut& c) {
    return {{"id", c.id}, {"type", "function"}, {"function", {{"name", c.name}, {"arguments", c.arguments}}}};
}

json chunk_base(const ResponseMeta& meta) {
    const bool chat = meta.endpoint == Endpoint::Chat;
    return {{"id", meta.id},
            {"object", chat ? "chat.completion.chunk" : "text_completion"},
            {"created", meta.created},
            {"model", meta.model}};
}

json chat_choice_chunk(const ResponseMeta& meta, json delta, const json& finish_reason) {
    json chunk = chunk_base(meta);
    chunk["choices"] = json::array(
        {{{"index", 0}, {"delta", std::move(delta)}, {"logprobs", nullptr}, {"finish_reason", finish_reason}}});
    return chunk;
}

json text_choice_chunk(const ResponseMeta& meta, const std::string& text, const json& finish_reason) {
    json chunk = chunk_base(meta);
    chunk["choices"] =
        json::array({{{"index", 0}, {"text", text}, {"logprobs", nullptr}, {"finish_reason", finish_reason}}});
    return chunk;
}

}  // namespace

ResponseMeta new_response_meta(Endpoint endpoint, const std::string& model) {
    thread_local std::mt19937_64 rng{std::random_device{}()};
    ResponseMeta m;
    m.endpoint = endpoint;
    m.model = model;
    m.created = std::chrono::duration_cast<std::chrono::seconds>(std::chrono::system_clock::now().time_since_epoch()).count();
    m.id = fmt::format("{}-{:016x}", endpoint == Endpoint::Chat ? "chatcmpl" : "cmpl", rng());
    return m;
}

json render_usage(const Usage& u) {
    return {{"prompt_tokens", u.prompt_tokens},
            {"completion_tokens", u.completion_tokens},
            {"total_tokens", u.prompt_tokens + u.completion_tokens},
            {"prompt_tokens_details", {{"cached_tokens", u.cached_tokens}}}};
}

json render_completion(const ResponseMeta& meta, const OutputDelta& r, const std::string& finish_reason,
                       const Usage& usage) {
    json out = {{"id", meta.id}, {"object", meta.endpoint == Endpoint::Chat ? "chat.completion" : "text_completion"},
                {"created", meta.created}, {"model", meta.model}};
    json choice = {{"index", 0}};
    if (meta.endpoint == Endpoint::Chat) {
        json message = {{"role", "assistant"}};
        // OpenAI's convention: a reply that only calls tools has null content.
        message["content"] = r.content.empty() && !r.tool_calls.empty() ? json(nullptr) : json(r.content);
        if (!r.reasoning.empty()) message["reasoning_content"] = r.reasoning;
        if (!r.tool_calls.empty()) {
            json calls = json::array();
            for (auto& c : r.tool_calls) calls.push_back(tool_call_json(c));
            message["tool_calls"] = std::move(calls);
        }
        choice["message"] = std::move(message);
    } else {
        choice["text"] = r.content;
    }
    choice["logprobs"] = nullptr;
    choice["finish_reason"] = finish_reason;
    out["choices"] = json::array({std::move(choice)});
    out["usage"] = render_usage(usage);
    return out;
}

json first_chunk(const ResponseMeta& meta) {
    if (meta.endpoint == Endpoint::Chat) return chat_choice_chunk(meta, {{"role", "assistant"}, {"content", ""}}, nullptr);
    return text_choice_chunk(meta, "", nullptr);
}

std::vector<json> delta_chunks(const ResponseMeta& meta, const OutputDelta& d, size_t* next_tool_index) {
    std::vector<json> out;
    if (meta.endpoint == Endpoint::Completion) {
        if (!d.content.empty()) out.push_back(text_choice_chunk(meta, d.content, nullptr));
        return out;
    }
    if (!d.reasoning.empty()) out.push_back(chat_choice_chunk(meta, {{"reasoning_content", d.reasoning}}, nullptr));
    if (!d.content.empty()) out.push_back(chat_choice_chunk(meta, {{"content", d.content}}, nullptr));
    for (auto& c : d.tool_calls) {
        json call = tool_call_json(c);
        call = {{"index", (*next_tool_index)++}, {"id", c.id}, {"type", "function"}, {"function", call["function"]}};
        out.push_back(chat_choice_chunk(meta, {{"tool_calls", json::array({std::move(call)})}}, nullptr));
    }
    return out;
}

json final_chunk(const ResponseMeta& meta, const std::string& finish_reason) {
    if (meta.endpoint == Endpoint::Chat) return chat_choice_chunk(meta, json::object(), finish_reason);
    return text_choice_chunk(meta, "", finish_reason);
}

json usage_chunk(const ResponseMeta& meta, const Usage& usage) {
    json chunk = chunk_base(meta);
    chunk["choices"] = json::array();
    chunk["usage"] = render_usage(usage);
    return chunk;
}

json render_model_list(const std::string& model, int64_t created, int64_t max_model_len) {
    return {{"object", "list"},
            {"data", json::array({{{"id", model},
                                   {"object", "model"},
                                   {"created", created},
                                   {"owned_by", "flashmoe"},
                                   {"max_model_len", max_model_len}}})}};
}

std::string dump_json(const json& data) { return data.dump(-1, ' ', false, json::error_handler_t::replace); }

std::string sse_event(const json& data) { return "data: " + dump_json(data) + "\n\n"; }

}  // namespace flashmoe::server
