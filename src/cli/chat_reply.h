// Printing a reply as it is generated, shared by `run` and `chat`: token ids become whole UTF-8
// characters (StreamDecoder), a chat reply's reasoning is split from its answer (ReasoningSplitter)
// and shown dimmed, or hidden with a transient "thinking..." note on a terminal, with a blank line
// between the reasoning and the answer. On a non-terminal stream no escape codes are written.
// Keeps the reply's reasoning and answer text for the conversation.
//
// Writes to the FILE* it is given (flushed at each token); one per reply; not thread-safe; never
// throws beyond what fmt/stdio do.
#pragma once

#include "cli/chat_terminal.h"
#include "engine/reasoning.h"
#include "text/tokenizer.h"

#include <cstdio>
#include <optional>
#include <string>
#include <string_view>

namespace flashmoe::cli {

struct ReplyOptions {
    bool split_reasoning = false;  // a chat reply: separate <think>...</think> from the answer
    bool opens_thinking = false;   // the prompt already opened the <think> block
    bool hide_thinking = false;    // do not show the reasoning
};

class ReplyPrinter {
public:
    ReplyPrinter(const Tokenizer& tokenizer, std::FILE* out, ReplyOptions options);

    void echo(std::string_view text);  // plain text before the reply (run prints the prompt it continues)
    void push(int32_t token);
    // Writes what is still held, resets the style and ends the line. Idempotent.
    void finish();

    const std::string& reasoning() const { return reasoning_; }
    const std::string& content() const { return content_; }

private:
    void route(const std::string& text);
    void show_reasoning(std::string_view text);
    void show_content(std::string_view text);
    void write(std::string_view text);
    void end_dim();

    std::FILE* out_;
    ReplyOptions options_;
    TermStyle style_;
    StreamDecoder decoder_;
    std::optional<ReasoningSplitter> splitter_;
    bool dim_on_ = false;
    bool indicator_shown_ = false;
    bool reasoning_shown_ = false;  // some reasoning text is on screen (needs a gap before the answer)
    int trailing_newlines_ = 2;     // of what was written so far; 2 = at a fresh line, nothing before
    bool finished_ = false;
    std::string reasoning_, content_;
};

}  // namespace flashmoe::cli
