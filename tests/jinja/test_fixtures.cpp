// Golden tests: flashmoe's Jinja interpreter against Python jinja2 under transformers' settings.
// The fixtures come from tools/jinja_fixtures/make_fixtures.py (the script is the provenance).
#include "text/chat_template.h"
#include "util/error.h"

#include <gtest/gtest.h>

#include <fstream>
#include <sstream>

namespace {

using flashmoe::ChatTemplate;
using flashmoe::Error;
using flashmoe::ErrorKind;
using nlohmann::ordered_json;

const std::string kDataDir = std::string(FLASHMOE_TEST_DATA) + "/jinja/";

std::string read_text(const std::string& path) {
    std::ifstream in(path, std::ios::binary);
    EXPECT_TRUE(in.good()) << "cannot open " << path;
    std::ostringstream ss;
    ss << in.rdbuf();
    return ss.str();
}

ordered_json read_json(const std::string& name) { return ordered_json::parse(read_text(kDataDir + name)); }

// A jinja2 TemplateError comes from raise_exception: same message, kind BadInput.
void expect_same_failure(const ordered_json& c, const std::function<std::string()>& render, const std::string& label) {
    try {
        std::string out = render();
        ADD_FAILURE() << label << ": expected an error (" << c["error"].get<std::string>() << "), rendered:\n" << out;
    } catch (const Error& e) {
        if (c["error_type"] == "TemplateError") {
            EXPECT_EQ(e.kind(), ErrorKind::BadInput) << label;
            EXPECT_EQ(std::string(e.what()), c["error"].get<std::string>()) << label;
        }
    }
}

TEST(JinjaConversations, RenderLikeTransformers) {
    ordered_json fixtures = read_json("conversations.json");
    std::map<std::string, std::unique_ptr<ChatTemplate>> templates;
    size_t rendered = 0, failed = 0;
    std::map<std::string, size_t> per_template;
    for (const auto& c : fixtures["cases"]) {
        const std::string name = c["template"];
        if (!templates.count(name)) {
            templates[name] = std::make_unique<ChatTemplate>(ChatTemplate::from_source(read_text(kDataDir + name), c["special_tokens"]));
        }
        const ChatTemplate& t = *templates[name];
        const std::string label = name + " / " + c["name"].get<std::string>();
        auto render = [&] { return t.render(c["messages"], c["tools"], c["add_generation_prompt"].get<bool>(), c["kwargs"]); };
        if (c.contains("expected")) {
            try {
                EXPECT_EQ(render(), c["expected"].get<std::string>()) << label;
            } catch (const Error& e) {
                ADD_FAILURE() << label << ": " << e.what();
            }
            ++rendered;
            ++per_template[name];
        } else {
            expect_same_failure(c, render, label);
            ++failed;
        }
    }
    // The brief: at least 50 successful conversations per template, and the raise paths.
    EXPECT_GE(per_template["qwen3-chat-template.jinja"], 50u);
    EXPECT_GE(per_template["qwen3.5-chat-template.jinja"], 50u);
    EXPECT_GT(failed, 5u);
    EXPECT_GT(rendered, 100u);
}

TEST(JinjaSnippets, MatchJinja2) {
    ordered_json fixtures = read_json("snippets.json");
    const ordered_json& vars = fixtures["variables"];
    for (const auto& c : fixtures["cases"]) {
        const std::string src = c["template"];
        auto render = [&] { return flashmoe::jinja::Template::parse(src).render(vars); };
        if (c.contains("expected")) {
            try {
                EXPECT_EQ(render(), c["expected"].get<std::string>()) << "template: " << src;
            } catch (const Error& e) {
                ADD_FAILURE() << "template: " << src << "\nerror: " << e.what();
            }
        } else {
            expect_same_failure(c, render, "template: " + src);
        }
    }
}

}  // namespace
