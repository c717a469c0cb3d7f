// Unit tests of the Jinja interpreter and ChatTemplate: pieces with expected strings checked
// against Python jinja2 (trim_blocks=True, lstrip_blocks=True, as transformers sets them), the
// failure paths (syntax errors, unsupported constructs naming themselves, raise_exception), model
// directory loading, and concurrent renders of one template.
#include "text/chat_template.h"
#include "text/jinja/template.h"
#include "util/error.h"

#include <gtest/gtest.h>

#include <atomic>
#include <filesystem>
#include <fstream>
#include <thread>

namespace {

using flashmoe::ChatTemplate;
using flashmoe::Error;
using flashmoe::ErrorKind;
using flashmoe::jinja::RenderOptions;
using flashmoe::jinja::Template;
using nlohmann::ordered_json;

const ordered_json kVars = ordered_json::parse(R"({"d": {"a": 1, "b": [1, 2]}, "l": [3, 1, 2]})");

std::string render(const std::string& src, const ordered_json& vars = kVars) { return Template::parse(src).render(vars); }

// Runs `fn`, expects an Error of `kind` whose message contains every one of `parts`.
template <typename Fn>
void expect_error(Fn fn, ErrorKind kind, std::initializer_list<std::string> parts) {
    try {
        fn();
        ADD_FAILURE() << "expected an error";
    } catch (const Error& e) {
        EXPECT_EQ(e.kind(), kind) << e.what();
        for (const std::string& p : parts) EXPECT_NE(std::string(e.what()).find(p), std::string::npos) << "'" << p << "' not in: " << e.what();
    }
}

std::string read_text(const std::string& path) {
    std::ifstream in(path, std::ios::binary);
    std::ostringstream ss;
    ss << in.rdbuf();
    return ss.str();
}

TEST(JinjaWhitespace, TrimAndLstripBlocksLikeTransformers) {
    EXPECT_EQ(render("<ul>\n  {% for x in l %}\n    <li>{{ x }}</li>\n  {% endfor %}\n</ul>\n"),
              "<ul>\n    <li>3</li>\n    <li>1</li>\n    <li>2</li>\n</ul>");
    EXPECT_EQ(render("{%- if true %}\n  a\n{%- endif %}\n  b  \n{{- \" c \" -}}\n  d"), "  a  b c d");
}

TEST(JinjaLoops, LoopVariables) {
    EXPECT_EQ(render("{% for x in l %}{{ loop.index }}:{{ x }}{{ ',' if not loop.last }}{% endfor %}"), "1:3,2:1,3:2");
}

TEST(JinjaMacros, DefaultsAndKeywords) {
    EXPECT_EQ(render("{% macro tag(name, body='') %}<{{ name }}>{{ body }}</{{ name }}>{% endmacro %}"
                     "{{ tag('b', 'x') }}{{ tag(name='i') }}"),
              "<b>x</b><i></i>");
}

TEST(JinjaSlicing, ListsAndUnicodeStrings) {
    EXPECT_EQ(render("{{ l[::-1] }}|{{ 'héllo'[1:4] }}|{{ l[-2:] }}"), "[2, 1, 3]|éll|[1, 2]");
}

TEST(JinjaUndefined, IsFalsyAndEmpty) {
    EXPECT_EQ(render("[{{ missing }}][{{ d.missing }}][{{ missing is defined }}][{{ missing|default('z') }}][{{ missing|length }}]"),
              "[][][False][z][0]");
    expect_error([] { render("{{ missing.attr }}"); }, ErrorKind::BadInput, {"'missing' is undefined", "line 1"});
}

TEST(JinjaFilters, TojsonIsTransformersOverride) {
    // no HTML escaping, no ASCII escaping, ", " / ": " separators, key order kept
    EXPECT_EQ(render("{{ v|tojson }}", ordered_json::parse(R"({"v": {"z": "<é>", "a": [1, 2.5, null, true]}})")),
              R"({"z": "<é>", "a": [1, 2.5, null, true]})");
}

TEST(JinjaErrors, SyntaxErrorsNameLineAndColumn) {
    expect_error([] { Template::parse("ok\n{% if x %}never closed"); }, ErrorKind::BadModel, {"endif"});
    expect_error([] { Template::parse("line one\n  {{ x + }}"); }, ErrorKind::BadModel, {"line 2", "column"});
    expect_error([] { Template::parse("{{ 'unterminated }}"); }, ErrorKind::BadModel, {"unterminated string"});
    expect_error([] { Template::parse("{% endfor %}"); }, ErrorKind::BadModel, {"unknown tag 'endfor'"});
}

TEST(JinjaErrors, UnsupportedConstructsNameThemselves) {
    expect_error([] { Template::parse("a\n{{ x|wordwrap(10) }}"); }, ErrorKind::BadModel, {"unsupported filter 'wordwrap'", "line 2"});
    expect_error([] { Template::parse("{% if x is lower %}{% endif %}"); }, ErrorKind::BadModel, {"unsupported test 'lower'"});
    expect_error([] { Template::parse("{% include 'other.jinja' %}"); }, ErrorKind::BadModel, {"unsupported tag 'include'"});
    expect_error([] { Template::parse("{% call m() %}x{% endcall %}"); }, ErrorKind::BadModel, {"unsupported tag 'call'"});
    expect_error([] { Template::parse("{% for x in l recursive %}{% endfor %}"); }, ErrorKind::BadModel, {"recursive"});
    expect_error([] { Template::parse("{{ f(*args) }}"); }, ErrorKind::BadModel, {"*args"});
    // Found only when evaluated: Python would print a bound method, a format spec or a string indent.
    expect_error([] { render("{{ d.items }}"); }, ErrorKind::BadModel, {"items"});
    expect_error([] { render("{{ '{0:>5}'.format('x') }}"); }, ErrorKind::BadModel, {"format spec"});
    expect_error([] { render("{{ [1]|select }}"); }, ErrorKind::BadModel, {"generator"});
    expect_error([] { render("{{ 'x'.zfill(3) }}"); }, ErrorKind::BadModel, {"zfill"});
    // Case mapping of scripts we carry no table for fails instead of passing text through unchanged.
    expect_error([] { render("{{ 'Աբ'|upper }}"); }, ErrorKind::BadInput, {"U+0531"});
}

TEST(JinjaErrors, RaiseExceptionIsBadInputWithTheTemplatesMessage) {
    expect_error([] { render("{{ raise_exception('Conversation roles must alternate') }}"); }, ErrorKind::BadInput, {});
    try {
        render("{% if true %}{{ raise_exception('Conversation roles must alternate') }}{% endif %}");
    } catch (const Error& e) {
        EXPECT_STREQ(e.what(), "Conversation roles must alternate");
    }
}

TEST(JinjaBuiltins, StrftimeNowUsesTheInjectedClock) {
    RenderOptions options;
    options.now = [] { return std::time_t{86400 * 365}; };  // 1971-01-01 UTC
    std::string year = Template::parse("{{ strftime_now('%Y') }}").render(ordered_json::object(), options);
    EXPECT_TRUE(year == "1971" || year == "1970") << year;  // local time zone may shift it by a day
}

class ChatTemplateTest : public ::testing::Test {
protected:
    std::filesystem::path dir_;
    void SetUp() override {
        dir_ = std::filesystem::temp_directory_path() /
               ("flashmoe_chat_template_" + std::to_string(::testing::UnitTest::GetInstance()->random_seed()) + "_" +
                ::testing::UnitTest::GetInstance()->current_test_info()->name());
        std::filesystem::remove_all(dir_);
        std::filesystem::create_directories(dir_);
    }
    void TearDown() override { std::filesystem::remove_all(dir_); }
    void write(const std::string& name, const std::string& text) { std::ofstream(dir_ / name, std::ios::binary) << text; }
};

const ordered_json kHello = ordered_json::parse(R"([{"role": "user", "content": "Hello!"}])");

TEST_F(ChatTemplateTest, PrefersChatTemplateJinjaAndReadsSpecialTokens) {
    write("chat_template.jinja", "{{ bos_token }}|{{ eos_token }}|{{ pad_token }}|{{ messages[0].content }}\n");
    write("tokenizer_config.json",
          R"({"chat_template": "ignored", "bos_token": null, "eos_token": {"content": "</s>", "lstrip": false}, "pad_token": "<pad>"})");
    ChatTemplate t = ChatTemplate::from_model_dir(dir_);
    EXPECT_EQ(t.render(kHello, nullptr, false), "|</s>|<pad>|Hello!");
    EXPECT_EQ(t.eos_token(), "</s>");
    EXPECT_EQ(t.bos_token(), "");
}

TEST_F(ChatTemplateTest, TokenizerConfigStringOrNamedList) {
    write("tokenizer_config.json", R"({"chat_template": "plain:{{ messages|length }}"})");
    EXPECT_EQ(ChatTemplate::from_model_dir(dir_).render(kHello, nullptr, true), "plain:1");
    write("tokenizer_config.json",
          R"({"chat_template": [{"name": "tool_use", "template": "tools"}, {"name": "default", "template": "default:{{ add_generation_prompt }}"}]})");
    EXPECT_EQ(ChatTemplate::from_model_dir(dir_).render(kHello, nullptr, true), "default:True");
}

TEST_F(ChatTemplateTest, MissingOrBrokenTemplateIsBadModel) {
    expect_error([&] { ChatTemplate::from_model_dir(dir_); }, ErrorKind::BadModel, {"no chat template"});
    write("chat_template.jinja", "{% for m in messages %}{{ m|nosuchfilter }}{% endfor %}");
    expect_error([&] { ChatTemplate::from_model_dir(dir_); }, ErrorKind::BadModel, {"nosuchfilter", dir_.string()});
}

TEST_F(ChatTemplateTest, Qwen35RaisesOnRequestsItCannotRender) {
    ChatTemplate t = ChatTemplate::from_source(read_text(std::string(FLASHMOE_TEST_DATA) + "/jinja/qwen3.5-chat-template.jinja"));
    auto only_tool_response = ordered_json::parse(R"([{"role": "user", "content": "<tool_response>x</tool_response>"}])");
    expect_error([&] { t.render(only_tool_response, nullptr, true); }, ErrorKind::BadInput, {"No user query found in messages."});
    auto late_system = ordered_json::parse(R"([{"role": "user", "content": "hi"}, {"role": "system", "content": "s"}])");
    expect_error([&] { t.render(late_system, nullptr, true); }, ErrorKind::BadInput, {"System message must be at the beginning."});
    // Thinking on by default, off with enable_thinking=false (qwen35-moe.md).
    EXPECT_EQ(t.render(kHello, nullptr, true), "<|im_start|>user\nHello!<|im_end|>\n<|im_start|>assistant\n<think>\n");
    EXPECT_EQ(t.render(kHello, nullptr, true, {{"enable_thinking", false}}),
              "<|im_start|>user\nHello!<|im_end|>\n<|im_start|>assistant\n<think>\n\n</think>\n\n");
}

TEST_F(ChatTemplateTest, ConcurrentRendersOfOneTemplateAgree) {
    ChatTemplate t = ChatTemplate::from_source(read_text(std::string(FLASHMOE_TEST_DATA) + "/jinja/qwen3.5-chat-template.jinja"));
    auto messages = ordered_json::parse(R"([
        {"role": "system", "content": "sys"},
        {"role": "user", "content": "weather?"},
        {"role": "assistant", "content": "", "tool_calls": [{"function": {"name": "w", "arguments": {"city": "Paris"}}}]},
        {"role": "tool", "content": "sunny"}])");
    auto tools = ordered_json::parse(R"([{"type": "function", "function": {"name": "w", "parameters": {}}}])");
    const std::string expected = t.render(messages, tools, true);
    std::atomic<int> mismatches{0};
    std::vector<std::thread> threads;
    for (int i = 0; i < 8; ++i) {
        threads.emplace_back([&] {
            for (int k = 0; k < 50; ++k) {
                if (t.render(messages, tools, true) != expected) ++mismatches;
            }
        });
    }
    for (auto& th : threads) th.join();
    EXPECT_EQ(mismatches.load(), 0);
    EXPECT_NE(expected.find("<function=w>\n<parameter=city>\nParis\n</parameter>"), std::string::npos) << expected;
}

}  // namespace

TEST(JinjaLimits, NamespaceCannotHoldItselfAndNestingIsBounded) {
    expect_error([] { render("{% set ns = namespace(a=0) %}{% set ns.a = ns %}{{ ns }}"); }, ErrorKind::BadInput,
                 {"inside itself"});
    expect_error([] { render("{% set n1 = namespace(a=0) %}{% set n2 = namespace(b=n1) %}{% set n1.a = [n2] %}"); },
                 ErrorKind::BadInput, {"inside itself"});
    expect_error([] { Template::parse("{{" + std::string(5000, '(') + "1" + std::string(5000, ')') + "}}"); },
                 ErrorKind::BadModel, {"nesting deeper"});
}
