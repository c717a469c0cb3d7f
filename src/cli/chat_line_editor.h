// Reading the user's lines for `flashmoe chat`: line editing and a persistent history through
// libedit when stdin is a terminal, plain line reads otherwise (so chat can be scripted from a pipe).
// A line ending in a backslash continues on the next one.
//
// Owns the libedit handles; one instance at a time, main thread only. Ctrl-C at the prompt is
// reported as Interrupted (needs the InterruptGuard's SIGINT handler, which makes reads return
// EINTR); Ctrl-D on an empty line or end of input as Eof. History file problems are ignored (a
// chat must not fail because ~ is read-only).
#pragma once

#include <memory>
#include <string>

namespace flashmoe::cli {

class LineEditor {
public:
    enum class Status { Line, Eof, Interrupted };
    struct Result {
        Status status = Status::Eof;
        std::string text;
    };

    // `history_file` empty: no history kept across runs.
    explicit LineEditor(std::string history_file);
    ~LineEditor();
    LineEditor(const LineEditor&) = delete;
    LineEditor& operator=(const LineEditor&) = delete;

    Result read(const std::string& prompt);
    bool interactive() const { return interactive_; }

private:
    struct Impl;
    Result read_one(const std::string& prompt);

    bool interactive_;
    std::string history_file_;
    std::unique_ptr<Impl> impl_;
};

// $FLASHMOE_HISTORY, else ~/.flashmoe_history; empty when neither can be formed.
std::string default_history_file();

}  // namespace flashmoe::cli
