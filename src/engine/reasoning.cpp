#include "engine/reasoning.h"

namespace flashmoe {

namespace {
constexpr std::string_view kOpen = "<think>";
constexpr std::string_view kClose = "</think>";

// Length of the longest suffix of `text` that is a proper prefix of `tag`.
size_t partial_tag_suffix(std::string_view text, std::string_view tag) {
    for (size_t n = std::min(text.size(), tag.size() - 1); n > 0; --n) {
        if (text.substr(text.size() - n) == tag.substr(0, n)) return n;
    }
    return 0;
}
}  // namespace

ReasoningSplitter::ReasoningSplitter(bool starts_in_reasoning) : in_reasoning_(starts_in_reasoning) {}

void ReasoningSplitter::emit(std::string_view text, ReasoningDelta& out) {
    if (in_reasoning_) {
        out.reasoning.append(text);
        return;
    }
    if (!content_started_) {
        size_t i = 0;
        while (i < text.size() && (text[i] == '\n' || text[i] == '\r')) ++i;
        text.remove_prefix(i);
        if (text.empty()) return;
        content_started_ = true;
    }
    out.content.append(text);
}

ReasoningDelta ReasoningSplitter::push(std::string_view chunk) {
    ReasoningDelta out;
    std::string text = held_;
    text.append(chunk);
    held_.clear();
    std::string_view rest = text;
    for (;;) {
        std::string_view tag = in_reasoning_ ? kClose : kOpen;
        size_t pos = rest.find(tag);
        if (pos == std::string_view::npos) break;
        emit(rest.substr(0, pos), out);
        rest.remove_prefix(pos + tag.size());
        in_reasoning_ = !in_reasoning_;
        if (!in_reasoning_) content_started_ = false;
    }
    size_t keep = partial_tag_suffix(rest, in_reasoning_ ? kClose : kOpen);
    emit(rest.substr(0, rest.size() - keep), out);
    held_ = std::string(rest.substr(rest.size() - keep));
    return out;
}

ReasoningDelta ReasoningSplitter::flush() {
    ReasoningDelta out;
    std::string text = std::move(held_);
    held_.clear();
    emit(text, out);
    return out;
}

bool prompt_opens_thinking(std::string_view prompt) {
    size_t open = prompt.rfind(kOpen);
    if (open == std::string_view::npos) return false;
    size_t close = prompt.rfind(kClose);
    return close == std::string_view::npos || close < open;
}

}  // namespace flashmoe
