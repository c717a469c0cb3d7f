// Splits a model's streamed output text into reasoning (between <think> and </think>) and answer
// content, for Qwen-style thinking models. Chunks arrive as the stream decoder produces them; a
// tag split across chunks is held back until it is complete, so neither part ever shows a piece of
// a tag. The answer's leading blank lines after </think> are dropped, as the chat template writes
// them. One splitter per generation; not thread-safe; never throws.
#pragma once

#include <string>
#include <string_view>

namespace flashmoe {

struct ReasoningDelta {
    std::string reasoning;
    std::string content;
};

class ReasoningSplitter {
public:
    // `starts_in_reasoning`: the prompt already opened a <think> block (see prompt_opens_thinking).
    explicit ReasoningSplitter(bool starts_in_reasoning);

    ReasoningDelta push(std::string_view text);
    ReasoningDelta flush();  // whatever was held back, at the end of the generation

    bool in_reasoning() const { return in_reasoning_; }

private:
    void emit(std::string_view text, ReasoningDelta& out);

    bool in_reasoning_;
    bool content_started_ = false;  // false: still dropping the newlines that follow </think>
    std::string held_;              // a possible partial tag at the end of the last chunk
};

// True when the last "<think>" in a rendered prompt is not closed by a later "</think>".
bool prompt_opens_thinking(std::string_view prompt);

}  // namespace flashmoe
