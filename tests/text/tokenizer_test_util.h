// Helpers shared by the text tests: loading the fixture tokenizer variants (built like
// tools/tokenizer_fixtures/make_fixtures.py builds them), reading JSON-lines fixtures, and
// printing strings with escapes in failure messages.
#pragma once

#include "text/tokenizer.h"

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include <fstream>
#include <map>
#include <memory>
#include <stdexcept>
#include <string>
#include <vector>

namespace flashmoe::test {

inline std::string data_path(const std::string& rel) { return std::string(FLASHMOE_TEST_DATA) + "/tokenizer/" + rel; }

inline nlohmann::json read_json(const std::string& path) {
    std::ifstream in(path, std::ios::binary);
    if (!in) throw std::runtime_error("cannot open " + path);
    return nlohmann::json::parse(in);
}

inline std::vector<nlohmann::json> read_jsonl(const std::string& path) {
    std::ifstream in(path, std::ios::binary);
    if (!in) throw std::runtime_error("cannot open " + path);
    std::vector<nlohmann::json> rows;
    for (std::string line; std::getline(in, line);) {
        if (!line.empty()) rows.push_back(nlohmann::json::parse(line));
    }
    return rows;
}

// The tokenizer.json of a variant: qwen3 itself, or qwen3 + <variant>/patch.json.
inline nlohmann::json variant_json(const std::string& variant) {
    static const nlohmann::json base = read_json(data_path("qwen3/tokenizer.json"));
    nlohmann::json j = base;
    if (variant == "qwen3") return j;
    const nlohmann::json patch = read_json(data_path(variant + "/patch.json"));
    if (patch.contains("merge_patch")) j.merge_patch(patch["merge_patch"]);
    if (patch.contains("append_added_tokens")) {
        for (const auto& t : patch["append_added_tokens"]) j["added_tokens"].push_back(t);
    }
    return j;
}

// Loaded once per process and variant.
inline const Tokenizer& variant(const std::string& name) {
    static std::map<std::string, std::unique_ptr<Tokenizer>> cache;
    auto& slot = cache[name];
    if (!slot) slot = std::make_unique<Tokenizer>(Tokenizer::from_json(variant_json(name), name));
    return *slot;
}

inline std::string escaped(std::string_view s) {
    std::string out;
    for (unsigned char c : s) {
        if (c == '\\') {
            out += "\\\\";
        } else if (c < 0x20 || c >= 0x7F) {
            out += fmt::format("\\x{:02x}", c);
        } else {
            out.push_back(char(c));
        }
    }
    return out;
}

}  // namespace flashmoe::test
