// The model on one backend (the CPU forward today, CUDA beside it): what sessions, generation,
// perplexity and the front ends drive. Each backend keeps its own per-sequence state behind
// ModelState (host vectors on the CPU, device buffers on a GPU).
//
// A ModelState belongs to one sequence and is used by one thread at a time. Snapshots capture the
// recurrent (Gated DeltaNet) state at the current position; restoring one rewinds the sequence to
// that position (attention caches are truncated). Errors are flashmoe::Error.
#pragma once

#include "model/config.h"

#include <atomic>
#include <cstdint>
#include <exception>
#include <memory>
#include <span>
#include <vector>

namespace flashmoe {

enum class LogitsFor { None, Last, All };

struct ForwardOptions {
    int64_t k = 0;  // routed experts per token; 0 = the config's num_experts_per_tok
    LogitsFor logits = LogitsFor::Last;
    // When set and it becomes true, the forward stops between layers and throws ForwardCancelled;
    // the sequence state is then partly advanced and must be reset or restored.
    const std::atomic<bool>* cancel = nullptr;
};

// Thrown by a forward whose ForwardOptions::cancel was raised (not an Error: nothing went wrong).
struct ForwardCancelled : std::exception {
    const char* what() const noexcept override { return "the forward was cancelled"; }
};

class StateSnapshot {
public:
    virtual ~StateSnapshot() = default;
    virtual int64_t position() const = 0;
    virtual size_t bytes() const = 0;
};

class ModelState {
public:
    virtual ~ModelState() = default;
    virtual int64_t position() const = 0;  // tokens consumed so far
    virtual void reset() = 0;              // back to an empty sequence
    virtual std::unique_ptr<StateSnapshot> snapshot() const = 0;
    // Rewinds to the snapshot's position, which must not be past the current one.
    virtual void restore(const StateSnapshot& snapshot) = 0;
    virtual size_t bytes() const = 0;  // memory held by caches and states
};

class ModelRunner {
public:
    virtual ~ModelRunner() = default;
    virtual const ModelConfig& config() const = 0;
    virtual std::unique_ptr<ModelState> new_state() const = 0;
    // Runs `tokens` at positions state.position().., appends them to `state`, and writes logits:
    // [1, vocab] for LogitsFor::Last, [tokens.size(), vocab] for All, nothing for None.
    virtual void forward(ModelState& state, std::span<const int32_t> tokens, const ForwardOptions& options,
                         std::vector<float>* logits) = 0;
};

}  // namespace flashmoe
