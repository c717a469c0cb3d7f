#include "server/server.h"

#include "engine/loaded_model.h"
#include "server/api_error.h"
#include "server/engine_loop.h"
#include "server/request.h"
#include "server/response.h"
#include "server/routes.h"
#include "util/error.h"

#include <fmt/format.h>
#include <httplib.h>

#include <atomic>
#include <chrono>

namespace flashmoe::server {
namespace {

using json = nlohmann::ordered_json;
constexpr auto kPollInterval = std::chrono::milliseconds(200);
// A stream with nothing to say (queued, or a long prompt running) still writes an SSE comment this
// often: clients ignore it, and a failed write tells us the client has gone.
constexpr auto kKeepAlive = std::chrono::seconds(3);

void send_json(httplib::Response& res, int status, const json& body) {
    res.status = status;
    res.set_content(dump_json(body), "application/json");
}

void send_error(httplib::Response& res, const ApiError& e) { send_json(res, e.status(), e.to_json()); }

// Constant-time comparison, so the key cannot be guessed byte by byte from response times.
bool same_secret(std::string_view a, std::string_view b) {
    unsigned diff = a.size() == b.size() ? 0u : 1u;
    for (size_t i = 0; i < a.size() && i < b.size(); ++i) diff |= unsigned(a[i] ^ b[i]);
    return diff == 0;
}

// What a streaming response remembers between calls of its content provider.
struct StreamState {
    std::shared_ptr<ReplyChannel> reply;
    ResponseMeta meta;
    bool include_usage = false;
    bool started = false;
    bool finished = false;
    size_t next_tool_index = 0;
    std::chrono::steady_clock::time_point last_write = std::chrono::steady_clock::now();
};

// The SSE text for one engine event; sets `finished` at the end of the response.
std::string render_event(StreamState& st, ReplyEvent& ev) {
    std::string out;
    switch (ev.kind) {
        case ReplyEvent::Kind::Delta:
            for (auto& chunk : delta_chunks(st.meta, ev.delta, &st.next_tool_index)) out += sse_event(chunk);
            break;
        case ReplyEvent::Kind::Done:
            out += sse_event(final_chunk(st.meta, ev.finish_reason));
            if (st.include_usage) out += sse_event(usage_chunk(st.meta, ev.usage));
            out += kSseDone;
            st.finished = true;
            break;
        case ReplyEvent::Kind::Failed:
            // The status line is long gone: the error travels as an event, which clients raise.
            out += sse_event(ev.error->to_json());
            out += kSseDone;
            st.finished = true;
            break;
    }
    return out;
}

}  // namespace

struct Server::Impl {
    LoadedModel& model;
    EngineLoop& engine;
    ServerOptions options;
    httplib::Server http;
    int64_t started_at = 0;
    std::atomic<bool> stopping{false};  // stop(): requests in flight are cancelled, not finished

    Impl(LoadedModel& m, EngineLoop& e, ServerOptions o) : model(m), engine(e), options(std::move(o)) {}

    void setup();
    void generate(const httplib::Request& req, httplib::Response& res, Endpoint endpoint);
    void wait_whole(const std::shared_ptr<ReplyChannel>& reply, const ResponseMeta& meta, httplib::Response& res);
    void stream(std::shared_ptr<ReplyChannel> reply, const ResponseMeta& meta, bool include_usage,
                httplib::Response& res);
};

void Server::Impl::setup() {
    started_at = std::chrono::duration_cast<std::chrono::seconds>(
                     std::chrono::system_clock::now().time_since_epoch())
                     .count();
    const size_t threads = std::max<size_t>(options.http_threads, 4);
    // cpp-httplib's interface takes ownership of a raw pointer here.
    http.new_task_queue = [threads] { return new httplib::ThreadPool(threads); };
    http.set_payload_max_length(options.max_body);
    http.set_keep_alive_timeout(5);

    // Browser front ends call from other origins; their preflight OPTIONS carries no key.
    http.set_default_headers({{"Access-Control-Allow-Origin", "*"}});
    http.Options(R"(/.*)", [](const httplib::Request&, httplib::Response& res) {
        res.set_header("Access-Control-Allow-Methods", "GET, POST, OPTIONS");
        res.set_header("Access-Control-Allow-Headers", "Authorization, Content-Type");
        res.status = 204;
    });
    http.set_pre_routing_handler([this](const httplib::Request& req, httplib::Response& res) {
        if (options.api_key.empty() || req.path == "/health" || req.method == "OPTIONS") {
            return httplib::Server::HandlerResponse::Unhandled;
        }
        std::string auth = req.get_header_value("Authorization");
        if (auth.starts_with("Bearer ") && same_secret(std::string_view(auth).substr(7), options.api_key)) {
            return httplib::Server::HandlerResponse::Unhandled;
        }
        send_error(res, ApiError::unauthorized());
        return httplib::Server::HandlerResponse::Handled;
    });
    // Statuses cpp-httplib sets itself (404 no route, 413 body too large, 400 bad framing) get an
    // OpenAI error body; responses that already have one are left alone.
    http.set_error_handler([this](const httplib::Request& req, httplib::Response& res) {
        if (!res.body.empty()) return;
        ApiError e = error_for_status(res.status, req.method, req.path, options.max_body);
        res.set_content(dump_json(e.to_json()), "application/json");
    });
    http.set_exception_handler([](const httplib::Request&, httplib::Response& res, std::exception_ptr ep) {
        send_error(res, to_api_error(ep));
    });
    http.set_logger([](const httplib::Request& req, const httplib::Response& res) {
        fmt::print(stderr, "{} {} {}\n", req.method, req.path, res.status);
    });

    http.Get("/health", [this](const httplib::Request&, httplib::Response& res) {
        EngineCounters c = engine.counters();
        send_json(res, 200,
                  {{"status", "ok"},
                   {"slots", c.slots},
                   {"slots_busy", c.busy},
                   {"queued", c.queued},
                   {"requests_completed", c.completed},
                   {"requests_cancelled", c.cancelled},
                   {"requests_failed", c.failed}});
    });
    http.Get("/v1/models", [this](const httplib::Request&, httplib::Response& res) {
        send_json(res, 200, render_model_list(options.model_name, started_at, options.context));
    });
    http.Post("/v1/chat/completions", [this](const httplib::Request& req, httplib::Response& res) {
        generate(req, res, Endpoint::Chat);
    });
    http.Post("/v1/completions", [this](const httplib::Request& req, httplib::Response& res) {
        generate(req, res, Endpoint::Completion);
    });
}

void Server::Impl::generate(const httplib::Request& req, httplib::Response& res, Endpoint endpoint) {
    try {
        json body = parse_body(req.body);
        ApiRequest r = endpoint == Endpoint::Chat ? parse_chat_request(body, options.sampling)
                                                  : parse_completion_request(body, options.sampling);
        if (options.seed && !body.contains("seed")) r.sampling.seed = *options.seed;
        JobSpec spec = prepare_job(model, r, JobLimits{.context = options.context}, options.stop_tokens);
        ResponseMeta meta = new_response_meta(endpoint, options.model_name);
        auto reply = engine.submit(std::move(spec));
        if (r.stream) stream(std::move(reply), meta, r.include_usage, res);
        else wait_whole(reply, meta, res);
    } catch (...) {
        send_error(res, to_api_error(std::current_exception()));
    }
}

void Server::Impl::wait_whole(const std::shared_ptr<ReplyChannel>& reply, const ResponseMeta& meta,
                              httplib::Response& res) {
    OutputDelta result;
    for (;;) {
        if (stopping.load()) reply->cancel();  // the engine answers with a cancellation
        std::optional<ReplyEvent> ev = reply->pop(kPollInterval);
        if (!ev) continue;
        switch (ev->kind) {
            case ReplyEvent::Kind::Delta: result.append(std::move(ev->delta)); break;
            case ReplyEvent::Kind::Done:
                send_json(res, 200, render_completion(meta, result, ev->finish_reason, ev->usage));
                return;
            case ReplyEvent::Kind::Failed: send_error(res, *ev->error); return;
        }
    }
}

void Server::Impl::stream(std::shared_ptr<ReplyChannel> reply, const ResponseMeta& meta, bool include_usage,
                          httplib::Response& res) {
    auto st = std::make_shared<StreamState>();
    st->reply = std::move(reply);
    st->meta = meta;
    st->include_usage = include_usage;
    res.set_header("Cache-Control", "no-cache");
    res.set_chunked_content_provider(
        "text/event-stream",
        [st, this](size_t, httplib::DataSink& sink) {
            if (stopping.load()) {
                st->reply->cancel();
                return false;
            }
            std::string out;
            if (!st->started) {
                out = sse_event(first_chunk(st->meta));  // the role, at once: the client knows we are alive
                st->started = true;
            } else if (std::optional<ReplyEvent> ev = st->reply->pop(kPollInterval)) {
                out = render_event(*st, *ev);
            } else if (std::chrono::steady_clock::now() - st->last_write >= kKeepAlive) {
                out = ": keep-alive\n\n";
            } else {
                return true;  // nothing yet; cpp-httplib calls again
            }
            st->last_write = std::chrono::steady_clock::now();
            if (!sink.write(out.data(), out.size())) {
                st->reply->cancel();  // the client went away: stop its generation
                return false;
            }
            if (st->finished) sink.done();
            return true;
        },
        [st](bool) {
            if (!st->finished) st->reply->cancel();
        });
}

Server::Server(LoadedModel& model, EngineLoop& engine, ServerOptions options)
    : impl_(std::make_unique<Impl>(model, engine, std::move(options))) {
    impl_->setup();
}

Server::~Server() { stop(); }

int Server::bind() {
    const ServerOptions& o = impl_->options;
    if (o.port == 0) {
        int port = impl_->http.bind_to_any_port(o.host);
        if (port <= 0) fail(ErrorKind::Io, "cannot bind {} (any port)", o.host);
        return port;
    }
    if (!impl_->http.bind_to_port(o.host, o.port)) {
        fail(ErrorKind::Io, "cannot bind {}:{} (in use, or not an address of this machine?)", o.host, o.port);
    }
    return o.port;
}

void Server::listen() { impl_->http.listen_after_bind(); }

void Server::stop() {
    impl_->stopping.store(true);
    if (impl_->http.is_running()) impl_->http.stop();
}

}  // namespace flashmoe::server
