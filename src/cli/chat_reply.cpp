#include "cli/chat_reply.h"

#include <fmt/format.h>

namespace flashmoe::cli {

ReplyPrinter::ReplyPrinter(const Tokenizer& tokenizer, std::FILE* out, ReplyOptions options)
    : out_(out), options_(options), style_(out), decoder_(tokenizer, DecodeOptions{.skip_special = true}) {
    if (options_.split_reasoning) splitter_.emplace(options_.opens_thinking);
}

void ReplyPrinter::write(std::string_view text) {
    if (text.empty()) return;
    std::fwrite(text.data(), 1, text.size(), out_);
    size_t n = 0;
    while (n < text.size() && text[text.size() - 1 - n] == '\n') ++n;
    trailing_newlines_ = n == text.size() ? trailing_newlines_ + int(n) : int(n);
}

void ReplyPrinter::end_dim() {
    if (!dim_on_) return;
    auto r = style_.reset();
    std::fwrite(r.data(), 1, r.size(), out_);
    dim_on_ = false;
}

void ReplyPrinter::echo(std::string_view text) {
    write(text);
    std::fflush(out_);
}

void ReplyPrinter::show_reasoning(std::string_view text) {
    // The reasoning of a reply is kept whole; the screen gets it without leading blank lines.
    reasoning_.append(text);
    if (options_.hide_thinking) {
        if (style_.enabled() && !indicator_shown_) {
            fmt::print(out_, "{}thinking...{}", style_.dim(), style_.reset());
            indicator_shown_ = true;
        }
        return;
    }
    if (!reasoning_shown_) {
        size_t i = text.find_first_not_of("\r\n");
        if (i == std::string_view::npos) return;
        text.remove_prefix(i);
        reasoning_shown_ = true;
    }
    if (!dim_on_) {
        auto d = style_.dim();
        std::fwrite(d.data(), 1, d.size(), out_);
        dim_on_ = d.size() > 0;
    }
    write(text);
}

void ReplyPrinter::show_content(std::string_view text) {
    content_.append(text);
    if (text.empty()) return;
    if (indicator_shown_) {
        fmt::print(out_, "{}", style_.clear_line());
        indicator_shown_ = false;
    }
    if (reasoning_shown_) {
        end_dim();
        while (trailing_newlines_ < 2) write("\n");  // a blank line between reasoning and answer
        reasoning_shown_ = false;
    }
    write(text);
}

void ReplyPrinter::route(const std::string& text) {
    if (text.empty()) return;
    if (!splitter_) {
        show_content(text);
        return;
    }
    ReasoningDelta d = splitter_->push(text);
    // Within one chunk the reasoning comes before the answer (the splitter splits at </think>).
    show_reasoning(d.reasoning);
    show_content(d.content);
}

void ReplyPrinter::push(int32_t token) {
    route(decoder_.push(token));
    std::fflush(out_);
}

void ReplyPrinter::finish() {
    if (finished_) return;
    finished_ = true;
    route(decoder_.flush());
    if (splitter_) {
        ReasoningDelta d = splitter_->flush();
        show_reasoning(d.reasoning);
        show_content(d.content);
    }
    end_dim();
    if (indicator_shown_) {
        fmt::print(out_, "{}", style_.clear_line());
        indicator_shown_ = false;
        if (content_.empty()) fmt::print(out_, "{}(only reasoning, hidden){}", style_.dim(), style_.reset());
        trailing_newlines_ = 0;
    }
    if (trailing_newlines_ == 0) write("\n");
    std::fflush(out_);
}

}  // namespace flashmoe::cli
