// flashmoe run MODEL (-p TEXT | -f FILE | --ids 1,2,3 | stdin) [--chat] -n N: one-shot generation.
// The reply streams to stdout (plain text when stdout is not a terminal), figures go to stderr;
// a long prompt shows its progress on a terminal's stderr. Ctrl-C ends the generation early
// (exit code 130, after the output and --stats are finished).
#include "cli/chat_reply.h"
#include "cli/chat_terminal.h"
#include "cli/command.h"
#include "cli/options.h"
#include "engine/chat_prompt.h"
#include "engine/generate.h"
#include "engine/loaded_model.h"
#include "engine/run_stats.h"
#include "text/tokenizer.h"
#include "util/error.h"
#include "util/mapped_file.h"
#include "util/sys.h"

#include <fmt/format.h>
#include <unistd.h>

#include <algorithm>
#include <cstdio>
#include <iostream>
#include <iterator>

namespace flashmoe::cli {
namespace {

struct RunArgs {
    std::string model, prompt, file, ids, system;
    std::optional<int64_t> n;
    int64_t k = 0, batch = 2048;
    bool chat = false, no_think = false, hide_thinking = false, print_ids = false, stats = false, ignore_eos = false;
    SamplingFlags sampling;
    ModelFlags model_flags;
};

std::string read_prompt_text(const RunArgs& a) {
    if (!a.prompt.empty()) return a.prompt;
    if (!a.file.empty()) return read_text_file(a.file);
    if (::isatty(STDIN_FILENO)) fail(ErrorKind::BadInput, "no prompt: give -p TEXT, -f FILE, --ids, or pipe text in");
    std::string text((std::istreambuf_iterator<char>(std::cin)), std::istreambuf_iterator<char>());
    if (text.empty()) fail(ErrorKind::BadInput, "the prompt from standard input is empty");
    return text;
}

CommandRegistration reg("run", [](CLI::App& app) -> std::function<int()> {
    auto a = std::make_shared<RunArgs>();
    auto* cmd = app.add_subcommand("run", "generate a continuation of a prompt (or one chat reply with --chat)");
    cmd->add_option("model", a->model, "packed model, or HF/MLX snapshot directory")->required();
    auto* p = cmd->add_option("-p,--prompt", a->prompt, "prompt text");
    auto* f = cmd->add_option("-f,--file", a->file, "read the prompt from a file");
    auto* ids = cmd->add_option("--ids", a->ids, "prompt token ids, comma-separated");
    p->excludes(f)->excludes(ids);
    f->excludes(ids);
    cmd->add_option("-n,--max-tokens", a->n, "tokens to generate (default: the model's, or 512)");
    cmd->add_option("--k", a->k, "routed experts per token (default: the model's)");
    cmd->add_flag("--chat", a->chat, "wrap the prompt in the model's chat template as a user message");
    cmd->add_option("--system", a->system, "system message (with --chat)");
    cmd->add_flag("--no-think", a->no_think, "render the chat template with thinking off");
    cmd->add_flag("--hide-thinking", a->hide_thinking, "do not print the reasoning part of a chat reply");
    cmd->add_flag("--ignore-eos", a->ignore_eos, "do not stop at end-of-text tokens (only at -n or Ctrl-C)");
    cmd->add_option("--batch", a->batch, "prompt tokens per forward batch (0 = whole prompt)")->capture_default_str();
    cmd->add_flag("--print-ids", a->print_ids, "print generated token ids instead of text");
    cmd->add_flag("--stats", a->stats, "print speed, I/O and memory figures at the end (stderr)");
    add_sampling_flags(cmd, a->sampling);
    add_model_flags(cmd, a->model_flags);
    return [a]() {
        if (a->n && *a->n < 0) fail(ErrorKind::BadInput, "-n must not be negative");
        if (a->k < 0) fail(ErrorKind::BadInput, "--k must be positive");
        if (a->batch < 0) fail(ErrorKind::BadInput, "--batch must not be negative");
        if (a->chat && !a->ids.empty()) fail(ErrorKind::BadInput, "--chat needs a text prompt, not --ids");
        auto model = open_model(a->model, a->model_flags);
        const GenerationDefaults& defaults = model->generation_defaults();
        SamplingParams sampling = resolve_sampling(a->sampling, defaults.sampling);

        // The prompt: ids, plain text, or a chat turn.
        std::vector<int32_t> prompt;
        std::vector<int64_t> boundaries;
        bool opens_thinking = false;
        std::string echo_prompt;  // printed before the continuation, once the prompt is processed
        const bool text_out = !a->print_ids;
        if (!a->ids.empty()) {
            prompt = parse_ids(a->ids);
        } else if (a->chat) {
            nlohmann::ordered_json messages = nlohmann::ordered_json::array();
            if (!a->system.empty()) messages.push_back({{"role", "system"}, {"content", a->system}});
            messages.push_back({{"role", "user"}, {"content", read_prompt_text(*a)}});
            nlohmann::ordered_json extra = {{"enable_thinking", !a->no_think}};
            ChatPrompt cp = build_chat_prompt(*model, messages, nullptr, extra);
            prompt = std::move(cp.tokens);
            boundaries = std::move(cp.boundaries);
            opens_thinking = cp.opens_thinking;
        } else {
            std::string text = read_prompt_text(*a);
            prompt = model->tokenizer().encode(text);
            echo_prompt = text;  // a continuation reads best after its prompt
        }
        if (prompt.empty()) fail(ErrorKind::BadInput, "the prompt encodes to no tokens");

        Session session(model->forward());
        Sampler sampler(sampling);
        GenerateOptions go;
        go.max_new_tokens = a->n ? *a->n : defaults.max_new_tokens;
        go.k = a->k;
        if (!a->ignore_eos) go.stop_tokens = defaults.stop_tokens;
        go.boundaries = boundaries;
        go.prefill.max_batch = a->batch;
        PromptProgress progress;
        go.prefill.on_progress = [&](int64_t done, int64_t total) {
            progress.update(done, total);
            return InterruptGuard::count() == 0;
        };

        // Text goes through the reply printer (dim reasoning, no escape codes in pipes); --print-ids
        // writes the ids comma-separated.
        std::optional<ReplyPrinter> printer;
        if (text_out) {
            printer.emplace(model->tokenizer(), stdout,
                            ReplyOptions{.split_reasoning = a->chat, .opens_thinking = opens_thinking,
                                         .hide_thinking = a->hide_thinking});
        }
        const auto& stops = defaults.stop_tokens;
        ExpertStore* store = model->expert_store();
        ExpertStoreStats at_start = store ? store->stats() : ExpertStoreStats{}, after_prompt = at_start;
        bool first = true;
        RunStats rs;
        InterruptGuard interrupts;  // Ctrl-C ends the generation; the output and --stats still finish
        InterruptGuard::set_replying(true);
        rs.generation = generate(session, prompt, go, sampler, [&](int32_t token) {
            if (first) {
                progress.erase();
                if (store) after_prompt = store->stats();
                if (printer && !echo_prompt.empty()) printer->echo(echo_prompt);
            }
            if (printer) {
                if (std::find(stops.begin(), stops.end(), token) == stops.end()) printer->push(token);
            } else {
                fmt::print("{}{}", first ? "" : ",", token);
                std::fflush(stdout);
            }
            first = false;
            return InterruptGuard::count() == 0;
        });
        InterruptGuard::set_replying(false);
        progress.erase();
        if (printer) {
            if (first) printer->echo(echo_prompt);  // nothing was generated (-n 0, or stopped)
            printer->finish();
        } else {
            fmt::print("\n");
        }
        std::fflush(stdout);
        const bool interrupted = InterruptGuard::count() > 0;
        if (a->stats) {
            rs.streamed = store != nullptr;
            if (store) {
                rs.prefill_io = after_prompt - at_start;
                rs.decode_io = store->stats() - after_prompt;
            }
            rs.peak_rss = peak_rss_bytes();
            fmt::print(stderr, "{}", rs.describe());
        }
        return interrupted ? 130 : 0;
    };
});

}  // namespace
}  // namespace flashmoe::cli
