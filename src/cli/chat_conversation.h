// The messages of a terminal chat, and their file form for /save and /load: a JSON array of
// OpenAI-style messages ({"role": "system"|"user"|"assistant"|"tool", "content": "..."}, an
// assistant's reasoning in "reasoning_content"). /load also takes {"messages": [...]}.
//
// A plain value; not thread-safe. load_conversation fails with Error (BadInput) naming the file and
// the message at fault; save_conversation writes a temporary file renamed into place (Error Io), so
// a failed save never leaves a half-written file.
#pragma once

#include <nlohmann/json.hpp>

#include <string>

namespace flashmoe::cli {

struct Conversation {
    std::string system;                                          // empty: no system message
    nlohmann::ordered_json turns = nlohmann::ordered_json::array();  // every message after the system one

    // What the chat template renders: the system message (when set), then the turns.
    nlohmann::ordered_json messages() const;
    void clear() { turns = nlohmann::ordered_json::array(); }
    size_t user_turns() const;
};

void save_conversation(const Conversation& conversation, const std::string& path);
Conversation load_conversation(const std::string& path);

}  // namespace flashmoe::cli
