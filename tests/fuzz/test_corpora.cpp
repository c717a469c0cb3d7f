// Replays every committed fuzz input (fuzz/corpus/<target>/ and fuzz/regressions/<target>/) through
// its target in the ordinary (or sanitizer) test build, so a crash once found stays fixed.
#include "targets.h"

#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <functional>
#include <iterator>
#include <map>

namespace fs = std::filesystem;

namespace {

const std::map<std::string, std::function<void(const uint8_t*, size_t)>>& targets() {
    static const std::map<std::string, std::function<void(const uint8_t*, size_t)>> t = {
        {"safetensors", flashmoe::fuzz::safetensors_header}, {"config", flashmoe::fuzz::model_config},
        {"tokenizer_encode", flashmoe::fuzz::tokenizer_encode}, {"tokenizer_decode", flashmoe::fuzz::tokenizer_decode},
        {"jinja", flashmoe::fuzz::jinja_template}, {"http", flashmoe::fuzz::http_request_body},
    };
    return t;
}

class Corpus : public ::testing::TestWithParam<std::string> {};

TEST_P(Corpus, EveryInputIsHandled) {
    flashmoe::fuzz::set_source_dir(FLASHMOE_SOURCE_DIR);
    const auto& run = targets().at(GetParam());
    size_t count = 0;
    for (const char* kind : {"corpus", "regressions"}) {
        fs::path dir = fs::path(FLASHMOE_SOURCE_DIR) / "fuzz" / kind / GetParam();
        if (!fs::exists(dir)) continue;
        for (auto& e : fs::directory_iterator(dir)) {
            std::ifstream in(e.path(), std::ios::binary);
            std::string bytes((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
            SCOPED_TRACE(e.path().string());
            run(reinterpret_cast<const uint8_t*>(bytes.data()), bytes.size());
            ++count;
        }
    }
    EXPECT_GT(count, 0u) << "no corpus for " << GetParam();
}

INSTANTIATE_TEST_SUITE_P(Fuzz, Corpus,
                         ::testing::Values("safetensors", "config", "tokenizer_encode", "tokenizer_decode", "jinja",
                                           "http"));

}  // namespace
