#include "targets.h"

#include "model/config.h"
#include "server/api_error.h"
#include "server/request.h"
#include "store/packed_format.h"
#include "store/safetensors.h"
#include "text/jinja/template.h"
#include "text/tokenizer.h"
#include "util/error.h"

#include <nlohmann/json.hpp>

#include <cstdlib>
#include <cstring>
#include <memory>
#include <vector>

namespace flashmoe::fuzz {

namespace {
std::string g_source_dir = ".";

const Tokenizer& qwen3_tokenizer() {
    static const Tokenizer tok = Tokenizer::load(g_source_dir + "/tests/data/tokenizer/qwen3");
    return tok;
}

template <typename F>
void expect_only_flashmoe_errors(F&& f) {
    try {
        f();
    } catch (const Error&) {
        // A clear error is the right answer to bad input.
    }
}
}  // namespace

void set_source_dir(const std::string& dir) { g_source_dir = dir; }

void safetensors_header(const uint8_t* data, size_t size) {
    expect_only_flashmoe_errors([&] { parse_safetensors(data, size, "fuzz.safetensors"); });
}

void model_config(const uint8_t* data, size_t size) {
    auto j = nlohmann::json::parse(data, data + size, nullptr, false);
    if (j.is_discarded()) return;
    expect_only_flashmoe_errors([&] { ModelConfig::from_json(j, "fuzz/config.json"); });
    expect_only_flashmoe_errors([&] {
        if (j.is_object() && j.contains("layout")) ExpertRecordLayout::from_json(j["layout"], "fuzz/model.json");
        else ExpertRecordLayout::from_json(j, "fuzz/model.json");
    });
}

void tokenizer_encode(const uint8_t* data, size_t size) {
    const Tokenizer& tok = qwen3_tokenizer();
    expect_only_flashmoe_errors([&] {
        std::string_view text(reinterpret_cast<const char*>(data), size);
        auto ids = tok.encode(text);
        // Valid text must round-trip through decode (NFC-normalised).
        (void)tok.decode(ids);
    });
}

void tokenizer_decode(const uint8_t* data, size_t size) {
    const Tokenizer& tok = qwen3_tokenizer();
    std::vector<int32_t> ids(size / 4);
    if (!ids.empty()) std::memcpy(ids.data(), data, ids.size() * 4);
    expect_only_flashmoe_errors([&] { (void)tok.decode(ids); });
    expect_only_flashmoe_errors([&] {
        StreamDecoder stream(tok);
        for (int32_t id : ids) (void)stream.push(id);
        (void)stream.flush();
    });
}

void jinja_template(const uint8_t* data, size_t size) {
    std::string_view source(reinterpret_cast<const char*>(data), size);
    expect_only_flashmoe_errors([&] {
        auto t = jinja::Template::parse(source);
        nlohmann::ordered_json vars = {
            {"messages", {{{"role", "system"}, {"content", "be brief"}}, {{"role", "user"}, {"content", "hi"}}}},
            {"add_generation_prompt", true},
            {"tools", nullptr}};
        (void)t.render(vars);
    });
}

void http_request_body(const uint8_t* data, size_t size) {
    const std::string_view text(reinterpret_cast<const char*>(data), size);
    const SamplingParams defaults;
    constexpr auto replace = nlohmann::ordered_json::error_handler_t::replace;
    for (server::Endpoint endpoint : {server::Endpoint::Chat, server::Endpoint::Completion}) {
        try {
            nlohmann::ordered_json body = server::parse_body(text);
            server::ApiRequest r = endpoint == server::Endpoint::Chat ? server::parse_chat_request(body, defaults)
                                                                      : server::parse_completion_request(body, defaults);
            // What the server goes on to use: the normalised messages and tools feed the template.
            (void)r.thinking_enabled();
            (void)r.renders_tools();
            (void)r.messages.dump(-1, ' ', false, replace);
            (void)r.tools.dump(-1, ' ', false, replace);
            (void)r.template_kwargs.dump(-1, ' ', false, replace);
        } catch (const server::ApiError& e) {
            // Anything else escaping (nlohmann's, std::) would have been a 500 for a bad body.
            if (e.status() < 400 || e.status() >= 500) std::abort();
            (void)e.to_json().dump(-1, ' ', false, replace);
        }
    }
}

}  // namespace flashmoe::fuzz
