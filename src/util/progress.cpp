#include "util/progress.h"

#include <fmt/format.h>
#include <unistd.h>

#include <cstdio>

namespace flashmoe {

std::string format_bytes(uint64_t bytes) {
    const char* units[] = {"B", "KiB", "MiB", "GiB", "TiB"};
    double v = double(bytes);
    int u = 0;
    while (v >= 1024 && u < 4) {
        v /= 1024;
        ++u;
    }
    return u == 0 ? fmt::format("{} B", bytes) : fmt::format("{:.2f} {}", v, units[u]);
}

ProgressBar::ProgressBar(std::string label)
    : label_(std::move(label)), tty_(::isatty(STDERR_FILENO)), start_(std::chrono::steady_clock::now()) {}

void ProgressBar::update(uint64_t done, uint64_t total) {
    using namespace std::chrono;
    done_ = done;
    total_ = total;
    auto now = steady_clock::now();
    double elapsed = duration<double>(now - start_).count();
    double rate = elapsed > 0 ? double(done) / elapsed : 0;
    double eta = rate > 0 && total > done ? double(total - done) / rate : 0;
    double frac = total ? double(done) / double(total) : 1;
    std::string text = fmt::format("{}: {} / {} ({:.0f}%), {}/s, ETA {}:{:02d}", label_, format_bytes(done),
                                   format_bytes(total), frac * 100, format_bytes(uint64_t(rate)), int(eta) / 60,
                                   int(eta) % 60);
    if (tty_) {
        if (now - last_draw_ < milliseconds(100) && done < total) return;
        last_draw_ = now;
        const int width = 24;
        int filled = int(frac * width);
        fmt::print(stderr, "\r\033[K[{}{}] {}", std::string(size_t(filled), '#'), std::string(size_t(width - filled), '.'),
                   text);
        std::fflush(stderr);
    } else {
        // In logs, short jobs get only the final line.
        if (elapsed < 2.0) return;
        int decile = int(frac * 10);
        if (decile == last_decile_) return;
        last_decile_ = decile;
        fmt::print(stderr, "{}\n", text);
    }
}

void ProgressBar::finish() {
    if (finished_) return;
    finished_ = true;
    double elapsed = std::chrono::duration<double>(std::chrono::steady_clock::now() - start_).count();
    if (tty_) fmt::print(stderr, "\r\033[K");
    fmt::print(stderr, "{}: {} in {:.1f} s\n", label_, format_bytes(total_), elapsed);
}

}  // namespace flashmoe
