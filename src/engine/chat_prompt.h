// Turning a conversation into model input: the chat template renders the messages (with tools and
// template flags such as enable_thinking), the tokenizer encodes the text, and the positions where
// messages end are marked so a Session can snapshot there and reuse them next turn.
#pragma once

#include "engine/loaded_model.h"

#include <nlohmann/json.hpp>

#include <string>
#include <vector>

namespace flashmoe {

struct ChatPrompt {
    std::string text;
    std::vector<int32_t> tokens;
    std::vector<int64_t> boundaries;  // token positions just after each message
    bool opens_thinking = false;      // the prompt ends inside an open <think> block
};

// Errors: the template's own (BadInput, e.g. a conversation it rejects) and the tokenizer's.
ChatPrompt build_chat_prompt(LoadedModel& model, const nlohmann::ordered_json& messages,
                             const nlohmann::ordered_json& tools, const nlohmann::ordered_json& extra);

// Token positions just after each message in already-encoded chat tokens.
std::vector<int64_t> chat_boundaries(const Tokenizer& tokenizer, const std::vector<int32_t>& tokens);

}  // namespace flashmoe
