#include "cli/chat_terminal.h"

#include <fmt/format.h>
#include <signal.h>
#include <unistd.h>

#include <atomic>
#include <cstdlib>

namespace flashmoe::cli {

TermStyle::TermStyle(std::FILE* stream) : enabled_(::isatty(::fileno(stream)) != 0) {
    const char* term = std::getenv("TERM");
    if (term && std::string_view(term) == "dumb") enabled_ = false;
    if (std::getenv("NO_COLOR")) enabled_ = false;  // https://no-color.org convention
}

namespace {
std::atomic<int> g_presses{0};
std::atomic<bool> g_replying{false};
struct sigaction g_previous;

void on_sigint(int) {
    int n = g_presses.fetch_add(1) + 1;
    if (n >= 3 && g_replying.load()) {
        // Only async-signal-safe calls here.
        static const char msg[] = "\033[0m\n";
        ssize_t ignored = ::write(STDOUT_FILENO, msg, sizeof msg - 1);
        (void)ignored;
        ::_exit(130);
    }
}
}  // namespace

InterruptGuard::InterruptGuard() {
    struct sigaction sa {};
    sa.sa_handler = on_sigint;
    sigemptyset(&sa.sa_mask);
    sa.sa_flags = 0;  // no SA_RESTART: a blocked read returns EINTR
    ::sigaction(SIGINT, &sa, &g_previous);
    clear();
}

InterruptGuard::~InterruptGuard() { ::sigaction(SIGINT, &g_previous, nullptr); }

int InterruptGuard::count() { return g_presses.load(); }
void InterruptGuard::clear() { g_presses.store(0); }
void InterruptGuard::set_replying(bool replying) { g_replying.store(replying); }

PromptProgress::PromptProgress(int64_t min_tokens)
    : tty_(TermStyle(stderr).enabled()), min_tokens_(min_tokens), start_(std::chrono::steady_clock::now()) {}

void PromptProgress::update(int64_t done, int64_t total) {
    if (!tty_ || total < min_tokens_) return;
    if (done == 0) start_ = std::chrono::steady_clock::now();
    const double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - start_).count();
    std::string rate = done > 0 && secs > 0 ? fmt::format(", {:.0f} tok/s", double(done) / secs) : "";
    fmt::print(stderr, "\r\033[K\033[2mprompt: {} / {} tokens ({:.0f}%){}\033[0m", done, total,
               100.0 * double(done) / double(total), rate);
    std::fflush(stderr);
    shown_ = true;
}

void PromptProgress::erase() {
    if (!shown_) return;
    fmt::print(stderr, "\r\033[K");
    std::fflush(stderr);
    shown_ = false;
}

LoadingNotice::LoadingNotice(const std::string& what) : tty_(TermStyle(stderr).enabled()) {
    if (!tty_) return;
    fmt::print(stderr, "\033[2mloading {}...\033[0m", what);
    std::fflush(stderr);
}

LoadingNotice::~LoadingNotice() {
    if (!tty_) return;
    fmt::print(stderr, "\r\033[K");
    std::fflush(stderr);
}

}  // namespace flashmoe::cli
