// A progress line on stderr for long jobs (convert, synth, loading): bytes done, rate and ETA.
// On a terminal it redraws one line in place at most ten times a second; otherwise it prints a plain
// line at each 10% step, so logs stay readable. Not thread-safe: update from one thread.
#pragma once

#include <chrono>
#include <cstdint>
#include <string>

namespace flashmoe {

class ProgressBar {
public:
    explicit ProgressBar(std::string label);
    void update(uint64_t done, uint64_t total);
    void finish();  // final line with the total time

private:
    std::string label_;
    bool tty_;
    std::chrono::steady_clock::time_point start_, last_draw_;
    int last_decile_ = -1;
    uint64_t done_ = 0, total_ = 0;
    bool finished_ = false;
};

std::string format_bytes(uint64_t bytes);  // "1.50 GiB"

}  // namespace flashmoe
