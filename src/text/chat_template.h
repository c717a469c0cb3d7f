// The chat template of a model: turns a conversation (OpenAI-style messages, tool schemas, flags
// such as enable_thinking) into the prompt text the model was trained on, exactly as transformers'
// apply_chat_template(tokenize=False) renders it.
//
// Ownership: a ChatTemplate owns its template source and parsed tree; it is immutable after
// construction, and render() is const and safe to call from any number of threads at once.
// Failure: loading fails with Error(BadModel) when no template is found or it does not parse
// (unsupported constructs are named with line and column). render() fails with Error(BadInput)
// when the conversation is rejected by the template (raise_exception: the template's own message,
// e.g. "No user query found in messages.") or does not fit it (wrong types, missing fields).
//
// JSON key order matters (tools are printed with tojson in the order given), so inputs are
// nlohmann::ordered_json; parse request bodies with ordered_json to keep the client's order.
#pragma once

#include "text/jinja/template.h"

#include <nlohmann/json.hpp>

#include <filesystem>
#include <string>

namespace flashmoe {

class ChatTemplate {
public:
    // Reads, in order of preference: <dir>/chat_template.jinja, <dir>/chat_template.json
    // ("chat_template"), <dir>/tokenizer_config.json "chat_template" (a string, or a list of
    // {name, template} from which "default" is taken). Special tokens (bos_token, eos_token, ...)
    // come from tokenizer_config.json when present.
    static ChatTemplate from_model_dir(const std::filesystem::path& dir);

    // `special_tokens`: an object such as {"bos_token": null, "eos_token": "<|im_end|>"}; entries
    // that are null are left out of the render variables, as transformers does.
    static ChatTemplate from_source(std::string source, nlohmann::ordered_json special_tokens = nlohmann::ordered_json::object());

    // messages: array of {role, content, ...}; tools: array of tool schemas, or null for none;
    // extra: object of further template variables (enable_thinking, ...), which win over the rest.
    std::string render(const nlohmann::ordered_json& messages, const nlohmann::ordered_json& tools,
                       bool add_generation_prompt,
                       const nlohmann::ordered_json& extra = nlohmann::ordered_json::object()) const;

    const std::string& source() const { return source_; }
    // The special token strings ("" when the tokenizer has none).
    std::string bos_token() const;
    std::string eos_token() const;

private:
    ChatTemplate(std::string source, jinja::Template parsed, nlohmann::ordered_json special_tokens)
        : source_(std::move(source)), template_(std::move(parsed)), special_tokens_(std::move(special_tokens)) {}

    std::string source_;
    jinja::Template template_;
    nlohmann::ordered_json special_tokens_;  // name -> string or list of strings, nulls removed
};

}  // namespace flashmoe
