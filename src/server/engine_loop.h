// The server's one engine thread. It owns the model's sequences: a small pool of Sessions
// ("slots"), each keeping the tokens, KV cache and DeltaNet snapshots of the last conversation it
// ran. HTTP threads submit jobs; each job carries its reply channel. The loop admits queued jobs
// into free slots (the slot whose history shares the longest prefix with the prompt, so a
// multi-turn chat reuses its earlier turns), runs their prompts, then advances every active job by
// one token per round, so concurrent streams all make progress. Jobs whose client went away
// (ReplyChannel::cancel) stop at the next token, free their slot and get a Failed "cancelled"
// event (so a waiter never hangs). A prompt being processed stops at the next layer boundary (its
// slot's session is then reset).
//
// Thread-safety: submit(), counters() and ReplyChannel are safe from any thread; everything else
// runs on the engine thread. Failure: a job whose forward or tokenizer throws gets a Failed event
// with the mapped ApiError; the loop and the other jobs carry on. Destruction stops the thread;
// jobs still queued or running get a 503.
#pragma once

#include "engine/sampler.h"
#include "server/api_error.h"
#include "server/output.h"

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <deque>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <vector>

namespace flashmoe {
class LoadedModel;
class Session;
}  // namespace flashmoe

namespace flashmoe::server {

struct Usage {
    int64_t prompt_tokens = 0;
    int64_t completion_tokens = 0;
    int64_t cached_tokens = 0;  // prompt tokens whose work a slot already held
};

struct ReplyEvent {
    enum class Kind { Delta, Done, Failed } kind = Kind::Delta;
    OutputDelta delta;               // Delta
    std::string finish_reason;       // Done: stop, length, tool_calls
    Usage usage;                     // Done
    std::optional<ApiError> error;   // Failed

    static ReplyEvent of_delta(OutputDelta d) {
        ReplyEvent e;
        e.delta = std::move(d);
        return e;
    }
    static ReplyEvent done(std::string reason, const Usage& usage) {
        ReplyEvent e;
        e.kind = Kind::Done;
        e.finish_reason = std::move(reason);
        e.usage = usage;
        return e;
    }
    static ReplyEvent failed(ApiError error) {
        ReplyEvent e;
        e.kind = Kind::Failed;
        e.error = std::move(error);
        return e;
    }
};

// Engine thread -> one HTTP thread. The consumer cancels when its client disconnects.
class ReplyChannel {
public:
    void push(ReplyEvent event);
    // The next event, waiting at most `timeout`; nullopt if none came.
    std::optional<ReplyEvent> pop(std::chrono::milliseconds timeout);
    void cancel() { cancelled_.store(true); }
    bool cancelled() const { return cancelled_.load(); }
    const std::atomic<bool>* cancel_flag() const { return &cancelled_; }  // watched inside a prefill

private:
    std::mutex mutex_;
    std::condition_variable ready_;
    std::deque<ReplyEvent> events_;
    std::atomic<bool> cancelled_{false};
};

struct JobSpec {
    std::vector<int32_t> prompt;
    std::vector<int64_t> boundaries;  // message ends: where the slot snapshots for reuse
    SamplingParams sampling;
    int64_t max_tokens = 16;
    std::vector<int32_t> stop_tokens;  // empty: run to max_tokens
    OutputOptions output;
    std::string forced_text;  // fed instead of sampled once the reasoning ends (tool_choice)
    std::string script_key;   // text matched against --script-output entries
};

// A scripted reply (tests only, --script-output): a job whose script_key contains `match` emits
// the tokens of `output` and then a stop token instead of sampling. The model still runs them.
struct ScriptEntry {
    std::string match;
    std::string output;
};
// Reads [{"match": "...", "output": "..."}, ...]; BadInput naming the file on any other shape.
std::vector<ScriptEntry> load_script(const std::string& path);

struct EngineOptions {
    size_t slots = 4;
    int64_t k = 0;          // routed experts per token; 0 = the model's
    size_t max_queue = 64;  // jobs waiting beyond this are refused with 503
    std::vector<ScriptEntry> script;
};

struct EngineCounters {
    size_t slots = 0, busy = 0, queued = 0;
    uint64_t completed = 0, cancelled = 0, failed = 0;
};

class EngineLoop {
public:
    EngineLoop(LoadedModel& model, EngineOptions options);
    ~EngineLoop();
    EngineLoop(const EngineLoop&) = delete;
    EngineLoop& operator=(const EngineLoop&) = delete;

    // Queues a job; its events arrive on the returned channel. ApiError 503 when the queue is full
    // or the loop has stopped.
    std::shared_ptr<ReplyChannel> submit(JobSpec spec);
    EngineCounters counters() const;
    void stop();

private:
    struct Job {
        JobSpec spec;
        std::shared_ptr<ReplyChannel> reply;
    };
    struct Slot;
    struct Active;

    void run();
    size_t pick_slot(const std::vector<int32_t>& prompt);
    std::unique_ptr<Active> admit(Job job);
    bool advance(Active& a);  // one token; false when the job has ended
    int32_t next_token(Active& a);
    void release(Active& a);

    LoadedModel& model_;
    EngineOptions options_;
    std::vector<std::unique_ptr<Slot>> slots_;
    std::vector<std::unique_ptr<Active>> active_;  // engine thread only
    uint64_t use_clock_ = 0;

    mutable std::mutex mutex_;
    std::condition_variable wake_;
    std::deque<Job> queue_;
    bool stopping_ = false;
    EngineCounters counters_;
    std::thread thread_;
};

}  // namespace flashmoe::server
