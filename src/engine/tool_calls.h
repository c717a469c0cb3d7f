// Tool calls in Qwen3.5's XML format, parsed out of generated text:
//
//     <tool_call>
//     <function=get_weather>
//     <parameter=city>
//     Paris
//     </parameter>
//     </function>
//     </tool_call>
//
// The parser is streaming: text arrives in chunks as it is decoded; plain text outside a call is
// passed through at once (only a possible partial "<tool_call>" / "<function=" tag at the end of a
// chunk is held back), and a call is reported when its block is complete. Parameter values are
// typed by the tool's JSON schema (integer, number, boolean, null, object, array, string; unions
// through "type": [...] / anyOf / oneOf); a value that does not fit its schema stays a string.
//
// A block that does not parse (no function name, stray text, an unclosed parameter, a block still
// open when the output ends) is given back verbatim as content: malformed model output never
// breaks a response. A bare "<function=...>...</function>" without <tool_call> is accepted too.
//
// One parser per generation; not thread-safe; never throws (except std::bad_alloc).
#pragma once

#include <nlohmann/json.hpp>

#include <string>
#include <string_view>
#include <vector>

namespace flashmoe {

struct ParsedToolCall {
    std::string name;
    nlohmann::ordered_json arguments = nlohmann::ordered_json::object();  // parameter -> typed value
};

struct ToolCallDelta {
    std::string content;                // text outside calls, to show as the answer
    std::vector<ParsedToolCall> calls;  // calls completed by this chunk, in order
};

class ToolCallParser {
public:
    // `tools`: the request's OpenAI tool list ([{type: function, function: {name, parameters}}]),
    // used only to type parameter values; null or malformed entries simply give string values.
    explicit ToolCallParser(const nlohmann::ordered_json& tools);

    ToolCallDelta push(std::string_view text);
    // The end of the output: an unfinished block is parsed if it is complete enough, else returned
    // as content. Whitespace after the last call is dropped.
    ToolCallDelta flush();

    size_t calls_seen() const { return calls_seen_; }

private:
    void scan(ToolCallDelta& out, bool at_end);
    void emit_text(std::string_view text, ToolCallDelta& out);

    nlohmann::ordered_json tools_;
    std::string buffer_;        // unconsumed text: a held-back tail, or an open block
    bool in_block_ = false;     // buffer_ starts with an opening tag
    std::string pending_ws_;    // trailing whitespace of the content, held until we know what follows
    bool after_call_ = false;   // nothing but whitespace since the last call
    size_t calls_seen_ = 0;
};

// The whole text at once (non-streaming): the same result as push(text) followed by flush().
ToolCallDelta parse_tool_calls(std::string_view text, const nlohmann::ordered_json& tools);

// One parameter value typed by its JSON schema (`schema` may be null: the value stays a string).
nlohmann::ordered_json type_tool_argument(std::string_view raw, const nlohmann::ordered_json* schema);

// The schema of a tool's parameter, or null when the tool or parameter is unknown.
const nlohmann::ordered_json* find_parameter_schema(const nlohmann::ordered_json& tools, std::string_view function,
                                                    std::string_view parameter);

}  // namespace flashmoe
