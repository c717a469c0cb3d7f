// The pieces under `flashmoe chat` and `run`: the prefill's batches, progress and stop (the engine
// hook), the reply printer's reasoning/answer layout without a terminal, and the conversation file.
#include "cli/chat_conversation.h"
#include "cli/chat_reply.h"
#include "engine/generate.h"
#include "engine/loaded_model.h"
#include "engine/session.h"
#include "text/tokenizer.h"
#include "util/error.h"

#include <gtest/gtest.h>

#include <cmath>
#include <cstdio>
#include <filesystem>
#include <fstream>

using namespace flashmoe;
using namespace flashmoe::cli;

namespace {

const std::string kGolden = std::string(FLASHMOE_TEST_DATA) + "/golden/basic";
const std::string kTiny = std::string(FLASHMOE_SOURCE_DIR) + "/models/tiny-qwen35moe";

float max_abs_diff(const std::vector<float>& a, const std::vector<float>& b) {
    float d = 0;
    for (size_t i = 0; i < a.size(); ++i) d = std::max(d, std::fabs(a[i] - b[i]));
    return d;
}

std::string temp_path(const std::string& name) {
    return (std::filesystem::temp_directory_path() / (name + "_" + std::to_string(::getpid()))).string();
}

}  // namespace

TEST(PrefillControl, BatchesReportProgressAndGiveTheSameLogits) {
    auto m = LoadedModel::open(kGolden);
    std::vector<int32_t> prompt = {3, 1, 4, 1, 5, 9, 2, 6, 5, 3};
    std::vector<float> whole, batched;
    Session(m->forward()).prefill(prompt, {}, 0, &whole);

    Session s(m->forward());
    std::vector<std::pair<int64_t, int64_t>> calls;
    PrefillControl control{.max_batch = 3, .on_progress = [&](int64_t done, int64_t total) {
                               calls.emplace_back(done, total);
                               return true;
                           }};
    PrefillResult r = s.prefill(prompt, {}, 0, &batched, control);
    EXPECT_FALSE(r.stopped);
    EXPECT_EQ(r.processed_tokens, 10);
    // Batches end at 3, 6 and 9 (the snapshot before the last token also cuts at 9), then 10.
    std::vector<std::pair<int64_t, int64_t>> expected = {{0, 10}, {3, 10}, {6, 10}, {9, 10}, {10, 10}};
    EXPECT_EQ(calls, expected);
    ASSERT_EQ(whole.size(), batched.size());
    float ref = 0;
    for (float v : whole) ref = std::max(ref, std::fabs(v));
    EXPECT_LE(max_abs_diff(whole, batched), 1e-5f * ref);
}

TEST(PrefillControl, ProgressCountsOnlyNewTokens) {
    auto m = LoadedModel::open(kGolden);
    Session s(m->forward());
    std::vector<float> logits;
    s.prefill(std::vector<int32_t>{1, 2, 3, 4}, {}, 0, &logits);
    int64_t last_total = -1;
    PrefillControl control{.max_batch = 0, .on_progress = [&](int64_t, int64_t total) {
                               last_total = total;
                               return true;
                           }};
    PrefillResult r = s.prefill(std::vector<int32_t>{1, 2, 3, 4, 5, 6}, {}, 0, &logits, control);
    EXPECT_EQ(r.cached_tokens, 4);
    EXPECT_EQ(last_total, 2);
}

TEST(PrefillControl, StopLeavesAResumablePrefix) {
    auto m = LoadedModel::open(kGolden);
    Session s(m->forward());
    std::vector<int32_t> prompt = {7, 8, 9, 10, 11, 12, 13};
    std::vector<float> logits;
    PrefillControl control{.max_batch = 2, .on_progress = [](int64_t done, int64_t) { return done < 4; }};
    PrefillResult r = s.prefill(prompt, {}, 0, &logits, control);
    EXPECT_TRUE(r.stopped);
    EXPECT_EQ(r.processed_tokens, 4);
    EXPECT_TRUE(logits.empty());
    EXPECT_EQ(s.tokens().size(), 4u);
    PrefillResult again = s.prefill(prompt, {}, 0, &logits);
    EXPECT_EQ(again.cached_tokens, 4);
    EXPECT_FALSE(logits.empty());
}

TEST(PrefillControl, GenerateStoppedInThePromptSamplesNothing) {
    auto m = LoadedModel::open(kGolden);
    Session s(m->forward());
    Sampler sampler(SamplingParams{.temperature = 0});
    GenerateOptions go;
    go.max_new_tokens = 5;
    go.prefill.max_batch = 1;
    go.prefill.on_progress = [](int64_t done, int64_t) { return done < 1; };
    int tokens = 0;
    GenerateStats g = generate(s, std::vector<int32_t>{1, 2, 3}, go, sampler, [&](int32_t) { return ++tokens, true; });
    EXPECT_TRUE(g.stopped_in_prompt);
    EXPECT_EQ(g.new_tokens, 0);
    EXPECT_EQ(tokens, 0);
}

// The reply printer on a plain file: no escape codes, reasoning then a blank line then the answer.
class ReplyPrinterTest : public ::testing::Test {
protected:
    static void SetUpTestSuite() { tok_ = std::make_unique<Tokenizer>(Tokenizer::load(kTiny + "/tokenizer.json")); }
    static void TearDownTestSuite() { tok_.reset(); }

    struct Printed {
        std::string out, reasoning, content;
    };
    Printed print(const std::string& generated, ReplyOptions options, const std::string& echo = "") {
        std::FILE* f = std::tmpfile();
        Printed p;
        {
            ReplyPrinter printer(*tok_, f, options);
            printer.echo(echo);
            for (int32_t id : tok_->encode(generated)) printer.push(id);
            printer.finish();
            printer.finish();  // idempotent
            p.reasoning = printer.reasoning();
            p.content = printer.content();
        }
        std::rewind(f);
        char buf[4096];
        while (size_t n = std::fread(buf, 1, sizeof buf, f)) p.out.append(buf, n);
        std::fclose(f);
        return p;
    }
    static std::unique_ptr<Tokenizer> tok_;
};
std::unique_ptr<Tokenizer> ReplyPrinterTest::tok_;

TEST_F(ReplyPrinterTest, ReasoningIsSeparatedFromTheAnswer) {
    Printed p = print("Let me think.\n</think>\n\nThe answer is light.", {.split_reasoning = true, .opens_thinking = true});
    EXPECT_EQ(p.out, "Let me think.\n\nThe answer is light.\n");
    EXPECT_EQ(p.content, "The answer is light.");
    EXPECT_EQ(p.reasoning, "Let me think.\n");
}

TEST_F(ReplyPrinterTest, ReasoningWithoutTrailingNewlineStillGetsABlankLine) {
    Printed p = print("<think>\n\nhmm</think>yes", {.split_reasoning = true});
    EXPECT_EQ(p.out, "hmm\n\nyes\n");
}

TEST_F(ReplyPrinterTest, HiddenReasoningPrintsOnlyTheAnswer) {
    Printed p = print("secret\n</think>\n\nvisible", {.split_reasoning = true, .opens_thinking = true, .hide_thinking = true});
    EXPECT_EQ(p.out, "visible\n");
    EXPECT_EQ(p.reasoning, "secret\n");
}

TEST_F(ReplyPrinterTest, PlainContinuationFollowsItsPromptAndEndsWithOneNewline) {
    Printed p = print(" was light.\n", {}, "And there");
    EXPECT_EQ(p.out, "And there was light.\n");
    Printed q = print(" was light", {}, "And there");
    EXPECT_EQ(q.out, "And there was light\n");
    Printed empty = print("", {});
    EXPECT_EQ(empty.out, "");
}

TEST(Conversation, SaveThenLoadKeepsEveryMessage) {
    Conversation c;
    c.system = "Be brief.";
    c.turns.push_back({{"role", "user"}, {"content", "Hi ✓"}});
    c.turns.push_back({{"role", "assistant"}, {"content", "Hello"}, {"reasoning_content", "greet"}});
    const std::string path = temp_path("chat_conv.json");
    save_conversation(c, path);
    EXPECT_FALSE(std::filesystem::exists(path + ".tmp"));
    Conversation d = load_conversation(path);
    EXPECT_EQ(d.system, "Be brief.");
    EXPECT_EQ(d.turns, c.turns);
    EXPECT_EQ(d.messages().size(), 3u);
    EXPECT_EQ(d.user_turns(), 1u);
    std::filesystem::remove(path);
}

TEST(Conversation, BadFilesNameTheProblem) {
    const std::string path = temp_path("chat_bad.json");
    auto expect_error = [&](const std::string& text, const std::string& needle) {
        std::ofstream(path) << text;
        try {
            load_conversation(path);
            ADD_FAILURE() << "no error for " << text;
        } catch (const Error& e) {
            EXPECT_EQ(e.kind(), ErrorKind::BadInput);
            EXPECT_NE(std::string(e.what()).find(needle), std::string::npos) << e.what();
        }
    };
    expect_error("{not json", "not valid JSON");
    expect_error("{\"a\": 1}", "array of messages");
    expect_error("[{\"content\": \"x\"}]", "message 0 has no \"role\"");
    expect_error("[{\"role\": \"user\", \"content\": \"x\"}, {\"role\": \"robot\"}]", "message 1 has role 'robot'");
    expect_error("[{\"role\": \"user\", \"content\": 5}]", "content must be a string");
    expect_error("[{\"role\": \"user\", \"content\": \"x\"}, {\"role\": \"system\", \"content\": \"s\"}]",
                 "must come first");
    std::ofstream(path) << "{\"messages\": [{\"role\": \"user\", \"content\": \"x\"}]}";
    EXPECT_EQ(load_conversation(path).turns.size(), 1u);
    std::filesystem::remove(path);
    EXPECT_THROW(load_conversation(path), Error);
    EXPECT_THROW(save_conversation(Conversation{}, "/nonexistent-dir/x.json"), Error);
}
