#include "engine/session.h"

#include "util/error.h"

#include <algorithm>

namespace flashmoe {

Session::Session(ModelRunner& model, size_t max_snapshots)
    : model_(model), max_snapshots_(std::max<size_t>(max_snapshots, 1)), state_(model.new_state()) {}

void Session::reset() {
    state_->reset();
    tokens_.clear();
    snapshots_.clear();
    k_ = -1;
}

void Session::take_snapshot() {
    if (!snapshots_.empty() && snapshots_.back()->position() == state_->position()) return;
    snapshots_.push_back(state_->snapshot());
    if (snapshots_.size() > max_snapshots_) snapshots_.pop_front();
}

void Session::restore(const StateSnapshot& s) {
    state_->restore(s);
    tokens_.resize(size_t(s.position()));
    while (!snapshots_.empty() && snapshots_.back()->position() > s.position()) snapshots_.pop_back();
}

void Session::run(std::span<const int32_t> tokens, int64_t k, LogitsFor which, std::vector<float>* logits,
                  const std::atomic<bool>* cancel) {
    try {
        model_.forward(*state_, tokens, ForwardOptions{.k = k, .logits = which, .cancel = cancel}, logits);
    } catch (...) {
        reset();
        throw;
    }
    tokens_.insert(tokens_.end(), tokens.begin(), tokens.end());
}

PrefillResult Session::prefill(std::span<const int32_t> prompt, std::span<const int64_t> boundaries, int64_t k,
                               std::vector<float>* logits, const PrefillControl& control) {
    if (control.max_batch < 0) fail(ErrorKind::BadInput, "prefill batch size must not be negative");
    if (prompt.empty()) fail(ErrorKind::BadInput, "the prompt is empty");
    if (k != k_) reset();  // a state computed with other experts is not reusable
    k_ = k;

    // Longest shared prefix, leaving at least the last prompt token to run.
    const size_t limit = prompt.size() - 1;
    size_t common = 0;
    while (common < limit && common < tokens_.size() && tokens_[common] == prompt[common]) ++common;
    if (common < tokens_.size()) {
        // The history diverges: go back to the latest snapshot within the shared prefix.
        const StateSnapshot* best = nullptr;
        for (auto& s : snapshots_)
            if (size_t(s->position()) <= common) best = s.get();
        if (best) {
            restore(*best);
        } else {
            reset();
            k_ = k;
        }
    }
    PrefillResult result;
    result.cached_tokens = int64_t(tokens_.size());

    // Run the rest in pieces that end at the boundaries, snapshotting there.
    size_t pos = tokens_.size();
    std::vector<int64_t> cuts;
    // A snapshot before the last token lets the same prompt, sent again, reuse all but that token.
    if (prompt.size() > pos + 1) cuts.push_back(int64_t(prompt.size()) - 1);
    for (int64_t b : boundaries)
        if (b > int64_t(pos) && b < int64_t(prompt.size())) cuts.push_back(b);
    std::sort(cuts.begin(), cuts.end());
    cuts.erase(std::unique(cuts.begin(), cuts.end()), cuts.end());
    cuts.push_back(int64_t(prompt.size()));
    const int64_t total = int64_t(prompt.size()) - result.cached_tokens;
    auto keep_going = [&] {
        result.processed_tokens = int64_t(pos) - result.cached_tokens;
        if (!control.on_progress || control.on_progress(result.processed_tokens, total)) return true;
        result.stopped = true;
        return false;
    };
    if (!keep_going()) return result;
    for (int64_t cut : cuts) {
        const bool last = cut == int64_t(prompt.size());
        while (pos < size_t(cut)) {
            size_t end = size_t(cut);
            if (control.max_batch > 0) end = std::min(end, pos + size_t(control.max_batch));
            const bool final_batch = last && end == size_t(cut);
            run(prompt.subspan(pos, end - pos), k, final_batch ? LogitsFor::Last : LogitsFor::None,
                final_batch ? logits : nullptr, control.cancel);
            pos = end;
            if (pos == size_t(cut) && !last) take_snapshot();
            if (!final_batch && !keep_going()) return result;
        }
    }
    result.processed_tokens = total;
    if (control.on_progress) control.on_progress(total, total);  // the end: nothing left to stop
    return result;
}

void Session::step(int32_t token, int64_t k, std::vector<float>* logits) {
    if (k != k_) fail(ErrorKind::Internal, "session stepped with k {} after a prefill with k {}", k, k_);
    run(std::span<const int32_t>(&token, 1), k, LogitsFor::Last, logits);
}

std::vector<int64_t> message_boundaries(std::span<const int32_t> tokens, int32_t im_end_id, int32_t newline_id) {
    std::vector<int64_t> out;
    for (size_t i = 0; i < tokens.size(); ++i) {
        if (tokens[i] != im_end_id) continue;
        size_t end = i + 1;
        if (end < tokens.size() && tokens[end] == newline_id) ++end;
        out.push_back(int64_t(end));
    }
    return out;
}

}  // namespace flashmoe
