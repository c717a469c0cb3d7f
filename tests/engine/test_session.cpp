// Session prefix reuse gives exactly the logits of a fresh run, whether the new prompt extends the
// history, diverges after a snapshot, or diverges before any snapshot.
#include "engine/generate.h"
#include "engine/loaded_model.h"
#include "engine/session.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <atomic>
#include <cmath>

using namespace flashmoe;

namespace {

const std::string kModel = std::string(FLASHMOE_TEST_DATA) + "/golden/basic";

std::vector<float> fresh_logits(LoadedModel& m, const std::vector<int32_t>& prompt) {
    Session s(m.forward());
    std::vector<float> logits;
    s.prefill(prompt, {}, 0, &logits);
    return logits;
}

// Reuse splits the prompt into other batch sizes than a fresh run, and the matmul kernels may sum
// in another order for n == 1 than for n > 1: equal up to fp32 rounding, not bit for bit.
void expect_same(const std::vector<float>& a, const std::vector<float>& b) {
    ASSERT_EQ(a.size(), b.size());
    float max_ref = 0, max_diff = 0;
    for (size_t i = 0; i < a.size(); ++i) {
        max_ref = std::max(max_ref, std::fabs(b[i]));
        max_diff = std::max(max_diff, std::fabs(a[i] - b[i]));
    }
    EXPECT_LE(max_diff, 1e-5f * max_ref);
    EXPECT_EQ(std::max_element(a.begin(), a.end()) - a.begin(), std::max_element(b.begin(), b.end()) - b.begin());
}

}  // namespace

TEST(Session, ExtendingPromptRunsOnlyNewTokens) {
    auto m = LoadedModel::open(kModel);
    Session s(m->forward());
    std::vector<int32_t> first = {5, 6, 7, 8, 9, 10};
    std::vector<int32_t> second = {5, 6, 7, 8, 9, 10, 11, 12, 13};
    std::vector<float> logits;
    auto r1 = s.prefill(first, {}, 0, &logits);
    EXPECT_EQ(r1.cached_tokens, 0);
    auto r2 = s.prefill(second, {}, 0, &logits);
    EXPECT_EQ(r2.cached_tokens, 6);
    EXPECT_EQ(r2.processed_tokens, 3);
    expect_same(logits, fresh_logits(*m, second));
}

TEST(Session, SamePromptTwiceRerunsOnlyTheLastToken) {
    auto m = LoadedModel::open(kModel);
    Session s(m->forward());
    std::vector<int32_t> p = {1, 2, 3, 4};
    std::vector<float> logits;
    s.prefill(p, {}, 0, &logits);
    auto r = s.prefill(p, {}, 0, &logits);
    EXPECT_EQ(r.cached_tokens, 3);
    expect_same(logits, fresh_logits(*m, p));
}

TEST(Session, DivergingPromptRestartsFromSnapshot) {
    auto m = LoadedModel::open(kModel);
    Session s(m->forward());
    std::vector<int32_t> history = {1, 2, 3, 4, 5, 6, 7, 8};
    std::vector<int64_t> boundaries = {3, 5};
    std::vector<float> logits;
    s.prefill(history, boundaries, 0, &logits);
    EXPECT_EQ(s.snapshot_count(), 3u);  // 3, 5 and before the last token (7)
    // Generated tokens extend the state past the prompt...
    s.step(40, 0, &logits);
    s.step(41, 0, &logits);
    // ...and the next prompt re-renders the turn differently after position 6.
    std::vector<int32_t> next = {1, 2, 3, 4, 5, 6, 9, 9, 10, 11};
    auto r = s.prefill(next, {}, 0, &logits);
    EXPECT_EQ(r.cached_tokens, 5);  // the snapshot at 5 is the latest inside the shared prefix of 6
    expect_same(logits, fresh_logits(*m, next));
}

TEST(Session, DivergenceBeforeAnySnapshotStartsOver) {
    auto m = LoadedModel::open(kModel);
    Session s(m->forward());
    std::vector<float> logits;
    s.prefill(std::vector<int32_t>{1, 2, 3, 4, 5}, std::vector<int64_t>{4}, 0, &logits);
    std::vector<int32_t> other = {1, 2, 9, 9};
    auto r = s.prefill(other, {}, 0, &logits);
    EXPECT_EQ(r.cached_tokens, 0);
    expect_same(logits, fresh_logits(*m, other));
}

TEST(Session, ChangingKDropsTheCache) {
    auto m = LoadedModel::open(kModel);
    Session s(m->forward());
    std::vector<int32_t> p = {1, 2, 3, 4, 5};
    std::vector<float> logits;
    s.prefill(p, {}, 0, &logits);
    auto r = s.prefill(p, {}, 1, &logits);
    EXPECT_EQ(r.cached_tokens, 0);
}

TEST(Session, MessageBoundariesFollowImEnd) {
    std::vector<int32_t> t = {7, 100, 1, 5, 100, 8, 100};
    EXPECT_EQ(message_boundaries(t, 100, 1), (std::vector<int64_t>{3, 5, 7}));
}

TEST(Session, CancelledPrefillThrowsAndLeavesAFreshSession) {
    auto m = LoadedModel::open(kModel);
    Session s(m->forward());
    std::vector<int32_t> p = {5, 6, 7, 8, 9, 10};
    std::vector<float> logits;
    s.prefill(p, {}, 0, &logits);  // some history to lose
    std::atomic<bool> cancel{true};
    std::vector<int32_t> longer = {5, 6, 7, 8, 9, 10, 11, 12, 13};
    EXPECT_THROW(s.prefill(longer, {}, 0, &logits, PrefillControl{.on_progress = {}, .cancel = &cancel}), ForwardCancelled);
    EXPECT_TRUE(s.tokens().empty());
    // Lowered again, the same session runs the prompt from scratch to the fresh logits.
    cancel = false;
    auto r = s.prefill(longer, {}, 0, &logits, PrefillControl{.on_progress = {}, .cancel = &cancel});
    EXPECT_EQ(r.cached_tokens, 0);
    expect_same(logits, fresh_logits(*m, longer));
}
