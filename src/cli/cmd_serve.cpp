// flashmoe serve MODEL [--host H] [--port P] [--api-key KEY]: the OpenAI-compatible HTTP server.
#include "cli/command.h"
#include "cli/options.h"
#include "engine/loaded_model.h"
#include "server/engine_loop.h"
#include "server/server.h"
#include "util/error.h"
#include "util/sys.h"

#include <fmt/format.h>

#include <atomic>
#include <chrono>
#include <csignal>
#include <cstdio>
#include <filesystem>
#include <thread>

namespace flashmoe::cli {
namespace {

struct ServeArgs {
    std::string model, host = "127.0.0.1", api_key, max_body = "8MiB", model_name, script;
    int port = 8000;
    int64_t ctx_size = 0, k = 0;
    size_t parallel = 4, http_threads = 32, max_queue = 64;
    SamplingFlags sampling;
    ModelFlags model_flags;
};

std::atomic<bool> g_stop_requested{false};
extern "C" void on_stop_signal(int) { g_stop_requested.store(true); }

std::string default_model_name(const std::string& path) {
    std::filesystem::path p(path);
    while (!p.empty() && p.filename().empty()) p = p.parent_path();  // "dir/" -> "dir"
    std::string name = p.filename().string();
    return name.empty() ? "flashmoe" : name;
}

CommandRegistration reg("serve", [](CLI::App& app) -> std::function<int()> {
    auto a = std::make_shared<ServeArgs>();
    auto* cmd = app.add_subcommand("serve", "serve the model over an OpenAI-compatible HTTP API");
    cmd->add_option("model", a->model, "packed model, or HF/MLX snapshot directory")->required();
    cmd->add_option("--host", a->host, "address to listen on")->capture_default_str();
    cmd->add_option("--port", a->port, "port to listen on (0: any free port, printed at start)")->capture_default_str();
    cmd->add_option("--api-key", a->api_key, "require 'Authorization: Bearer KEY' on every route but /health")
        ->envname("FLASHMOE_API_KEY");
    cmd->add_option("--ctx-size", a->ctx_size, "prompt + completion tokens per request (default: the model's)");
    cmd->add_option("--max-body", a->max_body, "largest request body, e.g. 8MiB (larger: 413)")->capture_default_str();
    cmd->add_option("--parallel", a->parallel, "sequence slots: requests generating at once, each with its own cache")
        ->capture_default_str();
    cmd->add_option("--http-threads", a->http_threads, "HTTP worker threads (each open stream holds one)")
        ->capture_default_str();
    cmd->add_option("--max-queue", a->max_queue, "requests waiting for a slot before new ones get 503")
        ->capture_default_str();
    cmd->add_option("--served-model-name,--alias", a->model_name, "the model's name in the API (default: the directory name)");
    cmd->add_option("--k", a->k, "routed experts per token (default: the model's)");
    // For tests only, hence hidden: replies whose last user message contains an entry's "match"
    // are that entry's "output" tokens instead of samples (tool-call and reasoning paths on a model
    // that never emits them). The model still runs every token.
    cmd->add_option("--script-output", a->script, "JSON [{match, output}] of scripted replies (tests)")->group("");
    add_sampling_flags(cmd, a->sampling);
    add_model_flags(cmd, a->model_flags);
    return [a]() {
        if (a->port < 0 || a->port > 65535) fail(ErrorKind::BadInput, "--port must be between 0 and 65535");
        if (a->ctx_size < 0) fail(ErrorKind::BadInput, "--ctx-size must not be negative");
        if (a->k < 0) fail(ErrorKind::BadInput, "--k must be positive");
        if (a->parallel < 1 || a->parallel > 256) fail(ErrorKind::BadInput, "--parallel must be between 1 and 256");
        if (a->max_queue < 1) fail(ErrorKind::BadInput, "--max-queue must be at least 1");
        const uint64_t max_body = parse_size(a->max_body, "--max-body");
        if (max_body < 1024) fail(ErrorKind::BadInput, "--max-body must be at least 1KiB");
        std::vector<server::ScriptEntry> script;
        if (!a->script.empty()) script = server::load_script(a->script);

        auto model = open_model(a->model, a->model_flags);
        const GenerationDefaults& defaults = model->generation_defaults();
        const int64_t model_ctx = model->config().max_position_embeddings;
        int64_t ctx = a->ctx_size > 0 ? a->ctx_size : model_ctx;
        if (ctx <= 0) fail(ErrorKind::BadInput, "the model states no context length: give --ctx-size");
        if (model_ctx > 0 && ctx > model_ctx) {
            fmt::print(stderr, "flashmoe serve: warning: --ctx-size {} is beyond the model's {}\n", ctx, model_ctx);
        }

        server::ServerOptions so;
        so.host = a->host;
        so.port = a->port;
        so.api_key = a->api_key;
        so.max_body = size_t(max_body);
        so.context = ctx;
        so.model_name = a->model_name.empty() ? default_model_name(a->model) : a->model_name;
        so.http_threads = a->http_threads;
        so.sampling = resolve_sampling(a->sampling, defaults.sampling);
        so.seed = a->sampling.seed;  // --seed fixes the seed of requests that bring none
        so.stop_tokens = defaults.stop_tokens;

        // A client that vanishes must not kill the server through SIGPIPE.
        std::signal(SIGPIPE, SIG_IGN);
        std::signal(SIGINT, on_stop_signal);
        std::signal(SIGTERM, on_stop_signal);

        server::EngineLoop engine(*model, {.slots = a->parallel, .k = a->k, .max_queue = a->max_queue,
                                           .script = std::move(script)});
        server::Server http(*model, engine, so);
        const int port = http.bind();
        fmt::print(stderr, "flashmoe serve: listening on http://{}:{} (model {}, {} slots, context {})\n", so.host,
                   port, so.model_name, a->parallel, ctx);
        std::fflush(stderr);

        // Signal handlers may only set a flag; this thread turns it into a clean stop.
        std::atomic<bool> done{false};
        std::thread watcher([&] {
            while (!done.load()) {
                if (g_stop_requested.load()) http.stop();  // again until listen() has started
                std::this_thread::sleep_for(std::chrono::milliseconds(100));
            }
        });
        http.listen();
        done.store(true);
        watcher.join();
        engine.stop();
        fmt::print(stderr, "flashmoe serve: stopped\n");
        return 0;
    };
});

}  // namespace
}  // namespace flashmoe::cli
