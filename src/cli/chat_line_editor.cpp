#include "cli/chat_line_editor.h"

#include <histedit.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <iostream>

namespace flashmoe::cli {

struct LineEditor::Impl {
    EditLine* el = nullptr;
    History* history = nullptr;
    std::string prompt;

    static char* prompt_fn(EditLine* el) {
        void* data = nullptr;
        el_get(el, EL_CLIENTDATA, &data);
        return const_cast<char*>(static_cast<Impl*>(data)->prompt.c_str());
    }
};

std::string default_history_file() {
    if (const char* f = std::getenv("FLASHMOE_HISTORY")) return f;
    if (const char* home = std::getenv("HOME"); home && *home) return std::string(home) + "/.flashmoe_history";
    return {};
}

LineEditor::LineEditor(std::string history_file)
    : interactive_(::isatty(STDIN_FILENO) && ::isatty(STDOUT_FILENO)), history_file_(std::move(history_file)) {
    if (!interactive_) return;
    impl_ = std::make_unique<Impl>();
    impl_->el = el_init("flashmoe", stdin, stdout, stderr);
    impl_->history = history_init();
    if (!impl_->el || !impl_->history) {  // e.g. an unknown TERM: fall back to plain reads
        if (impl_->el) el_end(impl_->el);
        if (impl_->history) history_end(impl_->history);
        impl_.reset();
        interactive_ = false;
        return;
    }
    HistEvent ev;
    history(impl_->history, &ev, H_SETSIZE, 1000);
    history(impl_->history, &ev, H_SETUNIQUE, 1);
    if (!history_file_.empty()) history(impl_->history, &ev, H_LOAD, history_file_.c_str());
    el_set(impl_->el, EL_CLIENTDATA, impl_.get());
    el_set(impl_->el, EL_PROMPT, &Impl::prompt_fn);
    el_set(impl_->el, EL_EDITOR, "emacs");
    el_set(impl_->el, EL_HIST, history, impl_->history);
    el_source(impl_->el, nullptr);  // the user's ~/.editrc, if any
}

LineEditor::~LineEditor() {
    if (!impl_) return;
    el_end(impl_->el);  // puts the terminal back as it found it
    history_end(impl_->history);
}

LineEditor::Result LineEditor::read_one(const std::string& prompt) {
    Result r;
    if (!impl_) {
        if (interactive_ || ::isatty(STDIN_FILENO)) {
            std::fputs(prompt.c_str(), stdout);
            std::fflush(stdout);
        }
        if (!std::getline(std::cin, r.text)) {
            // getline fails on EINTR as well: tell Ctrl-C from the end of input.
            if (errno == EINTR && !std::cin.eof()) {
                std::cin.clear();
                r.status = Status::Interrupted;
            }
            return r;
        }
        r.status = Status::Line;
        return r;
    }
    impl_->prompt = prompt;
    int count = 0;
    errno = 0;
    const char* line = el_gets(impl_->el, &count);
    if (!line) {
        if (count < 0 || errno == EINTR) {
            el_reset(impl_->el);  // back to cooked mode, edit buffer cleared
            r.status = Status::Interrupted;
        }
        return r;
    }
    r.status = Status::Line;
    r.text = line;
    while (!r.text.empty() && (r.text.back() == '\n' || r.text.back() == '\r')) r.text.pop_back();
    return r;
}

LineEditor::Result LineEditor::read(const std::string& prompt) {
    Result r = read_one(prompt);
    // A trailing backslash continues the input on the next line.
    while (r.status == Status::Line && !r.text.empty() && r.text.back() == '\\') {
        r.text.back() = '\n';
        Result more = read_one("... ");
        if (more.status != Status::Line) return more;
        r.text += more.text;
    }
    if (r.status == Status::Line && impl_ && r.text.find_first_not_of(" \t\n") != std::string::npos) {
        HistEvent ev;
        history(impl_->history, &ev, H_ENTER, r.text.c_str());
        if (!history_file_.empty()) history(impl_->history, &ev, H_SAVE, history_file_.c_str());
    }
    return r;
}

}  // namespace flashmoe::cli
