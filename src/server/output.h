// What one generation's tokens become, token by token, on the engine thread: text (whole UTF-8
// characters), cut at the first stop string (held back while it may still be one), split into
// reasoning and answer at <think>...</think>, with Qwen3.5 XML tool calls parsed out of the
// answer. Produces deltas ready to stream; the concatenation of all deltas is the full result.
//
// One pipeline per request; not thread-safe. A token id the tokenizer has no text for (padding
// rows of the embedding) adds nothing; nothing throws except std::bad_alloc.
#pragma once

#include "engine/reasoning.h"
#include "engine/tool_calls.h"
#include "text/tokenizer.h"

#include <nlohmann/json.hpp>

#include <optional>
#include <string>
#include <vector>

namespace flashmoe::server {

struct OutputOptions {
    bool split_reasoning = false;      // chat: <think>...</think> goes to reasoning_content
    bool starts_in_reasoning = false;  // the prompt left a <think> block open
    bool parse_tools = false;          // chat with tools: parse XML tool calls out of the answer
    nlohmann::ordered_json tools;      // the request's tools, to type arguments by their schemas
    std::vector<std::string> stop;     // stop strings (non-empty)
};

struct ToolCallOut {
    std::string id;         // "call_" + 24 random characters
    std::string name;
    std::string arguments;  // a JSON object, serialised
};

struct OutputDelta {
    std::string reasoning;
    std::string content;
    std::vector<ToolCallOut> tool_calls;

    bool empty() const { return reasoning.empty() && content.empty() && tool_calls.empty(); }
    void append(OutputDelta&& other);
};

class OutputPipeline {
public:
    OutputPipeline(const Tokenizer& tokenizer, OutputOptions options);

    // One generated token that is not a stop token. Returns false when a stop string matched: the
    // output ends before it, and no more tokens may be pushed (call finish()).
    bool push(int32_t token, OutputDelta& out);
    // The end of the output: everything held back is released.
    void finish(OutputDelta& out);

    bool in_reasoning() const { return options_.split_reasoning && splitter_.in_reasoning(); }
    size_t tool_calls() const { return tools_ ? tools_->calls_seen() : 0; }

private:
    void route(std::string_view text, OutputDelta& out);
    void add_calls(ToolCallDelta&& d, OutputDelta& out);

    OutputOptions options_;
    StreamDecoder decoder_;
    std::string held_;  // a tail that may be the start of a stop string
    bool stopped_ = false;
    ReasoningSplitter splitter_;
    std::optional<ToolCallParser> tools_;
};

std::string new_tool_call_id();

}  // namespace flashmoe::server
