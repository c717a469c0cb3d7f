// The XML tool-call parser on outputs shaped like Qwen3.5's: typing by schema, content around
// calls, leniency where models slip, fallback to content where they break the format, and the
// same result however the text is split into streamed chunks.
#include "engine/tool_calls.h"

#include <gtest/gtest.h>

#include <random>

using namespace flashmoe;
using json = nlohmann::ordered_json;

namespace {

const json kTools = json::parse(R"([
  {"type": "function", "function": {"name": "get_weather", "parameters": {"type": "object", "properties": {
     "city": {"type": "string"}, "days": {"type": "integer"}, "metric": {"type": "boolean"},
     "threshold": {"type": "number"}, "tags": {"type": "array", "items": {"type": "string"}},
     "options": {"type": "object"}, "note": {"type": ["string", "null"]},
     "limit": {"anyOf": [{"type": "integer"}, {"type": "null"}]},
     "unit": {"enum": ["celsius", "fahrenheit"]}, "anything": {}}}}},
  {"type": "function", "function": {"name": "write_file", "parameters": {"type": "object", "properties": {
     "path": {"type": "string"}, "content": {"type": "string"}}}}}
])");

ToolCallDelta parse_chunked(const std::string& text, const std::vector<size_t>& cuts) {
    ToolCallParser p(kTools);
    ToolCallDelta all;
    size_t pos = 0;
    auto take = [&](ToolCallDelta d) {
        all.content += d.content;
        for (auto& c : d.calls) all.calls.push_back(std::move(c));
    };
    for (size_t cut : cuts) {
        take(p.push(text.substr(pos, cut - pos)));
        pos = cut;
    }
    take(p.push(text.substr(pos)));
    take(p.flush());
    return all;
}

// Whole, byte by byte, and in random pieces: always the same result.
ToolCallDelta parse_every_way(const std::string& text) {
    ToolCallDelta whole = parse_tool_calls(text, kTools);
    std::vector<size_t> bytes;
    for (size_t i = 1; i < text.size(); ++i) bytes.push_back(i);
    auto check = [&](const ToolCallDelta& d, const char* how) {
        EXPECT_EQ(d.content, whole.content) << how;
        EXPECT_EQ(d.calls.size(), whole.calls.size()) << how;
        for (size_t i = 0; i < std::min(d.calls.size(), whole.calls.size()); ++i) {
            EXPECT_EQ(d.calls[i].name, whole.calls[i].name) << how;
            EXPECT_EQ(d.calls[i].arguments, whole.calls[i].arguments) << how;
        }
    };
    check(parse_chunked(text, bytes), "byte by byte");
    std::mt19937 rng(42);
    for (int trial = 0; trial < 20; ++trial) {
        std::vector<size_t> cuts;
        for (size_t i = 1; i < text.size(); ++i)
            if (rng() % 5 == 0) cuts.push_back(i);
        check(parse_chunked(text, cuts), "random pieces");
    }
    return whole;
}

}  // namespace

TEST(ToolCalls, SingleCallWithStringParameter) {
    auto d = parse_every_way("<tool_call>\n<function=get_weather>\n<parameter=city>\nParis\n</parameter>\n</function>\n</tool_call>");
    ASSERT_EQ(d.calls.size(), 1u);
    EXPECT_EQ(d.calls[0].name, "get_weather");
    EXPECT_EQ(d.calls[0].arguments.dump(), R"({"city":"Paris"})");
    EXPECT_EQ(d.content, "");
}

TEST(ToolCalls, ValuesAreTypedByTheSchema) {
    auto d = parse_every_way(
        "<tool_call>\n<function=get_weather>\n"
        "<parameter=city>\nSan Francisco, CA\n</parameter>\n"
        "<parameter=days>\n3\n</parameter>\n"
        "<parameter=metric>\nTrue\n</parameter>\n"
        "<parameter=threshold>\n-2.5e1\n</parameter>\n"
        "<parameter=tags>\n[\"rain\", \"wind\"]\n</parameter>\n"
        "<parameter=options>\n{\"hourly\": true, \"lang\": \"fr\"}\n</parameter>\n"
        "<parameter=note>\nnull\n</parameter>\n"
        "<parameter=limit>\n10\n</parameter>\n"
        "<parameter=unit>\ncelsius\n</parameter>\n"
        "<parameter=anything>\n{\"x\": [1, 2]}\n</parameter>\n"
        "</function>\n</tool_call>");
    ASSERT_EQ(d.calls.size(), 1u);
    EXPECT_EQ(d.calls[0].arguments.dump(),
              R"({"city":"San Francisco, CA","days":3,"metric":true,"threshold":-25.0,"tags":["rain","wind"],)"
              R"("options":{"hourly":true,"lang":"fr"},"note":null,"limit":10,"unit":"celsius","anything":{"x":[1,2]}})");
}

TEST(ToolCalls, ValuesThatDoNotFitTheirSchemaStayStrings) {
    auto d = parse_every_way(
        "<tool_call>\n<function=get_weather>\n<parameter=days>\nthree\n</parameter>\n"
        "<parameter=metric>\nyes\n</parameter>\n<parameter=tags>\nrain, wind\n</parameter>\n"
        "<parameter=limit>\nnone at all\n</parameter>\n<parameter=note>\nnull-ish\n</parameter>\n"
        "</function>\n</tool_call>");
    ASSERT_EQ(d.calls.size(), 1u);
    EXPECT_EQ(d.calls[0].arguments.dump(),
              R"({"days":"three","metric":"yes","tags":"rain, wind","limit":"none at all","note":"null-ish"})");
}

TEST(ToolCalls, IntegerWrittenAsWholeFloat) {
    auto d = parse_tool_calls("<tool_call><function=get_weather><parameter=days>4.0</parameter></function></tool_call>", kTools);
    ASSERT_EQ(d.calls.size(), 1u);
    EXPECT_EQ(d.calls[0].arguments["days"], 4);
}

TEST(ToolCalls, UnknownFunctionAndParameterKeepStrings) {
    auto d = parse_every_way("<tool_call>\n<function=search>\n<parameter=q>\n42\n</parameter>\n</function>\n</tool_call>");
    ASSERT_EQ(d.calls.size(), 1u);
    EXPECT_EQ(d.calls[0].name, "search");
    EXPECT_EQ(d.calls[0].arguments["q"], "42");
}

TEST(ToolCalls, MultiLineValuesKeepTheirInsideNewlinesAndMarkup) {
    const std::string code = "def f(x):\n    return x < 3 and x > 1\n\n<div>not a tag of ours</div>";
    auto d = parse_every_way("<tool_call>\n<function=write_file>\n<parameter=path>\n/tmp/a.py\n</parameter>\n"
                             "<parameter=content>\n" + code + "\n</parameter>\n</function>\n</tool_call>");
    ASSERT_EQ(d.calls.size(), 1u);
    EXPECT_EQ(d.calls[0].arguments["content"], code);
}

TEST(ToolCalls, ContentBeforeTheCallIsKeptAndTheGapDropped) {
    auto d = parse_every_way("I'll look that up for you.\n\n<tool_call>\n<function=get_weather>\n<parameter=city>\n"
                             "Oslo\n</parameter>\n</function>\n</tool_call>");
    EXPECT_EQ(d.content, "I'll look that up for you.");
    ASSERT_EQ(d.calls.size(), 1u);
}

TEST(ToolCalls, SeveralCallsInARow) {
    auto d = parse_every_way(
        "<tool_call>\n<function=get_weather>\n<parameter=city>\nParis\n</parameter>\n</function>\n</tool_call>\n"
        "<tool_call>\n<function=get_weather>\n<parameter=city>\nRome\n</parameter>\n<parameter=days>\n2\n</parameter>\n"
        "</function>\n</tool_call>\n");
    ASSERT_EQ(d.calls.size(), 2u);
    EXPECT_EQ(d.calls[0].arguments["city"], "Paris");
    EXPECT_EQ(d.calls[1].arguments["city"], "Rome");
    EXPECT_EQ(d.calls[1].arguments["days"], 2);
    EXPECT_EQ(d.content, "");
}

TEST(ToolCalls, TextAfterTheCallsIsContent) {
    auto d = parse_every_way("<tool_call>\n<function=get_weather>\n<parameter=city>\nParis\n</parameter>\n</function>\n"
                             "</tool_call>\n\nDone.");
    ASSERT_EQ(d.calls.size(), 1u);
    EXPECT_EQ(d.content, "Done.");
}

TEST(ToolCalls, ForgottenClosingParameterTag) {
    auto d = parse_every_way("<tool_call>\n<function=get_weather>\n<parameter=city>\nParis\n<parameter=days>\n5\n"
                             "</function>\n</tool_call>");
    ASSERT_EQ(d.calls.size(), 1u);
    EXPECT_EQ(d.calls[0].arguments.dump(), R"({"city":"Paris","days":5})");
}

TEST(ToolCalls, ForgottenClosingFunctionTagInsideAClosedBlock) {
    auto d = parse_every_way("<tool_call>\n<function=get_weather>\n<parameter=city>\nParis\n</parameter>\n</tool_call>");
    ASSERT_EQ(d.calls.size(), 1u);
}

TEST(ToolCalls, OutputEndingBeforeClosingToolCall) {
    auto d = parse_every_way("<tool_call>\n<function=get_weather>\n<parameter=city>\nParis\n</parameter>\n</function>\n");
    ASSERT_EQ(d.calls.size(), 1u);
}

TEST(ToolCalls, BareFunctionBlockWithoutToolCallTags) {
    auto d = parse_every_way("<function=get_weather>\n<parameter=days>\n7\n</parameter>\n</function>");
    ASSERT_EQ(d.calls.size(), 1u);
    EXPECT_EQ(d.calls[0].arguments["days"], 7);
}

TEST(ToolCalls, HermesJsonInsideToolCall) {
    auto d = parse_every_way("<tool_call>\n{\"name\": \"get_weather\", \"arguments\": {\"city\": \"Lima\"}}\n</tool_call>");
    ASSERT_EQ(d.calls.size(), 1u);
    EXPECT_EQ(d.calls[0].name, "get_weather");
    EXPECT_EQ(d.calls[0].arguments["city"], "Lima");
}

TEST(ToolCalls, NoParametersAtAll) {
    auto d = parse_every_way("<tool_call>\n<function=get_weather>\n</function>\n</tool_call>");
    ASSERT_EQ(d.calls.size(), 1u);
    EXPECT_TRUE(d.calls[0].arguments.is_object());
    EXPECT_TRUE(d.calls[0].arguments.empty());
}

// ---- malformed output falls back to content, verbatim ----

TEST(ToolCalls, CutOffInsideAParameterIsContent) {
    const std::string text = "Sure.\n<tool_call>\n<function=get_weather>\n<parameter=city>\nPar";
    auto d = parse_every_way(text);
    EXPECT_TRUE(d.calls.empty());
    EXPECT_EQ(d.content, text);
}

TEST(ToolCalls, BlockWithoutFunctionIsContent) {
    const std::string text = "<tool_call>\nget_weather(city=Paris)\n</tool_call>";
    auto d = parse_every_way(text);
    EXPECT_TRUE(d.calls.empty());
    EXPECT_EQ(d.content, text);
}

TEST(ToolCalls, EmptyFunctionNameIsContent) {
    const std::string text = "<tool_call>\n<function=>\n</function>\n</tool_call>";
    auto d = parse_every_way(text);
    EXPECT_TRUE(d.calls.empty());
    EXPECT_EQ(d.content, text);
}

TEST(ToolCalls, StrayTextBetweenParametersIsContent) {
    const std::string text = "<tool_call>\n<function=get_weather>\nI think the city is\n<parameter=city>\nParis\n"
                             "</parameter>\n</function>\n</tool_call>";
    auto d = parse_every_way(text);
    EXPECT_TRUE(d.calls.empty());
    EXPECT_EQ(d.content, text);
}

TEST(ToolCalls, BrokenJsonInsideToolCallIsContent) {
    const std::string text = "<tool_call>\n{\"name\": \"get_weather\", \"arguments\": {\"city\": }\n</tool_call>";
    auto d = parse_every_way(text);
    EXPECT_TRUE(d.calls.empty());
    EXPECT_EQ(d.content, text);
}

TEST(ToolCalls, AbandonedBlockFollowedByAGoodOne) {
    const std::string bad = "<tool_call>\n<function=get_weather>\n<parameter=city>\n";
    auto d = parse_every_way(bad + "<tool_call>\n<function=get_weather>\n<parameter=city>\nParis\n</parameter>\n"
                                   "</function>\n</tool_call>");
    ASSERT_EQ(d.calls.size(), 1u);
    EXPECT_EQ(d.calls[0].arguments["city"], "Paris");
    EXPECT_EQ(d.content, "<tool_call>\n<function=get_weather>\n<parameter=city>");
}

TEST(ToolCalls, TextThatOnlyLooksLikeATagPassesThrough) {
    const std::string text = "Compare a <tool> with a <tool_cal and <function: they are not calls.\n";
    auto d = parse_every_way(text);
    EXPECT_TRUE(d.calls.empty());
    EXPECT_EQ(d.content, text);
}

TEST(ToolCalls, PlainAnswerKeepsItsTrailingWhitespace) {
    auto d = parse_every_way("Hello.\n\n");
    EXPECT_EQ(d.content, "Hello.\n\n");
}

TEST(ToolCalls, StreamingPassesPlainTextThroughAtOnce) {
    ToolCallParser p(kTools);
    EXPECT_EQ(p.push("Hello, ").content, "Hello,");  // the space waits: a call may follow
    EXPECT_EQ(p.push("world <tool").content, " world");  // "<tool" may start a tag
    EXPECT_EQ(p.push("s> here").content, " <tools> here");
    EXPECT_EQ(p.flush().content, "");
}

TEST(ToolCalls, StreamingReportsACallAsSoonAsItsBlockCloses) {
    ToolCallParser p(kTools);
    EXPECT_TRUE(p.push("<tool_call>\n<function=get_weather>\n<parameter=city>\nParis\n</parameter>\n").calls.empty());
    EXPECT_TRUE(p.push("</function>\n").calls.empty());
    auto d = p.push("</tool_call>");
    ASSERT_EQ(d.calls.size(), 1u);
    EXPECT_EQ(p.calls_seen(), 1u);
}
