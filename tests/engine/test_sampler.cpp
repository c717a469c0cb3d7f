// The sampler's cuts (top-k, top-p, min-p) against the probabilities worked out by hand on a large
// vocabulary, where only a head of it is sorted.
#include "engine/sampler.h"

#include <gtest/gtest.h>

#include <cmath>
#include <map>
#include <vector>

namespace flashmoe {
namespace {

// 20,000 tokens: ids 0..4 carry logits 8, 7, 6, 5, 4; the rest share `tail`.
std::vector<float> wide_logits(float tail) {
    std::vector<float> l(20000, tail);
    for (int i = 0; i < 5; ++i) l[size_t(i)] = 8.0f - float(i);
    return l;
}

std::map<int32_t, int> draw(const SamplingParams& params, int times, float tail = -12.0f) {
    Sampler s(params);
    std::map<int32_t, int> counts;
    for (int i = 0; i < times; ++i) {
        std::vector<float> l = wide_logits(tail);
        counts[s.sample(l)]++;
    }
    return counts;
}

TEST(Sampler, TopPKeepsTheSmallestHeadReachingTheMass) {
    // Probabilities of ids 0, 1, 2 are about 0.64, 0.23, 0.09: top-p 0.8 keeps exactly ids 0 and 1.
    std::map<int32_t, int> c = draw({.temperature = 1.0f, .top_p = 0.8f, .seed = 7}, 1500);
    ASSERT_EQ(c.size(), 2u);
    EXPECT_GT(c[0], 0);
    EXPECT_GT(c[1], 0);
    const double ratio = double(c[0]) / double(c[1]);  // e^1 after renormalising over the two
    EXPECT_NEAR(ratio, std::exp(1.0), 0.35);
}

TEST(Sampler, MinPDropsTokensBelowTheFloor) {
    // Floor 0.1 of the top probability: ids 0, 1, 2 (ratios 1, e^-1, e^-2 = 0.135) stay, id 3 (0.05) goes.
    std::map<int32_t, int> c = draw({.temperature = 1.0f, .min_p = 0.1f, .seed = 3}, 1500);
    ASSERT_EQ(c.size(), 3u);
    EXPECT_GT(c[2], 0);
}

TEST(Sampler, NoCutsSamplesTheWholeVocabulary) {
    // With the tail at logit -2 it holds 19,995 * e^-10 / Z, about 0.36 of the mass: it must be drawn from.
    std::map<int32_t, int> c = draw({.temperature = 1.0f, .seed = 11}, 1500, -2.0f);
    int tail = 0;
    for (auto& [id, n] : c)
        if (id >= 5) tail += n;
    EXPECT_NEAR(double(tail) / 1500.0, 0.36, 0.05);
}

TEST(Sampler, TopKRenormalisesOverItsTokens) {
    std::map<int32_t, int> c = draw({.temperature = 1.0f, .top_k = 2, .seed = 5}, 1500);
    ASSERT_EQ(c.size(), 2u);
    EXPECT_NEAR(double(c[0]) / double(c[1]), std::exp(1.0), 0.35);
}

TEST(Sampler, SameSeedSameTokens) {
    SamplingParams params{.temperature = 0.8f, .top_p = 0.9f, .seed = 42};
    EXPECT_EQ(draw(params, 200), draw(params, 200));
}

}  // namespace
}  // namespace flashmoe
