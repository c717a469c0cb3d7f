// A conversation's running model state with prefix reuse. The session remembers which tokens its
// state holds; a new prompt that extends them only runs its new tokens. Because the Gated DeltaNet
// state cannot be rewound, the session also keeps snapshots of the recurrent state at chosen
// positions (message boundaries); a prompt that diverges from the history restarts from the latest
// snapshot inside the shared prefix (attention KV caches are simply truncated). Used by chat and the
// server alike.
//
// One thread at a time. Errors from the forward propagate; the session then resets itself (its
// state may be partly updated), so the next call starts clean.
#pragma once

#include "model/model_runner.h"

#include <cstdint>
#include <deque>
#include <functional>
#include <memory>
#include <span>
#include <vector>

namespace flashmoe {

struct PrefillResult {
    int64_t cached_tokens = 0;     // prompt tokens whose work was reused
    int64_t processed_tokens = 0;  // prompt tokens run through the model now
    bool stopped = false;          // on_progress asked to stop; no logits were written
};

// Optional controls for a long prompt. The new tokens run in batches of at most max_batch
// (0 = one batch: fastest when experts stream from disk, as each expert is read once per batch).
// on_progress(done, total) is called before the first batch and after each one with the new tokens
// processed so far; returning false stops there, leaving the session holding the prompt up to that
// point (so a later prefill of the same prompt resumes from it).
// `cancel`, when set and raised (from any thread), stops the forward between layers: prefill then
// throws ForwardCancelled and the session is reset (nothing of it is reused later).
struct PrefillControl {
    int64_t max_batch = 0;
    std::function<bool(int64_t done, int64_t total)> on_progress;
    const std::atomic<bool>* cancel = nullptr;
};

class Session {
public:
    explicit Session(ModelRunner& model, size_t max_snapshots = 8);

    // Feeds `prompt`, reusing the longest cached prefix (never all of it: the last token always runs,
    // to produce its logits), snapshotting at each position in `boundaries` and before the last
    // token, and writes the logits of the last prompt token.
    PrefillResult prefill(std::span<const int32_t> prompt, std::span<const int64_t> boundaries, int64_t k,
                          std::vector<float>* logits, const PrefillControl& control = {});
    // Feeds one more token (a generated one) and writes its logits.
    void step(int32_t token, int64_t k, std::vector<float>* logits);

    const std::vector<int32_t>& tokens() const { return tokens_; }
    size_t snapshot_count() const { return snapshots_.size(); }
    void reset();
    ModelRunner& model() { return model_; }

private:
    void take_snapshot();
    void restore(const StateSnapshot& s);
    void run(std::span<const int32_t> tokens, int64_t k, LogitsFor which, std::vector<float>* logits,
             const std::atomic<bool>* cancel = nullptr);

    ModelRunner& model_;
    size_t max_snapshots_;
    std::unique_ptr<ModelState> state_;
    std::vector<int32_t> tokens_;
    std::deque<std::unique_ptr<StateSnapshot>> snapshots_;  // ascending position
    int64_t k_ = -1;                  // routed experts the state was computed with
};

// Positions just after each `<|im_end|>` (and the newline token that follows it, if any) in
// `tokens`: where a chat prompt's messages end, and where snapshots pay off.
std::vector<int64_t> message_boundaries(std::span<const int32_t> tokens, int32_t im_end_id, int32_t newline_id);

}  // namespace flashmoe
