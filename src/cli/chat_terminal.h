// Terminal helpers for the interactive front ends (chat, run): text styles that turn themselves off
// when the stream is not a terminal (no escape codes in pipes), Ctrl-C handling through a counter
// the generation loop polls, and a one-line progress display for a long prompt.
//
// Single-threaded use from the main thread; the SIGINT handler only touches an atomic counter (and,
// on the third press while a reply runs, restores the style and exits). Never throws.
#pragma once

#include <cstdint>
#include <cstdio>
#include <chrono>
#include <string>
#include <string_view>

namespace flashmoe::cli {

// SGR styles for one output stream; every call is a no-op when the stream is not a terminal.
class TermStyle {
public:
    explicit TermStyle(std::FILE* stream);
    bool enabled() const { return enabled_; }
    std::string_view dim() const { return enabled_ ? "\033[2m" : ""; }
    std::string_view bold() const { return enabled_ ? "\033[1m" : ""; }
    std::string_view reset() const { return enabled_ ? "\033[0m" : ""; }
    std::string_view clear_line() const { return enabled_ ? "\r\033[K" : ""; }

private:
    bool enabled_;
};

// Installs a SIGINT handler for its lifetime (the previous one comes back on destruction). The
// handler counts presses; reads see EINTR (no SA_RESTART), which is how the line editor notices.
// While `replying` is set, a third press exits at once (code 130) after resetting the terminal style:
// the escape hatch when a long batch cannot be stopped in between.
class InterruptGuard {
public:
    InterruptGuard();
    ~InterruptGuard();
    InterruptGuard(const InterruptGuard&) = delete;
    InterruptGuard& operator=(const InterruptGuard&) = delete;

    static int count();     // presses since the last clear()
    static void clear();
    static void set_replying(bool replying);
};

// "prompt: 2048 / 8192 tokens (25%), 812 tok/s" redrawn in place on stderr while a prompt is
// processed; nothing at all when stderr is not a terminal or the prompt is short. erase() removes
// the line so the reply starts on a clean one.
class PromptProgress {
public:
    explicit PromptProgress(int64_t min_tokens = 256);
    void update(int64_t done, int64_t total);
    void erase();

private:
    bool tty_;
    int64_t min_tokens_;
    bool shown_ = false;
    std::chrono::steady_clock::time_point start_;
};

// "loading MODEL..." on a terminal's stderr while a model opens; erased when done.
class LoadingNotice {
public:
    explicit LoadingNotice(const std::string& what);
    ~LoadingNotice();

private:
    bool tty_;
};

}  // namespace flashmoe::cli
