// Every golden fixture (tests/data/golden, from transformers) through the CUDA forward, held to the
// bounds the CPU forward meets (tests/golden/test_golden.cpp): logits within 1e-3 of the reference
// relative to its largest magnitude, the same argmax at every position, the same greedy tokens.
// Skips without a CUDA device.
#include "cuda_test_util.h"
#include "engine/generate.h"
#include "engine/loaded_model.h"
#include "util/mapped_file.h"
#include "util/npy.h"

#include <nlohmann/json.hpp>

#include <algorithm>
#include <cmath>
#include <filesystem>

namespace fs = std::filesystem;
using namespace flashmoe;

namespace {

struct GoldenCase {
    std::string fixture;
    std::string name;
};

std::vector<GoldenCase> all_cases() {
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

class CudaGolden : public ::testing::TestWithParam<GoldenCase> {};

TEST_P(CudaGolden, MatchesTransformers) {
    SKIP_WITHOUT_CUDA();
    const GoldenCase& gc = GetParam();
    fs::path dir = fs::path(FLASHMOE_TEST_DATA) / "golden" / gc.fixture;
    auto spec = nlohmann::json::parse(read_text_file((dir / "golden.json").string()));
    nlohmann::json c;
    for (auto& entry : spec["cases"])
        if (entry["name"] == gc.name) c = entry;
    ASSERT_FALSE(c.is_null());

    auto model = LoadedModel::open(dir.string(), {}, RunnerOptions{.device = Device::Cuda});
    ASSERT_EQ(model->device(), Device::Cuda);
    std::vector<int32_t> prompt = c["prompt_ids"].get<std::vector<int32_t>>();
    const int64_t k = c["k"].is_null() ? 0 : c["k"].get<int64_t>();

    NpyArray ref = read_npy_f32((dir / c["logits"].get<std::string>()).string());
    const int64_t V = model->config().vocab_size;
    ASSERT_EQ(ref.shape, (std::vector<int64_t>{int64_t(prompt.size()), V}));
    auto state = model->forward().new_state();
    std::vector<float> logits;
    model->forward().forward(*state, prompt, ForwardOptions{.k = k, .logits = LogitsFor::All}, &logits);
    ASSERT_EQ(logits.size(), ref.data.size());
    float max_ref = 0, max_diff = 0;
    for (size_t i = 0; i < logits.size(); ++i) {
        ASSERT_TRUE(std::isfinite(logits[i])) << "logit " << i << " is not finite";
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

    // Token by token (the decode path) gives the same logits as the batched prompt, up to rounding.
    auto step_state = model->forward().new_state();
    std::vector<float> step_logits;
    float step_diff = 0;
    for (size_t t = 0; t < prompt.size(); ++t) {
        model->forward().forward(*step_state, std::span<const int32_t>(&prompt[t], 1),
                                 ForwardOptions{.k = k, .logits = LogitsFor::Last}, &step_logits);
        for (int64_t v = 0; v < V; ++v)
            step_diff = std::max(step_diff, std::fabs(step_logits[size_t(v)] - logits[t * size_t(V) + size_t(v)]));
    }
    EXPECT_LE(step_diff / max_ref, 1e-4f) << "decode steps differ from the batched prompt by " << step_diff;

    std::vector<int32_t> want = c["greedy_new_ids"].get<std::vector<int32_t>>();
    Session session(model->forward());
    Sampler greedy(SamplingParams{.temperature = 0});
    std::vector<int32_t> got;
    generate(session, prompt,
             GenerateOptions{.max_new_tokens = int64_t(want.size()), .k = k, .stop_tokens = {}, .boundaries = {}, .prefill = {}}, greedy,
             [&](int32_t t) {
                 got.push_back(t);
                 return true;
             });
    EXPECT_EQ(got, want);
}

std::string case_name(const ::testing::TestParamInfo<GoldenCase>& info) {
    std::string s = info.param.fixture + "_" + info.param.name;
    for (auto& ch : s)
        if (!std::isalnum(static_cast<unsigned char>(ch))) ch = '_';
    return s;
}

INSTANTIATE_TEST_SUITE_P(Fixtures, CudaGolden, ::testing::ValuesIn(all_cases()), case_name);
GTEST_ALLOW_UNINSTANTIATED_PARAMETERIZED_TEST(CudaGolden);

}  // namespace
