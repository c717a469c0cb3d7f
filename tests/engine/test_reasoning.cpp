#include "engine/reasoning.h"

#include <gtest/gtest.h>

#include <string>
#include <vector>

using namespace flashmoe;

namespace {
ReasoningDelta run(bool starts, const std::vector<std::string>& chunks) {
    ReasoningSplitter s(starts);
    ReasoningDelta all;
    for (auto& c : chunks) {
        auto d = s.push(c);
        all.reasoning += d.reasoning;
        all.content += d.content;
    }
    auto d = s.flush();
    all.reasoning += d.reasoning;
    all.content += d.content;
    return all;
}
}  // namespace

TEST(Reasoning, SplitsAtCloseTagWhenThePromptOpenedThinking) {
    auto d = run(true, {"Let me think.\n", "</think>\n\n", "The answer is 4."});
    EXPECT_EQ(d.reasoning, "Let me think.\n");
    EXPECT_EQ(d.content, "The answer is 4.");
}

TEST(Reasoning, TagsSplitAcrossEveryChunkBoundary) {
    const std::string text = "plan</think>\n\nanswer <b>bold</b>";
    for (size_t cut1 = 0; cut1 <= text.size(); ++cut1) {
        for (size_t cut2 = cut1; cut2 <= text.size(); cut2 += 3) {
            auto d = run(true, {text.substr(0, cut1), text.substr(cut1, cut2 - cut1), text.substr(cut2)});
            EXPECT_EQ(d.reasoning, "plan") << cut1 << "," << cut2;
            EXPECT_EQ(d.content, "answer <b>bold</b>") << cut1 << "," << cut2;
        }
    }
}

TEST(Reasoning, ModelOpensItsOwnThinkBlock) {
    auto d = run(false, {"<thi", "nk>hmm</think>", "\nyes"});
    EXPECT_EQ(d.reasoning, "hmm");
    EXPECT_EQ(d.content, "yes");
}

TEST(Reasoning, NoThinkingMeansAllContent) {
    auto d = run(false, {"Hello <", "world"});
    EXPECT_EQ(d.reasoning, "");
    EXPECT_EQ(d.content, "Hello <world");
}

TEST(Reasoning, UnclosedThinkingStaysReasoning) {
    auto d = run(true, {"still thinking </thi"});
    EXPECT_EQ(d.reasoning, "still thinking </thi");
    EXPECT_EQ(d.content, "");
}

TEST(Reasoning, PromptOpensThinking) {
    EXPECT_TRUE(prompt_opens_thinking("<|im_start|>assistant\n<think>\n"));
    EXPECT_FALSE(prompt_opens_thinking("<|im_start|>assistant\n<think>\n\n</think>\n\n"));
    EXPECT_FALSE(prompt_opens_thinking("<|im_start|>assistant\n"));
}
