// Response bodies in OpenAI's shapes: chat.completion, text_completion, their streaming chunks,
// usage, the model list, and Server-Sent Events framing. Pure functions of their inputs; each
// result renders its own JSON here and nowhere else. Thread-safe.
#pragma once

#include "server/engine_loop.h"
#include "server/output.h"
#include "server/request.h"

#include <nlohmann/json.hpp>

#include <string>

namespace flashmoe::server {

struct ResponseMeta {
    std::string id;  // chatcmpl-... / cmpl-...
    int64_t created = 0;
    std::string model;
    Endpoint endpoint = Endpoint::Chat;
};

ResponseMeta new_response_meta(Endpoint endpoint, const std::string& model);

nlohmann::ordered_json render_usage(const Usage& usage);

// The whole result of a non-streamed request.
nlohmann::ordered_json render_completion(const ResponseMeta& meta, const OutputDelta& result,
                                         const std::string& finish_reason, const Usage& usage);

// Streaming, in order: first_chunk (chat: the role), delta_chunks for each delta (tool calls are
// numbered from `*next_tool_index` on), final_chunk with the finish reason, usage_chunk when asked.
nlohmann::ordered_json first_chunk(const ResponseMeta& meta);
std::vector<nlohmann::ordered_json> delta_chunks(const ResponseMeta& meta, const OutputDelta& delta,
                                                 size_t* next_tool_index);
nlohmann::ordered_json final_chunk(const ResponseMeta& meta, const std::string& finish_reason);
nlohmann::ordered_json usage_chunk(const ResponseMeta& meta, const Usage& usage);

nlohmann::ordered_json render_model_list(const std::string& model, int64_t created, int64_t max_model_len);

// "data: <json>\n\n"; invalid UTF-8 is replaced, never thrown.
std::string sse_event(const nlohmann::ordered_json& data);
std::string dump_json(const nlohmann::ordered_json& data);
constexpr const char* kSseDone = "data: [DONE]\n\n";

}  // namespace flashmoe::server
