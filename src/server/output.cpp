#include "server/output.h"

#include "util/error.h"

#include <algorithm>
#include <random>

namespace flashmoe::server {
namespace {

// Length of the longest suffix of `text` that is a proper prefix of `tag`.
size_t partial_suffix(std::string_view text, std::string_view tag) {
    for (size_t n = std::min(text.size(), tag.size() - 1); n > 0; --n) {
        if (text.substr(text.size() - n) == tag.substr(0, n)) return n;
    }
    return 0;
}

}  // namespace

void OutputDelta::append(OutputDelta&& other) {
    reasoning += other.reasoning;
    content += other.content;
    for (auto& c : other.tool_calls) tool_calls.push_back(std::move(c));
}

std::string new_tool_call_id() {
    static constexpr char kChars[] = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789";
    thread_local std::mt19937_64 rng{std::random_device{}()};
    std::string id = "call_";
    for (int i = 0; i < 24; ++i) id += kChars[rng() % (sizeof(kChars) - 1)];
    return id;
}

OutputPipeline::OutputPipeline(const Tokenizer& tokenizer, OutputOptions options)
    : options_(std::move(options)),
      decoder_(tokenizer, DecodeOptions{.skip_special = true}),
      splitter_(options_.split_reasoning && options_.starts_in_reasoning) {
    if (options_.parse_tools) tools_.emplace(options_.tools);
}

void OutputPipeline::add_calls(ToolCallDelta&& d, OutputDelta& out) {
    out.content += d.content;
    for (auto& c : d.calls) {
        out.tool_calls.push_back({new_tool_call_id(), std::move(c.name),
                                  c.arguments.dump(-1, ' ', false, nlohmann::ordered_json::error_handler_t::replace)});
    }
}

void OutputPipeline::route(std::string_view text, OutputDelta& out) {
    if (text.empty()) return;
    std::string content;
    if (options_.split_reasoning) {
        ReasoningDelta d = splitter_.push(text);
        out.reasoning += d.reasoning;
        content = std::move(d.content);
    } else {
        content = std::string(text);
    }
    if (tools_) add_calls(tools_->push(content), out);
    else out.content += content;
}

bool OutputPipeline::push(int32_t token, OutputDelta& out) {
    if (stopped_) return false;
    try {
        held_ += decoder_.push(token);
    } catch (const Error&) {
        // An id with no text (the padding rows past the vocabulary): nothing to show.
    }
    if (options_.stop.empty()) {
        route(held_, out);
        held_.clear();
        return true;
    }
    size_t first = std::string::npos;
    for (auto& s : options_.stop) first = std::min(first, held_.find(s));
    if (first != std::string::npos) {
        route(std::string_view(held_).substr(0, first), out);
        held_.clear();
        stopped_ = true;
        return false;
    }
    size_t keep = 0;
    for (auto& s : options_.stop) keep = std::max(keep, partial_suffix(held_, s));
    route(std::string_view(held_).substr(0, held_.size() - keep), out);
    held_.erase(0, held_.size() - keep);
    return true;
}

void OutputPipeline::finish(OutputDelta& out) {
    if (!stopped_) held_ += decoder_.flush();
    route(held_, out);
    held_.clear();
    stopped_ = true;
    if (options_.split_reasoning) {
        ReasoningDelta d = splitter_.flush();
        out.reasoning += d.reasoning;
        if (tools_) add_calls(tools_->push(d.content), out);
        else out.content += d.content;
    }
    if (tools_) add_calls(tools_->flush(), out);
}

}  // namespace flashmoe::server
