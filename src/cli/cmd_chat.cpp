// flashmoe chat MODEL: interactive multi-turn chat in the terminal. Each turn renders the whole
// conversation with the chat template and runs it through one Session, which reuses the work of
// earlier turns (only the new tokens run). Replies stream as they are generated; reasoning shows
// dimmed (or hidden); a dim status line follows each reply. Commands start with '/' (see kHelp).
// Ctrl-C stops a reply and keeps the chat; Ctrl-C twice at the prompt, or Ctrl-D, exits.
#include "cli/chat_conversation.h"
#include "cli/chat_line_editor.h"
#include "cli/chat_reply.h"
#include "cli/chat_terminal.h"
#include "cli/command.h"
#include "cli/options.h"
#include "engine/chat_prompt.h"
#include "engine/generate.h"
#include "engine/loaded_model.h"
#include "engine/run_stats.h"
#include "util/error.h"
#include "util/progress.h"
#include "util/sys.h"

#include <fmt/format.h>

#include <algorithm>
#include <charconv>
#include <clocale>

namespace flashmoe::cli {
namespace {

constexpr const char* kHelp =
    "  /help           this list\n"
    "  /reset          start a new conversation (keeps the system message)\n"
    "  /system TEXT    set the system message and start anew; /system alone clears it\n"
    "  /save FILE      write the conversation as JSON messages\n"
    "  /load FILE      read a conversation saved by /save (or any JSON array of messages)\n"
    "  /k N            routed experts per token (0 = the model's); /k alone shows it\n"
    "  /stats          figures of the last reply and of the whole chat\n"
    "  /exit           quit (also Ctrl-D, or Ctrl-C twice at the prompt)\n"
    "  Ctrl-C stops a reply; a line ending in \\ continues on the next.\n";

struct ChatArgs {
    std::string model, system, load, history;
    std::optional<int64_t> n;
    int64_t k = 0, batch = 2048;
    bool no_think = false, hide_thinking = false, ignore_eos = false, no_history = false;
    SamplingFlags sampling;
    ModelFlags model_flags;
};

// What the chat has done so far, for /stats.
struct ChatTotals {
    int64_t replies = 0, generated = 0, prompt_processed = 0, prompt_reused = 0;
    double prefill_seconds = 0, decode_seconds = 0;
    std::optional<RunStats> last;
};

class ChatApp {
public:
    ChatApp(ChatArgs args, std::unique_ptr<LoadedModel> model)
        : a_(std::move(args)),
          model_(std::move(model)),
          defaults_(model_->generation_defaults()),
          session_(model_->forward()),
          out_(stdout),
          err_(stderr),
          k_(a_.k) {
        sampling_ = resolve_sampling(a_.sampling, defaults_.sampling);
        conv_.system = a_.system;
        store_ = model_->expert_store();
        if (store_) at_start_ = store_->stats();
    }

    int run() {
        LineEditor editor(a_.no_history ? "" : (a_.history.empty() ? default_history_file() : a_.history));
        if (!a_.load.empty()) command("/load " + a_.load);
        note(fmt::format("flashmoe chat: {} ({} experts, k={}). /help for commands, Ctrl-D to exit.",
                         model_->path(), model_->config().num_experts, effective_k()));
        InterruptGuard guard;
        bool interrupted_at_prompt = false;
        for (;;) {
            LineEditor::Result r = editor.read("> ");
            if (r.status == LineEditor::Status::Eof) break;
            if (r.status == LineEditor::Status::Interrupted) {
                InterruptGuard::clear();
                if (interrupted_at_prompt) break;
                interrupted_at_prompt = true;
                fmt::print("\n");
                note("(Ctrl-C again or Ctrl-D to exit)");
                continue;
            }
            interrupted_at_prompt = false;
            std::string line = trim(r.text);
            if (line.empty()) continue;
            try {
                if (line[0] == '/') {
                    if (!command(line)) break;
                } else {
                    turn(r.text);
                }
            } catch (const Error& e) {
                // The chat goes on: the session resets itself after a failed forward.
                fmt::print(stderr, "error: {}\n", e.what());
            }
        }
        if (editor.interactive()) fmt::print("\n");
        return 0;
    }

private:
    static std::string trim(const std::string& s) {
        size_t b = s.find_first_not_of(" \t\r\n"), e = s.find_last_not_of(" \t\r\n");
        return b == std::string::npos ? std::string() : s.substr(b, e - b + 1);
    }

    void note(const std::string& text) { fmt::print("{}{}{}\n", out_.dim(), text, out_.reset()); }
    int64_t effective_k() const { return k_ > 0 ? k_ : model_->config().num_experts_per_tok; }

    // Runs one user turn: the reply streams to stdout, then the status line.
    void turn(const std::string& user_text) {
        nlohmann::ordered_json user = {{"role", "user"}, {"content", user_text}};
        nlohmann::ordered_json messages = conv_.messages();
        messages.push_back(user);
        ChatPrompt cp = build_chat_prompt(*model_, messages, nullptr, {{"enable_thinking", !a_.no_think}});

        GenerateOptions go;
        go.max_new_tokens = a_.n ? *a_.n : defaults_.max_new_tokens;
        go.k = k_;
        if (!a_.ignore_eos) go.stop_tokens = defaults_.stop_tokens;
        go.boundaries = cp.boundaries;
        go.prefill.max_batch = a_.batch;
        PromptProgress progress;
        go.prefill.on_progress = [&](int64_t done, int64_t total) {
            progress.update(done, total);
            return InterruptGuard::count() == 0;
        };

        ReplyPrinter printer(model_->tokenizer(), stdout,
                             {.split_reasoning = true, .opens_thinking = cp.opens_thinking,
                              .hide_thinking = a_.hide_thinking});
        // A fresh sampler per reply (the repetition penalty counts this prompt); the seed moves on
        // each reply so that --seed reproduces the whole chat without repeating one draw sequence.
        SamplingParams params = sampling_;
        params.seed += uint64_t(totals_.replies);
        Sampler sampler(params);
        const auto& stops = defaults_.stop_tokens;
        ExpertStoreStats before = store_ ? store_->stats() : ExpertStoreStats{}, after_prompt = before;
        bool first = true;
        RunStats rs;
        InterruptGuard::clear();
        InterruptGuard::set_replying(true);
        try {
            rs.generation = generate(session_, cp.tokens, go, sampler, [&](int32_t token) {
                if (first) {
                    progress.erase();
                    if (store_) after_prompt = store_->stats();
                    first = false;
                }
                if (std::find(stops.begin(), stops.end(), token) == stops.end()) printer.push(token);
                return InterruptGuard::count() == 0;
            });
        } catch (...) {
            InterruptGuard::set_replying(false);
            progress.erase();
            printer.finish();
            throw;
        }
        InterruptGuard::set_replying(false);
        progress.erase();
        printer.finish();
        const bool interrupted = InterruptGuard::count() > 0;
        InterruptGuard::clear();
        if (rs.generation.stopped_in_prompt) {
            note("[stopped before the reply began; the message was not added]");
            return;
        }
        conv_.turns.push_back(user);
        nlohmann::ordered_json reply = {{"role", "assistant"}, {"content", printer.content()}};
        std::string reasoning = trim(printer.reasoning());
        if (!reasoning.empty()) reply["reasoning_content"] = reasoning;
        conv_.turns.push_back(reply);

        rs.streamed = store_ != nullptr;
        rs.peak_rss = peak_rss_bytes();
        if (store_) {
            rs.prefill_io = after_prompt - before;
            rs.decode_io = store_->stats() - after_prompt;
        }
        const GenerateStats& g = rs.generation;
        totals_.replies++;
        totals_.generated += g.new_tokens;
        totals_.prompt_processed += g.prompt_tokens - g.cached_tokens;
        totals_.prompt_reused += g.cached_tokens;
        totals_.prefill_seconds += g.prefill_seconds;
        totals_.decode_seconds += g.decode_seconds;
        totals_.last = rs;

        std::string status = fmt::format("[{}{} tokens, {:.1f} tok/s, first token {:.2f} s, prompt {} new + {} reused",
                                         interrupted ? "stopped, " : "", g.new_tokens, g.decode_tok_s(),
                                         g.prefill_seconds, g.prompt_tokens - g.cached_tokens, g.cached_tokens);
        if (store_) {
            ExpertStoreStats all = store_->stats() - before;
            status += fmt::format(", expert hit rate {:.1f}%", all.hit_rate() * 100);
        }
        note(status + "]");
    }

    // Returns false to leave the chat.
    bool command(const std::string& line) {
        size_t space = line.find_first_of(" \t");
        std::string name = line.substr(0, space);
        std::string arg = space == std::string::npos ? "" : trim(line.substr(space));
        if (name == "/exit" || name == "/quit") return false;
        if (name == "/help" || name == "/?") {
            fmt::print("{}", kHelp);
        } else if (name == "/reset" || name == "/clear") {
            conv_.clear();
            session_.reset();
            note("new conversation");
        } else if (name == "/system") {
            conv_.system = arg;
            conv_.clear();
            note(arg.empty() ? "system message cleared; new conversation" : "system message set; new conversation");
        } else if (name == "/save") {
            save_conversation(conv_, arg);
            note(fmt::format("saved {} messages to {}", conv_.messages().size(), arg));
        } else if (name == "/load") {
            conv_ = load_conversation(arg);
            note(fmt::format("loaded {} messages ({} user turns) from {}", conv_.messages().size(),
                             conv_.user_turns(), arg));
            print_transcript();
        } else if (name == "/k") {
            set_k(arg);
        } else if (name == "/stats") {
            print_stats();
        } else {
            fmt::print(stderr, "unknown command {} (/help lists them)\n", name);
        }
        return true;
    }

    void set_k(const std::string& arg) {
        if (arg.empty()) {
            note(fmt::format("k = {} routed experts per token (of {})", effective_k(), model_->config().num_experts));
            return;
        }
        int64_t k = -1;
        auto [ptr, ec] = std::from_chars(arg.data(), arg.data() + arg.size(), k);
        if (ec != std::errc() || ptr != arg.data() + arg.size() || k < 0 || k > model_->config().num_experts) {
            fail(ErrorKind::BadInput, "/k takes a number from 0 (the model's) to {}", model_->config().num_experts);
        }
        k_ = k;
        note(fmt::format("k = {}; the next reply reprocesses the conversation", effective_k()));
    }

    // A loaded conversation, shown briefly so the user knows where it stands.
    void print_transcript() {
        for (const auto& m : conv_.messages()) {
            std::string content = m.contains("content") && m["content"].is_string() ? m["content"].get<std::string>() : "";
            if (content.size() > 200) content = content.substr(0, 200) + "...";
            std::replace(content.begin(), content.end(), '\n', ' ');
            note(fmt::format("{}: {}", m.value("role", "?"), content));
        }
    }

    void print_stats() {
        if (totals_.last) fmt::print("last reply:\n{}", totals_.last->describe());
        fmt::print("chat: {} replies, {} tokens generated, prompt tokens {} processed + {} reused, "
                   "{} tokens in context, {:.1f} s prompt + {:.1f} s generating\n",
                   totals_.replies, totals_.generated, totals_.prompt_processed, totals_.prompt_reused,
                   session_.tokens().size(), totals_.prefill_seconds, totals_.decode_seconds);
        if (store_) {
            ExpertStoreStats s = store_->stats() - at_start_;
            fmt::print("experts: hit rate {:.1f}%, {} read from disk in {} reads\n", s.hit_rate() * 100,
                       format_bytes(s.bytes_read), s.reads);
        }
        fmt::print("k = {}, peak RSS {}\n", effective_k(), format_bytes(peak_rss_bytes()));
    }

    ChatArgs a_;
    std::unique_ptr<LoadedModel> model_;
    const GenerationDefaults& defaults_;
    Session session_;
    TermStyle out_, err_;
    int64_t k_;
    SamplingParams sampling_;
    Conversation conv_;
    ExpertStore* store_ = nullptr;
    ExpertStoreStats at_start_;
    ChatTotals totals_;
};

CommandRegistration reg("chat", [](CLI::App& app) -> std::function<int()> {
    auto a = std::make_shared<ChatArgs>();
    auto* cmd = app.add_subcommand("chat", "interactive multi-turn chat in the terminal");
    cmd->add_option("model", a->model, "packed model, or HF/MLX snapshot directory")->required();
    cmd->add_option("-n,--max-tokens", a->n, "tokens per reply at most (default: the model's, or 512)");
    cmd->add_option("--k", a->k, "routed experts per token (default: the model's)");
    cmd->add_option("--system", a->system, "system message");
    cmd->add_option("--load", a->load, "start from a conversation saved with /save");
    cmd->add_flag("--no-think", a->no_think, "render the chat template with thinking off");
    cmd->add_flag("--hide-thinking", a->hide_thinking, "do not show the reasoning part of replies");
    cmd->add_flag("--ignore-eos", a->ignore_eos, "do not stop at end-of-turn tokens (only -n or Ctrl-C)");
    cmd->add_option("--batch", a->batch, "prompt tokens per forward batch (0 = whole prompt)")->capture_default_str();
    cmd->add_option("--history", a->history, "line history file (default: $FLASHMOE_HISTORY or ~/.flashmoe_history)");
    cmd->add_flag("--no-history", a->no_history, "keep no line history on disk");
    add_sampling_flags(cmd, a->sampling);
    add_model_flags(cmd, a->model_flags);
    return [a]() {
        if (a->n && *a->n < 0) fail(ErrorKind::BadInput, "-n must not be negative");
        if (a->k < 0) fail(ErrorKind::BadInput, "--k must not be negative");
        if (a->batch < 0) fail(ErrorKind::BadInput, "--batch must not be negative");
        std::setlocale(LC_CTYPE, "");  // libedit edits UTF-8 input by the locale's rules
        auto model = open_model(a->model, a->model_flags);
        if (a->k > model->config().num_experts) {
            fail(ErrorKind::BadInput, "--k {} is more than the model's {} experts", a->k, model->config().num_experts);
        }
        ChatApp chat(*a, std::move(model));
        return chat.run();
    };
});

}  // namespace
}  // namespace flashmoe::cli
