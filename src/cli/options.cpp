#include "cli/options.h"

#include "util/error.h"

#include <charconv>

namespace flashmoe::cli {

std::vector<int32_t> parse_ids(const std::string& text) {
    std::vector<int32_t> ids;
    size_t start = 0;
    while (start <= text.size()) {
        size_t end = text.find(',', start);
        if (end == std::string::npos) end = text.size();
        std::string item = text.substr(start, end - start);
        while (!item.empty() && item.front() == ' ') item.erase(item.begin());
        while (!item.empty() && item.back() == ' ') item.pop_back();
        int32_t v = 0;
        auto [ptr, ec] = std::from_chars(item.data(), item.data() + item.size(), v);
        if (item.empty() || ec != std::errc() || ptr != item.data() + item.size() || v < 0) {
            fail(ErrorKind::BadInput, "--ids: '{}' is not a token id (expected comma-separated non-negative integers)",
                 item);
        }
        ids.push_back(v);
        start = end + 1;
    }
    return ids;
}

void add_sampling_flags(CLI::App* app, SamplingParams& p) {
    app->add_option("--temp", p.temperature, "sampling temperature (0 = greedy)")->capture_default_str();
    app->add_option("--top-p", p.top_p, "nucleus sampling mass")->capture_default_str();
    app->add_option("--top-k", p.top_k, "keep the k most likely tokens (0 = all)")->capture_default_str();
    app->add_option("--min-p", p.min_p, "drop tokens below min-p times the top probability")->capture_default_str();
    app->add_option("--seed", p.seed, "random seed")->capture_default_str();
    app->add_option("--repeat-penalty", p.repetition_penalty, "repetition penalty (1 = off)")->capture_default_str();
    app->add_option("--presence-penalty", p.presence_penalty, "presence penalty")->capture_default_str();
    app->add_option("--frequency-penalty", p.frequency_penalty, "frequency penalty")->capture_default_str();
}

}  // namespace flashmoe::cli
