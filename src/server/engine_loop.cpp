#include "server/engine_loop.h"

#include "engine/loaded_model.h"
#include "engine/session.h"
#include "text/tokenizer.h"
#include "util/error.h"
#include "util/mapped_file.h"

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include <algorithm>

namespace flashmoe::server {

// ---- ReplyChannel ----

void ReplyChannel::push(ReplyEvent event) {
    {
        std::lock_guard lock(mutex_);
        events_.push_back(std::move(event));
    }
    ready_.notify_one();
}

std::optional<ReplyEvent> ReplyChannel::pop(std::chrono::milliseconds timeout) {
    std::unique_lock lock(mutex_);
    if (!ready_.wait_for(lock, timeout, [&] { return !events_.empty(); })) return std::nullopt;
    ReplyEvent e = std::move(events_.front());
    events_.pop_front();
    return e;
}

// ---- scripts (tests) ----

std::vector<ScriptEntry> load_script(const std::string& path) {
    nlohmann::json j = nlohmann::json::parse(read_text_file(path), nullptr, false);
    if (j.is_discarded() || !j.is_array()) fail(ErrorKind::BadInput, "{}: expected a JSON array of {{match, output}}", path);
    std::vector<ScriptEntry> out;
    for (auto& e : j) {
        if (!e.is_object() || !e.value("match", nlohmann::json()).is_string() ||
            !e.value("output", nlohmann::json()).is_string()) {
            fail(ErrorKind::BadInput, "{}: every entry needs string fields 'match' and 'output'", path);
        }
        out.push_back({e["match"].get<std::string>(), e["output"].get<std::string>()});
    }
    return out;
}

// ---- the loop ----

namespace {
ApiError cancelled_error() { return ApiError(503, "server_error", "the request was cancelled", {}, "cancelled"); }
}  // namespace

// DeltaNet snapshots kept per slot: the latest message ends are what the next turn reuses, and on
// a 35B model each snapshot holds ~60 MB of recurrent state.
constexpr size_t kSnapshotsPerSlot = 4;

struct EngineLoop::Slot {
    std::unique_ptr<Session> session;
    bool busy = false;
    uint64_t last_used = 0;
};

struct EngineLoop::Active {
    Job job;
    size_t slot = 0;
    std::unique_ptr<Sampler> sampler;
    std::unique_ptr<OutputPipeline> output;
    std::vector<float> logits;
    std::deque<int32_t> forced;      // tokens to feed before sampling again
    bool forcing_pending = false;    // forced_text waits for the reasoning to end
    std::optional<std::vector<int32_t>> script;
    size_t script_pos = 0;
    Usage usage;
};

EngineLoop::EngineLoop(LoadedModel& model, EngineOptions options) : model_(model), options_(std::move(options)) {
    if (options_.slots == 0) fail(ErrorKind::BadInput, "the server needs at least one slot");
    for (size_t i = 0; i < options_.slots; ++i) {
        auto slot = std::make_unique<Slot>();
        slot->session = std::make_unique<Session>(model_.forward(), kSnapshotsPerSlot);
        slots_.push_back(std::move(slot));
    }
    counters_.slots = slots_.size();
    model_.tokenizer();  // load now, not inside the first request
    thread_ = std::thread([this] { run(); });
}

EngineLoop::~EngineLoop() { stop(); }

void EngineLoop::stop() {
    {
        std::lock_guard lock(mutex_);
        stopping_ = true;
    }
    wake_.notify_all();
    if (thread_.joinable()) thread_.join();
}

std::shared_ptr<ReplyChannel> EngineLoop::submit(JobSpec spec) {
    auto reply = std::make_shared<ReplyChannel>();
    {
        std::lock_guard lock(mutex_);
        if (stopping_) throw ApiError::overloaded("the server is shutting down");
        if (queue_.size() >= options_.max_queue) {
            throw ApiError::overloaded(fmt::format("too many requests waiting ({}); try again later", queue_.size()));
        }
        queue_.push_back(Job{std::move(spec), reply});
        counters_.queued = queue_.size();
    }
    wake_.notify_one();
    return reply;
}

EngineCounters EngineLoop::counters() const {
    std::lock_guard lock(mutex_);
    return counters_;
}

size_t EngineLoop::pick_slot(const std::vector<int32_t>& prompt) {
    size_t best = slots_.size(), best_len = 0;
    for (size_t i = 0; i < slots_.size(); ++i) {
        if (slots_[i]->busy) continue;
        const auto& held = slots_[i]->session->tokens();
        size_t n = 0;
        while (n < held.size() && n < prompt.size() && held[n] == prompt[n]) ++n;
        // Longest shared prefix; among equals the least recently used, to keep other histories.
        if (best == slots_.size() || n > best_len ||
            (n == best_len && slots_[i]->last_used < slots_[best]->last_used)) {
            best = i;
            best_len = n;
        }
    }
    return best;
}

std::unique_ptr<EngineLoop::Active> EngineLoop::admit(Job job) {
    const Tokenizer& tok = model_.tokenizer();
    auto a = std::make_unique<Active>();
    a->job = std::move(job);
    const JobSpec& spec = a->job.spec;
    a->slot = pick_slot(spec.prompt);
    Slot& slot = *slots_[a->slot];

    a->output = std::make_unique<OutputPipeline>(tok, spec.output);
    a->sampler = std::make_unique<Sampler>(spec.sampling);
    a->sampler->add_prompt(spec.prompt);
    for (auto& entry : options_.script) {
        if (!entry.match.empty() && spec.script_key.find(entry.match) != std::string::npos) {
            a->script = tok.encode(entry.output);
            break;
        }
    }
    if (!spec.forced_text.empty()) {
        if (a->output->in_reasoning()) {
            a->forcing_pending = true;
        } else {
            auto ids = tok.encode(spec.forced_text);
            a->forced.assign(ids.begin(), ids.end());
        }
    }
    a->usage.prompt_tokens = int64_t(spec.prompt.size());
    PrefillResult pr = slot.session->prefill(spec.prompt, spec.boundaries, options_.k, &a->logits,
                                             PrefillControl{.on_progress = {}, .cancel = a->job.reply->cancel_flag()});
    a->usage.cached_tokens = pr.cached_tokens;
    slot.busy = true;  // only now: a job that failed above never held it
    slot.last_used = ++use_clock_;
    return a;
}

int32_t EngineLoop::next_token(Active& a) {
    if (!a.forced.empty()) {
        int32_t t = a.forced.front();
        a.forced.pop_front();
        return t;
    }
    if (a.script) {
        if (a.script_pos < a.script->size()) return (*a.script)[a.script_pos++];
        auto& stops = a.job.spec.stop_tokens;
        if (!stops.empty()) return stops.front();
        auto im_end = model_.tokenizer().added_token_id("<|im_end|>");
        return im_end ? *im_end : 0;
    }
    return a.sampler->sample(a.logits);
}

bool EngineLoop::advance(Active& a) {
    const JobSpec& spec = a.job.spec;
    if (a.job.reply->cancelled()) {
        {
            std::lock_guard lock(mutex_);
            ++counters_.cancelled;
        }
        a.job.reply->push(ReplyEvent::failed(cancelled_error()));  // anyone still waiting stops too
        return false;
    }
    const int32_t token = next_token(a);
    ++a.usage.completion_tokens;
    const bool scripted_end = a.script && a.script_pos >= a.script->size() && a.forced.empty() &&
                              spec.stop_tokens.empty();
    std::string reason;
    OutputDelta delta;
    if (std::find(spec.stop_tokens.begin(), spec.stop_tokens.end(), token) != spec.stop_tokens.end() || scripted_end) {
        reason = "stop";
    } else if (!a.output->push(token, delta)) {
        reason = "stop";  // a stop string
    } else if (a.usage.completion_tokens >= spec.max_tokens) {
        reason = "length";
    }
    if (!reason.empty()) {
        a.output->finish(delta);
        if (reason == "stop" && a.output->tool_calls() > 0) reason = "tool_calls";
        {
            std::lock_guard lock(mutex_);  // counted before the client can hear of it
            ++counters_.completed;
        }
        if (!delta.empty()) a.job.reply->push(ReplyEvent::of_delta(std::move(delta)));
        a.job.reply->push(ReplyEvent::done(reason, a.usage));
        return false;
    }
    if (!delta.empty()) a.job.reply->push(ReplyEvent::of_delta(std::move(delta)));
    if (a.forcing_pending && !a.output->in_reasoning()) {
        // The reasoning just closed: the answer starts where the template puts it, with the call.
        a.forcing_pending = false;
        auto ids = model_.tokenizer().encode("\n\n" + spec.forced_text);
        a.forced.insert(a.forced.end(), ids.begin(), ids.end());
    }
    slots_[a.slot]->session->step(token, options_.k, &a.logits);
    return true;
}

void EngineLoop::release(Active& a) {
    Slot& slot = *slots_[a.slot];
    slot.busy = false;
    slot.last_used = ++use_clock_;
}

void EngineLoop::run() {
    auto fail_job = [&](const std::shared_ptr<ReplyChannel>& reply, ApiError error) {
        {
            std::lock_guard lock(mutex_);
            ++counters_.failed;
        }
        reply->push(ReplyEvent::failed(std::move(error)));
    };
    for (;;) {
        // Admit what fits, then give every active job one token.
        std::vector<Job> admitted;
        {
            std::unique_lock lock(mutex_);
            wake_.wait(lock, [&] { return stopping_ || !queue_.empty() || !active_.empty(); });
            if (stopping_) break;
            size_t free = slots_.size() - active_.size();
            while (free > 0 && !queue_.empty()) {
                Job job = std::move(queue_.front());
                queue_.pop_front();
                if (job.reply->cancelled()) {
                    ++counters_.cancelled;
                    job.reply->push(ReplyEvent::failed(cancelled_error()));
                    continue;
                }
                admitted.push_back(std::move(job));
                --free;
            }
            counters_.queued = queue_.size();
        }
        for (auto& job : admitted) {
            auto reply = job.reply;
            try {
                active_.push_back(admit(std::move(job)));
            } catch (const ForwardCancelled&) {
                {
                    std::lock_guard lock(mutex_);
                    ++counters_.cancelled;
                }
                reply->push(ReplyEvent::failed(cancelled_error()));
            } catch (...) {
                fail_job(reply, to_api_error(std::current_exception()));
            }
        }
        {
            std::lock_guard lock(mutex_);
            counters_.busy = active_.size();
        }
        for (size_t i = 0; i < active_.size();) {
            Active& a = *active_[i];
            bool more = false;
            try {
                more = advance(a);
            } catch (...) {
                fail_job(a.job.reply, to_api_error(std::current_exception()));
            }
            if (more) {
                ++i;
                continue;
            }
            release(a);
            active_.erase(active_.begin() + std::ptrdiff_t(i));
        }
        std::lock_guard lock(mutex_);
        counters_.busy = active_.size();
    }
    // Shutting down: everyone still waiting hears about it.
    std::deque<Job> left;
    {
        std::lock_guard lock(mutex_);
        left.swap(queue_);
    }
    for (auto& job : left) fail_job(job.reply, ApiError::overloaded("the server is shutting down"));
    for (auto& a : active_) fail_job(a->job.reply, ApiError::overloaded("the server is shutting down"));
    active_.clear();
}

}  // namespace flashmoe::server
