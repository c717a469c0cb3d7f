// Every golden fixture (tests/data/golden, from transformers) through the CUDA forward, held to the
// bounds the CPU forward meets (tests/support/golden.h); token-by-token decode must also agree with
// the batched prompt. Skips without a CUDA device.
#include "../support/golden.h"
#include "cuda_test_util.h"

#include <span>

namespace {

using namespace flashmoe;
using namespace flashmoe::test;

class CudaGolden : public ::testing::TestWithParam<GoldenCase> {};

TEST_P(CudaGolden, MatchesTransformers) {
    SKIP_WITHOUT_CUDA();
    const GoldenCase& gc = GetParam();
    nlohmann::json c = golden_case_spec(gc);
    ASSERT_FALSE(c.is_null());
    auto model = LoadedModel::open(golden_dir(gc).string(), {}, RunnerOptions{.device = Device::Cuda});
    ASSERT_EQ(model->device(), Device::Cuda);
    std::vector<float> logits = expect_golden_logits(*model, gc, c);

    // Token by token (the decode path) gives the same logits as the batched prompt, up to rounding.
    std::vector<int32_t> prompt = c["prompt_ids"].get<std::vector<int32_t>>();
    const int64_t k = c["k"].is_null() ? 0 : c["k"].get<int64_t>();
    const int64_t V = model->config().vocab_size;
    ASSERT_EQ(logits.size(), prompt.size() * size_t(V));
    float max_ref = 0;
    for (float v : logits) max_ref = std::max(max_ref, std::fabs(v));
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

    expect_golden_greedy(*model, c);
}

INSTANTIATE_TEST_SUITE_P(Fixtures, CudaGolden, ::testing::ValuesIn(all_golden_cases()), golden_case_name);
GTEST_ALLOW_UNINSTANTIATED_PARAMETERIZED_TEST(CudaGolden);

}  // namespace
