// The golden-fixture checks shared by every backend's test (tests/golden for the CPU, tests/cuda for
// CUDA): each case of tests/data/golden/*/golden.json (made by tools/golden/make_golden.py from
// transformers) must give logits within 1e-3 of the reference relative to its largest magnitude, the
// same argmax at every prompt position, and the same greedy tokens.
#pragma once

#include "engine/generate.h"
#include "engine/loaded_model.h"
#include "util/mapped_file.h"
#include "util/npy.h"

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include <algorithm>
#include <cctype>
#include <cmath>
#include <filesystem>
#include <string>
#include <vector>

namespace flashmoe::test {

struct GoldenCase {
    std::string fixture;  // folder under tests/data/golden
    std::string name;
};

inline std::filesystem::path golden_dir(const GoldenCase& gc) {
    return std::filesystem::path(FLASHMOE_TEST_DATA) / "golden" / gc.fixture;
}

inline std::vector<GoldenCase> all_golden_cases() {
    namespace fs = std::filesystem;
    std::vector<GoldenCase> cases;
    fs::path root = fs::path(FLASHMOE_TEST_DATA) / "golden";
    if (!fs::exists(root)) return cases;
    for (auto& dir : fs::directory_iterator(root)) {
        fs::path spec = dir.path() / "golden.json";
        if (!fs::exists(spec)) continue;
        auto j = nlohmann::json::parse(read_text_file(spec.string()));
        for (auto& c : j["cases"]) cases.push_back({dir.path().filename().string(), c["name"].get<std::string>()});
    }
    std::sort(cases.begin(), cases.end(), [](auto& a, auto& b) { return a.fixture + a.name < b.fixture + b.name; });
    return cases;
}

inline std::string golden_case_name(const ::testing::TestParamInfo<GoldenCase>& info) {
    std::string s = info.param.fixture + "_" + info.param.name;
    for (auto& ch : s)
        if (!std::isalnum(static_cast<unsigned char>(ch))) ch = '_';
    return s;
}

// The case's entry of golden.json (prompt_ids, k, logits file, greedy_new_ids).
inline nlohmann::json golden_case_spec(const GoldenCase& gc) {
    auto spec = nlohmann::json::parse(read_text_file((golden_dir(gc) / "golden.json").string()));
    for (auto& entry : spec["cases"])
        if (entry["name"] == gc.name) return entry;
    ADD_FAILURE() << "no case " << gc.name << " in " << gc.fixture;
    return {};
}

// Checks the prompt's logits against the reference; returns them (row-major [T, vocab]).
inline std::vector<float> expect_golden_logits(LoadedModel& model, const GoldenCase& gc, const nlohmann::json& c) {
    std::vector<int32_t> prompt = c["prompt_ids"].get<std::vector<int32_t>>();
    const int64_t k = c["k"].is_null() ? 0 : c["k"].get<int64_t>();
    NpyArray ref = read_npy_f32((golden_dir(gc) / c["logits"].get<std::string>()).string());
    const int64_t V = model.config().vocab_size;
    EXPECT_EQ(ref.shape, (std::vector<int64_t>{int64_t(prompt.size()), V}));
    auto state = model.forward().new_state();
    std::vector<float> logits;
    model.forward().forward(*state, prompt, ForwardOptions{.k = k, .logits = LogitsFor::All}, &logits);
    if (logits.size() != ref.data.size()) {
        ADD_FAILURE() << "logits hold " << logits.size() << " values, the reference " << ref.data.size();
        return logits;
    }
    float max_ref = 0, max_diff = 0;
    for (size_t i = 0; i < logits.size(); ++i) {
        if (!std::isfinite(logits[i])) {
            ADD_FAILURE() << "logit " << i << " is not finite";
            return logits;
        }
        max_ref = std::max(max_ref, std::fabs(ref.data[i]));
        max_diff = std::max(max_diff, std::fabs(logits[i] - ref.data[i]));
    }
    EXPECT_LE(max_diff / max_ref, 1e-3f) << "max |diff| " << max_diff << ", max |ref| " << max_ref;
    for (size_t t = 0; t < prompt.size(); ++t) {
        auto row = logits.begin() + ptrdiff_t(t) * V;
        auto ref_row = ref.data.begin() + ptrdiff_t(t) * V;
        EXPECT_EQ(std::max_element(row, row + V) - row, std::max_element(ref_row, ref_row + V) - ref_row)
            << "argmax differs at position " << t;
    }
    return logits;
}

// Greedy generation from the prompt: every token identical to transformers'.
inline void expect_golden_greedy(LoadedModel& model, const nlohmann::json& c) {
    std::vector<int32_t> prompt = c["prompt_ids"].get<std::vector<int32_t>>();
    const int64_t k = c["k"].is_null() ? 0 : c["k"].get<int64_t>();
    std::vector<int32_t> want = c["greedy_new_ids"].get<std::vector<int32_t>>();
    Session session(model.forward());
    Sampler greedy(SamplingParams{.temperature = 0});
    std::vector<int32_t> got;
    generate(session, prompt,
             GenerateOptions{
                 .max_new_tokens = int64_t(want.size()), .k = k, .stop_tokens = {}, .boundaries = {}, .prefill = {}},
             greedy, [&](int32_t t) {
                 got.push_back(t);
                 return true;
             });
    EXPECT_EQ(got, want);
}

}  // namespace flashmoe::test
