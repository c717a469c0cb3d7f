// Every fixture under tests/data/golden/ (made by tools/golden/make_golden.py from transformers)
// through the CPU forward: see tests/support/golden.h for the bounds.
#include "../support/golden.h"

namespace {

using namespace flashmoe;
using namespace flashmoe::test;

class Golden : public ::testing::TestWithParam<GoldenCase> {};

TEST_P(Golden, MatchesTransformers) {
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
