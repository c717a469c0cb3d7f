// Single-thread encode throughput of flashmoe::Tokenizer on a text file.
//   bench_tokenizer MODEL_DIR TEXT_FILE [--runs N] [--lines]
// Encodes the whole file as one text (or, with --lines, line by line) N times on one thread and
// prints one JSON line: bytes, tokens, an FNV-1a hash of the ids (to check against HF), the time of
// the first (cold-cache) run and the best and median MB/s. tools/tokenizer_fixtures/bench_compare.py
// runs this next to HF tokenizers on the same file.
#include "text/tokenizer.h"
#include "util/error.h"

#include <fmt/core.h>

#include <algorithm>
#include <chrono>
#include <cstring>
#include <fstream>
#include <iterator>
#include <string>
#include <vector>

using namespace flashmoe;

namespace {

uint64_t fnv1a(const std::vector<TokenId>& ids, uint64_t h) {
    for (TokenId id : ids) {
        const auto v = uint32_t(id);
        for (int i = 0; i < 4; ++i) {
            h ^= (v >> (8 * i)) & 0xFF;
            h *= 0x100000001B3ull;
        }
    }
    return h;
}

}  // namespace

int main(int argc, char** argv) {
    if (argc < 3) {
        fmt::print(stderr, "usage: {} MODEL_DIR TEXT_FILE [--runs N] [--lines]\n", argv[0]);
        return 2;
    }
    int runs = 5;
    bool by_lines = false;
    for (int i = 3; i < argc; ++i) {
        if (!std::strcmp(argv[i], "--runs") && i + 1 < argc) {
            runs = std::max(1, std::atoi(argv[++i]));
        } else if (!std::strcmp(argv[i], "--lines")) {
            by_lines = true;
        }
    }
    try {
        const auto t0 = std::chrono::steady_clock::now();
        const Tokenizer tok = Tokenizer::load(argv[1]);
        const double load_s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
        std::ifstream in(argv[2], std::ios::binary);
        const std::string text((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
        std::vector<std::string_view> lines;
        if (by_lines) {
            for (size_t p = 0; p < text.size();) {
                size_t e = text.find('\n', p);
                e = e == std::string::npos ? text.size() : e + 1;  // keep the newline, as Python's splitlines(True)
                lines.push_back(std::string_view(text).substr(p, e - p));
                p = e;
            }
        } else {
            lines.push_back(text);
        }
        std::vector<double> seconds;
        size_t tokens = 0;
        uint64_t hash = 0;
        for (int r = 0; r < runs; ++r) {
            size_t count = 0;
            uint64_t h = 0xCBF29CE484222325ull;
            const auto start = std::chrono::steady_clock::now();
            for (std::string_view line : lines) {
                const auto ids = tok.encode(line);
                count += ids.size();
                h = fnv1a(ids, h);
            }
            seconds.push_back(std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count());
            tokens = count;
            hash = h;
        }
        const double first = seconds.front();
        std::sort(seconds.begin(), seconds.end());
        const double mb = double(text.size()) / 1e6;
        fmt::print(
            "{{\"impl\": \"flashmoe\", \"mode\": \"{}\", \"bytes\": {}, \"tokens\": {}, \"ids_fnv1a\": \"{:016x}\", "
            "\"load_s\": {:.3f}, \"first_mb_s\": {:.2f}, \"best_mb_s\": {:.2f}, \"median_mb_s\": {:.2f}}}\n",
            by_lines ? "lines" : "document", text.size(), tokens, hash, load_s, mb / first, mb / seconds.front(),
            mb / seconds[seconds.size() / 2]);
    } catch (const Error& e) {
        fmt::print(stderr, "bench_tokenizer: {}\n", e.what());
        return exit_code_for(e.kind());
    }
    return 0;
}
