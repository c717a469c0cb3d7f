// Request validation: every malformed or unsupported field is a 400 naming the parameter, and
// well-formed requests are normalised the way the chat template needs them.
#include "server/api_error.h"
#include "server/request.h"
#include "util/error.h"

#include <gtest/gtest.h>

using namespace flashmoe;
using namespace flashmoe::server;
using json = nlohmann::ordered_json;

namespace {

SamplingParams defaults() {
    SamplingParams p;
    p.temperature = 0.7f;
    p.top_p = 0.8f;
    p.top_k = 20;
    p.repetition_penalty = 1.05f;
    return p;
}

ApiRequest chat(const std::string& body) { return parse_chat_request(parse_body(body), defaults()); }
ApiRequest completion(const std::string& body) { return parse_completion_request(parse_body(body), defaults()); }

// The ApiError a body produces (status 0 when it is accepted).
ApiError chat_error(const std::string& body) {
    try {
        chat(body);
    } catch (const ApiError& e) {
        return e;
    }
    return ApiError(0, "", "accepted");
}

const char* kUser = R"("messages": [{"role": "user", "content": "hi"}])";

}  // namespace

TEST(Request, MalformedJsonAndNonObjects) {
    EXPECT_THROW(parse_body("{\"messages\": [}"), ApiError);
    EXPECT_THROW(parse_body(""), ApiError);
    EXPECT_THROW(parse_body("[1, 2]"), ApiError);
    EXPECT_THROW(parse_body("\"text\""), ApiError);
    EXPECT_THROW(parse_body("{\"a\": \"\xff\xfe\"}"), ApiError);  // not UTF-8
    try {
        parse_body("{oops}");
    } catch (const ApiError& e) {
        EXPECT_EQ(e.status(), 400);
        EXPECT_EQ(e.to_json()["error"]["type"], "invalid_request_error");
    }
}

TEST(Request, MessagesMustBeANonEmptyArrayOfMessages) {
    EXPECT_EQ(chat_error("{}").param(), "messages");
    EXPECT_EQ(chat_error(R"({"messages": []})").param(), "messages");
    EXPECT_EQ(chat_error(R"({"messages": "hi"})").param(), "messages");
    EXPECT_EQ(chat_error(R"({"messages": [3]})").param(), "messages[0]");
    EXPECT_EQ(chat_error(R"({"messages": [{"content": "hi"}]})").param(), "messages[0].role");
    EXPECT_EQ(chat_error(R"({"messages": [{"role": "wizard", "content": "hi"}]})").param(), "messages[0].role");
    EXPECT_EQ(chat_error(R"({"messages": [{"role": "user", "content": 5}]})").param(), "messages[0].content");
    EXPECT_EQ(chat_error(R"({"messages": [{"role": "user", "content": null}]})").param(), "messages[0].content");
    EXPECT_EQ(chat_error(R"({"messages": [{"role": "user", "content": [{"type": "image_url", "image_url": {}}]}]})")
                  .param(),
              "messages[0].content[0].type");
}

TEST(Request, WrongTypesNameTheParameter) {
    auto err = [](const std::string& field) { return chat_error(std::string("{") + kUser + ", " + field + "}"); };
    EXPECT_EQ(err(R"("temperature": "hot")").param(), "temperature");
    EXPECT_EQ(err(R"("top_k": 2.5)").param(), "top_k");
    EXPECT_EQ(err(R"("max_tokens": "ten")").param(), "max_tokens");
    EXPECT_EQ(err(R"("max_tokens": 0)").param(), "max_tokens");
    EXPECT_EQ(err(R"("stream": "yes")").param(), "stream");
    EXPECT_EQ(err(R"("stop": 5)").param(), "stop");
    EXPECT_EQ(err(R"("stop": ["a", 1])").param(), "stop");
    EXPECT_EQ(err(R"("n": 2)").param(), "n");
    EXPECT_EQ(err(R"("seed": "x")").param(), "seed");
    EXPECT_EQ(err(R"("tools": {})").param(), "tools");
    EXPECT_EQ(err(R"("tools": [{"type": "function", "function": {"name": ""}}])").param(), "tools[0].function.name");
    EXPECT_EQ(err(R"("tool_choice": "sometimes")").param(), "tool_choice");
    EXPECT_EQ(err(R"("tool_choice": "required")").param(), "tool_choice");  // no tools
    EXPECT_EQ(err(R"("chat_template_kwargs": true)").param(), "chat_template_kwargs");
    EXPECT_EQ(err(R"("stream_options": {"include_usage": true})").param(), "stream_options");  // without stream
    EXPECT_EQ(err(R"("logprobs": true)").param(), "logprobs");
    EXPECT_EQ(err(R"("response_format": {"type": "json_object"})").param(), "response_format");
}

TEST(Request, SamplingRangesAreChecked) {
    auto err = [](const std::string& field) { return chat_error(std::string("{") + kUser + ", " + field + "}"); };
    EXPECT_EQ(err(R"("temperature": -1)").status(), 400);
    EXPECT_EQ(err(R"("top_p": 0)").param(), "top_p");
    EXPECT_EQ(err(R"("min_p": 1.5)").param(), "min_p");
    EXPECT_EQ(err(R"("presence_penalty": 3)").param(), "presence_penalty");
    EXPECT_EQ(err(R"("frequency_penalty": -2.5)").param(), "frequency_penalty");
    EXPECT_EQ(err(R"("repetition_penalty": 0)").param(), "repetition_penalty");
    EXPECT_EQ(err(R"("top_k": -2)").param(), "top_k");
}

TEST(Request, DefaultsComeFromTheModelAndFieldsOverrideThem) {
    ApiRequest r = chat(std::string("{") + kUser + "}");
    EXPECT_FLOAT_EQ(r.sampling.temperature, 0.7f);
    EXPECT_EQ(r.sampling.top_k, 20);
    EXPECT_FALSE(r.max_tokens);
    EXPECT_FALSE(r.stream);
    r = chat(std::string("{") + kUser +
             R"(, "temperature": 0, "top_p": 0.5, "top_k": -1, "min_p": 0.1, "presence_penalty": 1.5,
                "frequency_penalty": 0.5, "repetition_penalty": 1.2, "seed": 7, "max_completion_tokens": 9,
                "stop": "END", "stream": true, "stream_options": {"include_usage": true}, "n": 1})");
    EXPECT_EQ(r.sampling.temperature, 0.0f);
    EXPECT_FLOAT_EQ(r.sampling.top_p, 0.5f);
    EXPECT_EQ(r.sampling.top_k, 0);
    EXPECT_FLOAT_EQ(r.sampling.min_p, 0.1f);
    EXPECT_FLOAT_EQ(r.sampling.presence_penalty, 1.5f);
    EXPECT_FLOAT_EQ(r.sampling.frequency_penalty, 0.5f);
    EXPECT_FLOAT_EQ(r.sampling.repetition_penalty, 1.2f);
    EXPECT_EQ(r.sampling.seed, 7u);
    EXPECT_EQ(r.max_tokens, 9);
    EXPECT_EQ(r.stop, std::vector<std::string>{"END"});
    EXPECT_TRUE(r.stream);
    EXPECT_TRUE(r.include_usage);
}

TEST(Request, MessagesAreNormalisedForTheTemplate) {
    ApiRequest r = chat(R"({"messages": [
        {"role": "developer", "content": "Be brief."},
        {"role": "user", "content": [{"type": "text", "text": "What is "}, {"type": "text", "text": "the weather?"}]},
        {"role": "assistant", "content": null, "tool_calls": [{"id": "call_1", "type": "function",
            "function": {"name": "get_weather", "arguments": "{\"city\": \"Paris\", \"days\": 2}"}}]},
        {"role": "tool", "tool_call_id": "call_1", "content": "sunny"}],
      "tools": [{"type": "function", "function": {"name": "get_weather", "parameters": {"type": "object"}}}],
      "chat_template_kwargs": {"enable_thinking": false}})");
    EXPECT_EQ(r.messages[0]["role"], "system");
    EXPECT_EQ(r.last_user_text, "What is the weather?");
    const json& args = r.messages[2]["tool_calls"][0]["function"]["arguments"];
    ASSERT_TRUE(args.is_object());
    EXPECT_EQ(args.dump(), R"({"city":"Paris","days":2})");  // key order kept
    EXPECT_FALSE(r.thinking_enabled());
    EXPECT_TRUE(r.renders_tools());
}

TEST(Request, ToolCallArgumentsThatAreNotAnObjectAre400) {
    ApiError e = chat_error(R"({"messages": [{"role": "user", "content": "x"}, {"role": "assistant",
        "tool_calls": [{"type": "function", "function": {"name": "f", "arguments": "not json"}}]}]})");
    EXPECT_EQ(e.status(), 400);
    EXPECT_EQ(e.param(), "messages[1].tool_calls[0].function.arguments");
}

TEST(Request, ToolChoiceModes) {
    const std::string tools = R"("tools": [{"type": "function", "function": {"name": "f"}}])";
    auto with = [&](const std::string& choice) {
        return chat(std::string("{") + kUser + ", " + tools + ", \"tool_choice\": " + choice + "}");
    };
    EXPECT_EQ(with("\"auto\"").tool_choice.mode, ToolChoice::Mode::Auto);
    EXPECT_FALSE(with("\"none\"").renders_tools());
    EXPECT_EQ(with("\"required\"").tool_choice.mode, ToolChoice::Mode::Required);
    ApiRequest named = with(R"({"type": "function", "function": {"name": "f"}})");
    EXPECT_EQ(named.tool_choice.mode, ToolChoice::Mode::Named);
    EXPECT_EQ(named.tool_choice.name, "f");
    EXPECT_THROW(with(R"({"type": "function", "function": {"name": "g"}})"), ApiError);
}

TEST(Request, CompletionPrompts) {
    EXPECT_EQ(completion(R"({"prompt": "In the beginning"})").prompt, "In the beginning");
    EXPECT_EQ(completion(R"({"prompt": ["In the beginning"]})").prompt, "In the beginning");
    EXPECT_EQ(completion(R"({"prompt": [1, 2, 3]})").prompt_ids, (std::vector<int32_t>{1, 2, 3}));
    EXPECT_EQ(completion(R"({"prompt": [[4, 5]]})").prompt_ids, (std::vector<int32_t>{4, 5}));
    EXPECT_THROW(completion(R"({"prompt": ["a", "b"]})"), ApiError);
    EXPECT_THROW(completion(R"({"prompt": ""})"), ApiError);
    EXPECT_THROW(completion(R"({"prompt": [1, -2]})"), ApiError);
    EXPECT_THROW(completion(R"({})"), ApiError);
    EXPECT_THROW(completion(R"({"prompt": "x", "echo": true})"), ApiError);
    EXPECT_THROW(completion(R"({"prompt": "x", "logprobs": 3})"), ApiError);
    EXPECT_NO_THROW(completion(R"({"prompt": "x", "logprobs": null, "echo": false, "best_of": 1})"));
}

TEST(Request, ErrorsMapToStatusesInOnePlace) {
    auto status_of = [](auto thrower) {
        try {
            thrower();
        } catch (...) {
            return to_api_error(std::current_exception()).status();
        }
        return 0;
    };
    EXPECT_EQ(status_of([] { fail(ErrorKind::BadInput, "x"); }), 400);
    EXPECT_EQ(status_of([] { fail(ErrorKind::OutOfMemory, "x"); }), 503);
    EXPECT_EQ(status_of([] { fail(ErrorKind::Io, "x"); }), 500);
    EXPECT_EQ(status_of([] { fail(ErrorKind::BadModel, "x"); }), 500);
    EXPECT_EQ(status_of([] { throw std::runtime_error("x"); }), 500);
    EXPECT_EQ(status_of([] { throw ApiError::too_large(10); }), 413);
    json e = ApiError::bad_request("bad", "temperature").to_json();
    EXPECT_EQ(e.dump(), R"({"error":{"message":"bad","type":"invalid_request_error","param":"temperature","code":null}})");
    EXPECT_EQ(error_for_status(404, "GET", "/v2/x", 0).status(), 404);
    EXPECT_EQ(error_for_status(413, "POST", "/v1/completions", 100).status(), 413);
}
