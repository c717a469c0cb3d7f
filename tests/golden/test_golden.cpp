// Every fixture under tests/data/golden/ (made by tools/golden/make_golden.py from transformers)
// through the CPU forward: see tests/support/golden.h for the bounds.
#include "../support/golden.h"
#include "kernels/cpu/matmul.h"

namespace {

using namespace flashmoe;
using namespace flashmoe::test;

class Golden : public ::testing::TestWithParam<GoldenCase> {};

// The fixtures hold logits to 1e-3 of transformers: the exact fp32-activation matmul, not the
// int8-activation default (whose error is measured by the bundled model's perplexity instead).
TEST_P(Golden, MatchesTransformers) {
    set_matmul_activations(MatmulActivations::F32);
    const GoldenCase& gc = GetParam();
    nlohmann::json c = golden_case_spec(gc);
    ASSERT_FALSE(c.is_null());
    auto model = LoadedModel::open(golden_dir(gc).string());
    expect_golden_logits(*model, gc, c);
    expect_golden_greedy(*model, c);
}

INSTANTIATE_TEST_SUITE_P(Fixtures, Golden, ::testing::ValuesIn(all_golden_cases()), golden_case_name);
GTEST_ALLOW_UNINSTANTIATED_PARAMETERIZED_TEST(Golden);

}  // namespace
