// The engine side of the server on the bundled tiny model: job preparation (template, context
// limits), the output pipeline (stop strings, reasoning, tool calls over real tokens), and the
// engine loop (concurrent jobs get the answers they get alone, prefix reuse across turns,
// cancellation frees the slot, scripted and forced tool calls).
#include "engine/loaded_model.h"
#include "server/engine_loop.h"
#include "server/routes.h"
#include "text/tokenizer.h"

#include <gtest/gtest.h>

#include <thread>

using namespace flashmoe;
using namespace flashmoe::server;
using json = nlohmann::ordered_json;

namespace {

const std::string kModel = std::string(FLASHMOE_SOURCE_DIR) + "/models/tiny-qwen35moe";

LoadedModel& model() {
    static std::unique_ptr<LoadedModel> m = LoadedModel::open(kModel);
    return *m;
}

ApiRequest chat_request(const std::string& user, bool thinking = false) {
    ApiRequest r;
    r.messages = json::array({{{"role", "user"}, {"content", user}}});
    r.template_kwargs = {{"enable_thinking", thinking}};
    r.sampling.temperature = 0;
    r.last_user_text = user;
    return r;
}

JobSpec job(const ApiRequest& r, int64_t context = 4096) {
    return prepare_job(model(), r, JobLimits{.context = context}, model().generation_defaults().stop_tokens);
}

struct Result {
    OutputDelta output;
    std::string finish_reason;
    Usage usage;
    std::optional<ApiError> error;
};

Result collect(const std::shared_ptr<ReplyChannel>& reply) {
    Result r;
    for (int i = 0; i < 600; ++i) {  // at most a minute
        auto ev = reply->pop(std::chrono::milliseconds(100));
        if (!ev) continue;
        if (ev->kind == ReplyEvent::Kind::Delta) r.output.append(std::move(ev->delta));
        if (ev->kind == ReplyEvent::Kind::Done) {
            r.finish_reason = ev->finish_reason;
            r.usage = ev->usage;
            return r;
        }
        if (ev->kind == ReplyEvent::Kind::Failed) {
            r.error = ev->error;
            return r;
        }
    }
    ADD_FAILURE() << "no reply within a minute";
    return r;
}

EngineOptions slots(size_t n) {
    EngineOptions o;
    o.slots = n;
    return o;
}

OutputOptions stop_at(std::string stop) {
    OutputOptions o;
    o.stop = {std::move(stop)};
    return o;
}

OutputDelta run_pipeline(const std::string& text, OutputOptions options, bool* stopped = nullptr) {
    const Tokenizer& tok = model().tokenizer();
    OutputPipeline p(tok, std::move(options));
    OutputDelta all;
    bool more = true;
    for (int32_t id : tok.encode(text)) {
        OutputDelta d;
        more = p.push(id, d);
        all.append(std::move(d));
        if (!more) break;
    }
    OutputDelta d;
    p.finish(d);
    all.append(std::move(d));
    if (stopped) *stopped = !more;
    return all;
}

}  // namespace

TEST(PrepareJob, ContextLimitsAre400) {
    ApiRequest r = chat_request("And God said, Let there be light");
    JobSpec ok = job(r);
    EXPECT_GT(ok.prompt.size(), 5u);
    EXPECT_EQ(ok.max_tokens, 4096 - int64_t(ok.prompt.size()));  // chat default: the rest of the context
    r.max_tokens = 4096;
    try {
        job(r);
        FAIL() << "accepted prompt + max_tokens beyond the context";
    } catch (const ApiError& e) {
        EXPECT_EQ(e.status(), 400);
        EXPECT_EQ(e.code(), "context_length_exceeded");
    }
    r.max_tokens.reset();
    EXPECT_THROW(job(r, int64_t(ok.prompt.size())), ApiError);  // the prompt alone fills it
}

TEST(PrepareJob, TemplateRejectionIs400) {
    ApiRequest r;
    r.messages = json::array({{{"role", "system"}, {"content", "only a system message"}}});
    try {
        job(r);
        FAIL();
    } catch (...) {
        EXPECT_EQ(to_api_error(std::current_exception()).status(), 400);
    }
}

TEST(PrepareJob, CompletionTokenIdsAreChecked) {
    ApiRequest r;
    r.endpoint = Endpoint::Completion;
    r.prompt_ids = {1, 2, 999999};
    EXPECT_THROW(job(r), ApiError);
    r.prompt_ids = {1, 2, 3};
    EXPECT_EQ(job(r).max_tokens, 16);  // OpenAI's completions default
}

TEST(PrepareJob, ThinkingAndToolChoice) {
    ApiRequest r = chat_request("hi", true);
    JobSpec j = job(r);
    EXPECT_TRUE(j.output.starts_in_reasoning);
    r.tools = json::parse(R"([{"type": "function", "function": {"name": "get_weather"}}])");
    r.tool_choice.mode = ToolChoice::Mode::Named;
    r.tool_choice.name = "get_weather";
    j = job(r);
    EXPECT_TRUE(j.output.parse_tools);
    EXPECT_EQ(j.forced_text, "<tool_call>\n<function=get_weather>\n");
    std::string text = model().tokenizer().decode(j.prompt);
    EXPECT_NE(text.find("# Tools"), std::string::npos);
    r.tool_choice.mode = ToolChoice::Mode::None;
    j = job(r);
    EXPECT_FALSE(j.output.parse_tools);
    EXPECT_EQ(model().tokenizer().decode(j.prompt).find("# Tools"), std::string::npos);
}

TEST(OutputPipeline, StopStringsAcrossTokensAreCutAndNeverShown) {
    bool stopped = false;
    OutputDelta d = run_pipeline("In the beginning God created the heaven and the earth.", stop_at("heaven and"),
                                 &stopped);
    EXPECT_TRUE(stopped);
    EXPECT_EQ(d.content, "In the beginning God created the ");
    d = run_pipeline("In the beginning", stop_at("beginning God"), &stopped);
    EXPECT_FALSE(stopped);
    EXPECT_EQ(d.content, "In the beginning");  // a held-back prefix is released at the end
}

TEST(OutputPipeline, ReasoningAndToolCallsOverRealTokens) {
    json tools = json::parse(R"([{"type": "function", "function": {"name": "get_weather", "parameters":
        {"type": "object", "properties": {"city": {"type": "string"}, "days": {"type": "integer"}}}}}])");
    OutputOptions options;
    options.split_reasoning = options.starts_in_reasoning = options.parse_tools = true;
    options.tools = tools;
    OutputDelta d = run_pipeline(
        "The user wants weather.\n</think>\n\nLet me check.\n\n<tool_call>\n<function=get_weather>\n<parameter=city>\n"
        "Jerusalem\n</parameter>\n<parameter=days>\n3\n</parameter>\n</function>\n</tool_call>",
        options);
    EXPECT_EQ(d.reasoning, "The user wants weather.\n");
    EXPECT_EQ(d.content, "Let me check.");
    ASSERT_EQ(d.tool_calls.size(), 1u);
    EXPECT_EQ(d.tool_calls[0].name, "get_weather");
    EXPECT_EQ(d.tool_calls[0].arguments, R"({"city":"Jerusalem","days":3})");
    EXPECT_EQ(d.tool_calls[0].id.substr(0, 5), "call_");
}

TEST(EngineLoop, ConcurrentJobsGetTheAnswersTheyGetAlone) {
    const std::vector<std::string> prompts = {"Who was Moses?", "And God said", "Tell me of David.", "What is love?",
                                              "Where is Egypt?", "Who built the ark?"};
    std::vector<std::string> alone;
    {
        EngineLoop engine(model(), slots(1));
        for (auto& p : prompts) {
            ApiRequest r = chat_request(p);
            r.max_tokens = 24;
            Result res = collect(engine.submit(job(r)));
            ASSERT_FALSE(res.error);
            alone.push_back(res.output.content);
        }
    }
    EngineLoop engine(model(), slots(4));
    std::vector<std::shared_ptr<ReplyChannel>> replies;
    for (auto& p : prompts) {
        ApiRequest r = chat_request(p);
        r.max_tokens = 24;
        replies.push_back(engine.submit(job(r)));
    }
    for (size_t i = 0; i < prompts.size(); ++i) {
        Result res = collect(replies[i]);
        ASSERT_FALSE(res.error);
        EXPECT_EQ(res.output.content, alone[i]) << prompts[i];
        EXPECT_TRUE(res.finish_reason == "stop" || res.finish_reason == "length");
    }
    EXPECT_EQ(engine.counters().completed, prompts.size());
}

TEST(EngineLoop, SecondTurnReusesTheFirst) {
    EngineLoop engine(model(), slots(2));
    ApiRequest r = chat_request("Who was Moses?");
    r.max_tokens = 16;
    JobSpec first_job = job(r);
    ASSERT_FALSE(first_job.boundaries.empty());
    const int64_t end_of_question = first_job.boundaries.back();
    Result first = collect(engine.submit(std::move(first_job)));
    EXPECT_EQ(first.usage.cached_tokens, 0);
    r.messages.push_back({{"role", "assistant"}, {"content", first.output.content}});
    r.messages.push_back({{"role", "user"}, {"content", "And who was Aaron?"}});
    Result second = collect(engine.submit(job(r)));
    // Everything up to the end of the first question; the reply is rendered differently as history
    // (no <think> block), so it runs again.
    EXPECT_EQ(second.usage.cached_tokens, end_of_question);
    EXPECT_LT(second.usage.cached_tokens, second.usage.prompt_tokens);
}

TEST(EngineLoop, CancelledJobStopsAndFreesItsSlot) {
    EngineLoop engine(model(), slots(1));
    ApiRequest r = chat_request("And God said");
    r.max_tokens = 3000;
    r.ignore_eos = true;
    auto reply = engine.submit(job(r));
    ASSERT_TRUE(reply->pop(std::chrono::seconds(30)));  // it is generating
    reply->cancel();
    // The only slot comes back: a short job right after completes promptly.
    ApiRequest r2 = chat_request("Who was Moses?");
    r2.max_tokens = 4;
    auto start = std::chrono::steady_clock::now();
    Result res = collect(engine.submit(job(r2)));
    EXPECT_FALSE(res.error);
    EXPECT_LT(std::chrono::steady_clock::now() - start, std::chrono::seconds(20));
    EXPECT_EQ(engine.counters().cancelled, 1u);
    // The slot is handed back just after the reply's last event.
    for (int i = 0; i < 100 && engine.counters().busy != 0; ++i) std::this_thread::sleep_for(std::chrono::milliseconds(10));
    EXPECT_EQ(engine.counters().busy, 0u);
}

TEST(EngineLoop, ScriptedReplyBecomesToolCalls) {
    EngineOptions options = slots(1);
    options.script = {{"weather", "Checking.\n</think>\n\n<tool_call>\n<function=get_weather>\n<parameter=city>\n"
                                  "Paris\n</parameter>\n</function>\n</tool_call>"}};
    EngineLoop engine(model(), std::move(options));
    ApiRequest r = chat_request("What is the weather in Paris?", true);
    r.tools = json::parse(R"([{"type": "function", "function": {"name": "get_weather"}}])");
    Result res = collect(engine.submit(job(r)));
    ASSERT_FALSE(res.error);
    EXPECT_EQ(res.finish_reason, "tool_calls");
    EXPECT_EQ(res.output.reasoning, "Checking.\n");
    ASSERT_EQ(res.output.tool_calls.size(), 1u);
    EXPECT_EQ(res.output.tool_calls[0].arguments, R"({"city":"Paris"})");
}

TEST(EngineLoop, NamedToolChoiceForcesTheCallOpening) {
    EngineLoop engine(model(), slots(1));
    ApiRequest r = chat_request("Who was Moses?");
    r.tools = json::parse(R"([{"type": "function", "function": {"name": "lookup"}}])");
    r.tool_choice.mode = ToolChoice::Mode::Named;
    r.tool_choice.name = "lookup";
    r.max_tokens = 12;
    Result res = collect(engine.submit(job(r)));
    ASSERT_FALSE(res.error);
    // The tiny model cannot finish a call; either it parsed or its opening came back as content.
    const bool called = !res.output.tool_calls.empty() && res.output.tool_calls[0].name == "lookup";
    EXPECT_TRUE(called || res.output.content.starts_with("<tool_call>\n<function=lookup>")) << res.output.content;
}

TEST(OutputPipeline, IdsWithoutTextAddNothing) {
    OutputPipeline p(model().tokenizer(), OutputOptions{});
    OutputDelta d;
    EXPECT_TRUE(p.push(int32_t(model().config().vocab_size) - 1, d));  // a padding row
    EXPECT_TRUE(p.push(model().tokenizer().encode("Amen").back(), d));
    p.finish(d);
    EXPECT_EQ(d.content, "men");
}
