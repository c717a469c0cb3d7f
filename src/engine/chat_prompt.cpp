#include "engine/chat_prompt.h"

#include "engine/reasoning.h"
#include "engine/session.h"
#include "text/chat_template.h"
#include "text/tokenizer.h"

namespace flashmoe {

std::vector<int64_t> chat_boundaries(const Tokenizer& tokenizer, const std::vector<int32_t>& tokens) {
    auto im_end = tokenizer.added_token_id("<|im_end|>");
    if (!im_end) return {};
    auto newline = tokenizer.encode("\n");
    return message_boundaries(tokens, *im_end, newline.size() == 1 ? newline[0] : -1);
}

ChatPrompt build_chat_prompt(LoadedModel& model, const nlohmann::ordered_json& messages,
                             const nlohmann::ordered_json& tools, const nlohmann::ordered_json& extra) {
    ChatPrompt p;
    p.text = model.chat_template().render(messages, tools, true, extra);
    const Tokenizer& tok = model.tokenizer();
    p.tokens = tok.encode(p.text);
    p.boundaries = chat_boundaries(tok, p.tokens);
    p.opens_thinking = prompt_opens_thinking(p.text);
    return p;
}

}  // namespace flashmoe
