// The HTTP front of `flashmoe serve`: an OpenAI-compatible API on cpp-httplib.
//   POST /v1/chat/completions, POST /v1/completions, GET /v1/models, GET /health
// HTTP threads (cpp-httplib's pool) parse and validate a request, render its prompt, queue it on
// the EngineLoop and then wait on its reply channel: the whole body at the end, or Server-Sent
// Events as tokens arrive. A streaming client that disconnects cancels its job (the next write
// fails; an idle stream writes an SSE comment every few seconds to find out). cpp-httplib 0.11
// gives a handler no view of its socket, so a non-streaming client that leaves is only noticed
// when its reply is written. Every error leaves through ApiError (api_error.h) in OpenAI's shape.
// stop() cancels the requests in flight (they get 503 "cancelled") and returns listen().
//
// Ownership: the server borrows the model and the engine loop, which must outlive it. bind() and
// listen() are called once, from one thread; stop() from any thread. Failure: bind() throws
// Error(Io) when the address cannot be bound.
#pragma once

#include "engine/sampler.h"

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <vector>

namespace flashmoe {
class LoadedModel;
}

namespace flashmoe::server {

class EngineLoop;

struct ServerOptions {
    std::string host = "127.0.0.1";
    int port = 8000;  // 0: any free port (bind() says which)
    std::string api_key;  // non-empty: every route but /health needs "Authorization: Bearer KEY"
    size_t max_body = size_t(8) << 20;
    int64_t context = 4096;  // prompt + completion tokens per request
    std::string model_name;  // what /v1/models and responses call the model
    size_t http_threads = 32;
    SamplingParams sampling;           // defaults for fields a request leaves out
    std::optional<uint64_t> seed;      // for requests without one (else each gets a random seed)
    std::vector<int32_t> stop_tokens;  // end-of-turn ids
};

class Server {
public:
    Server(LoadedModel& model, EngineLoop& engine, ServerOptions options);
    ~Server();
    Server(const Server&) = delete;
    Server& operator=(const Server&) = delete;

    int bind();     // the bound port
    void listen();  // serves until stop()
    void stop();

private:
    struct Impl;
    std::unique_ptr<Impl> impl_;
};

}  // namespace flashmoe::server
