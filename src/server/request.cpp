#include "server/request.h"

#include "server/api_error.h"
#include "util/error.h"

#include <fmt/format.h>

#include <limits>
#include <random>

namespace flashmoe::server {
namespace {

using json = nlohmann::ordered_json;

const char* type_name(const json& v) {
    switch (v.type()) {
        case json::value_t::null: return "null";
        case json::value_t::boolean: return "a boolean";
        case json::value_t::string: return "a string";
        case json::value_t::array: return "an array";
        case json::value_t::object: return "an object";
        case json::value_t::number_integer:
        case json::value_t::number_unsigned: return "an integer";
        case json::value_t::number_float: return "a number";
        default: return "an unsupported value";
    }
}

[[noreturn]] void wrong_type(const std::string& param, const char* expected, const json& got) {
    throw ApiError::bad_request(fmt::format("Invalid type for '{}': expected {}, but got {} instead.", param, expected,
                                            type_name(got)),
                                param);
}

// The field if present and not null.
const json* field(const json& obj, const char* key) {
    auto it = obj.find(key);
    return it == obj.end() || it->is_null() ? nullptr : &*it;
}

std::optional<double> get_number(const json& body, const char* key) {
    const json* v = field(body, key);
    if (!v) return std::nullopt;
    if (!v->is_number()) wrong_type(key, "a number", *v);
    return v->get<double>();
}

std::optional<int64_t> get_integer(const json& body, const char* key) {
    const json* v = field(body, key);
    if (!v) return std::nullopt;
    if (v->is_number_float()) {
        double d = v->get<double>();
        if (d == double(int64_t(d))) return int64_t(d);  // 16.0 is fine, as in Python clients
    }
    if (!v->is_number_integer()) wrong_type(key, "an integer", *v);
    if (v->is_number_unsigned() && v->get<uint64_t>() > uint64_t(std::numeric_limits<int64_t>::max())) {
        return std::numeric_limits<int64_t>::max();
    }
    return v->get<int64_t>();
}

std::optional<bool> get_bool(const json& body, const char* key) {
    const json* v = field(body, key);
    if (!v) return std::nullopt;
    if (!v->is_boolean()) wrong_type(key, "a boolean", *v);
    return v->get<bool>();
}

void refuse(const char* key, const std::string& why) {
    throw ApiError::bad_request(fmt::format("'{}' is not supported: {}", key, why), key);
}

// Sampling, stop, n, stream and the other fields both endpoints share.
void parse_common(const json& body, const SamplingParams& defaults, ApiRequest& r) {
    SamplingParams& s = r.sampling;
    s = defaults;
    if (auto v = get_number(body, "temperature")) s.temperature = float(*v);
    if (auto v = get_number(body, "top_p")) s.top_p = float(*v);
    if (auto v = get_integer(body, "top_k")) {
        if (*v < -1) throw ApiError::bad_request(fmt::format("top_k must be -1 (off) or >= 0, got {}", *v), "top_k");
        s.top_k = *v < 0 ? 0 : *v;
    }
    if (auto v = get_number(body, "min_p")) s.min_p = float(*v);
    if (auto v = get_number(body, "presence_penalty")) s.presence_penalty = float(*v);
    if (auto v = get_number(body, "frequency_penalty")) s.frequency_penalty = float(*v);
    if (auto v = get_number(body, "repetition_penalty")) s.repetition_penalty = float(*v);
    if (auto v = get_integer(body, "seed")) s.seed = uint64_t(*v);
    else s.seed = std::random_device{}();
    try {
        s.validate();
    } catch (const Error& e) {
        std::string msg = e.what();
        throw ApiError::bad_request(msg, msg.substr(0, msg.find(' ')));
    }

    std::optional<int64_t> max_tokens = get_integer(body, "max_tokens");
    if (auto v = get_integer(body, "max_completion_tokens")) max_tokens = v;
    if (max_tokens && *max_tokens < 1) {
        throw ApiError::bad_request(fmt::format("max_tokens must be at least 1, got {}", *max_tokens), "max_tokens");
    }
    r.max_tokens = max_tokens;

    if (const json* stop = field(body, "stop")) {
        auto add = [&](const json& v) {
            if (!v.is_string()) wrong_type("stop", "a string or an array of strings", v);
            if (!v.get_ref<const std::string&>().empty()) r.stop.push_back(v.get<std::string>());
        };
        if (stop->is_array()) {
            for (auto& v : *stop) add(v);
        } else {
            add(*stop);
        }
        if (r.stop.size() > 16) throw ApiError::bad_request("at most 16 stop sequences are supported", "stop");
    }

    if (auto n = get_integer(body, "n"); n && *n != 1) {
        throw ApiError::bad_request(fmt::format("n must be 1 (one choice per request), got {}", *n), "n");
    }
    r.stream = get_bool(body, "stream").value_or(false);
    if (const json* so = field(body, "stream_options")) {
        if (!so->is_object()) wrong_type("stream_options", "an object", *so);
        if (!r.stream) throw ApiError::bad_request("stream_options is only allowed with stream: true", "stream_options");
        if (auto v = get_bool(*so, "include_usage")) r.include_usage = *v;
    }
    r.ignore_eos = get_bool(body, "ignore_eos").value_or(false);
    // (completions take an integer logprobs, checked there)
    if (r.endpoint == Endpoint::Chat && (get_bool(body, "logprobs").value_or(false) || field(body, "top_logprobs"))) {
        refuse("logprobs", "this server does not return log probabilities");
    }
}

// Text parts only: there is no vision tower.
json normalise_content(const json& content, const std::string& param, bool allow_null) {
    if (content.is_null()) {
        if (!allow_null) throw ApiError::bad_request(fmt::format("'{}' must not be null", param), param);
        return content;
    }
    if (content.is_string()) return content;
    if (!content.is_array()) wrong_type(param, "a string or an array of content parts", content);
    json parts = json::array();
    for (size_t i = 0; i < content.size(); ++i) {
        const json& part = content[i];
        std::string p = fmt::format("{}[{}]", param, i);
        if (!part.is_object()) wrong_type(p, "an object", part);
        const json* type = field(part, "type");
        if (!type || !type->is_string() || *type != "text") {
            throw ApiError::bad_request(
                fmt::format("'{}': only content parts of type 'text' are supported", p), p + ".type");
        }
        const json* text = field(part, "text");
        if (!text || !text->is_string()) wrong_type(p + ".text", "a string", text ? *text : json());
        parts.push_back({{"type", "text"}, {"text", *text}});
    }
    return parts;
}

std::string content_text(const json& content) {
    if (content.is_string()) return content.get<std::string>();
    std::string out;
    if (content.is_array())
        for (auto& p : content) out += p.value("text", "");
    return out;
}

json normalise_tool_calls(const json& calls, const std::string& param) {
    if (!calls.is_array()) wrong_type(param, "an array", calls);
    json out = json::array();
    for (size_t i = 0; i < calls.size(); ++i) {
        std::string p = fmt::format("{}[{}]", param, i);
        const json& call = calls[i];
        if (!call.is_object()) wrong_type(p, "an object", call);
        const json* fn = field(call, "function");
        if (!fn || !fn->is_object()) wrong_type(p + ".function", "an object", fn ? *fn : json());
        const json* name = field(*fn, "name");
        if (!name || !name->is_string()) wrong_type(p + ".function.name", "a string", name ? *name : json());
        json args = json::object();
        if (const json* a = field(*fn, "arguments")) {
            if (a->is_string()) {
                args = json::parse(a->get<std::string>(), nullptr, false);
                if (args.is_discarded() || !args.is_object()) {
                    throw ApiError::bad_request(
                        fmt::format("'{}.function.arguments' must be a JSON object (as a string)", p),
                        p + ".function.arguments");
                }
            } else if (a->is_object()) {
                args = *a;
            } else {
                wrong_type(p + ".function.arguments", "a JSON string", *a);
            }
        }
        json c = json::object();
        if (const json* id = field(call, "id"); id && id->is_string()) c["id"] = *id;
        c["type"] = "function";
        c["function"] = {{"name", *name}, {"arguments", std::move(args)}};
        out.push_back(std::move(c));
    }
    return out;
}

json normalise_messages(const json& body, std::string& last_user_text) {
    const json* messages = field(body, "messages");
    if (!messages) throw ApiError::bad_request("'messages' is required", "messages");
    if (!messages->is_array()) wrong_type("messages", "an array", *messages);
    if (messages->empty()) throw ApiError::bad_request("'messages' must contain at least one message", "messages");
    json out = json::array();
    for (size_t i = 0; i < messages->size(); ++i) {
        const json& m = (*messages)[i];
        std::string p = fmt::format("messages[{}]", i);
        if (!m.is_object()) wrong_type(p, "an object", m);
        const json* role_v = field(m, "role");
        if (!role_v || !role_v->is_string()) wrong_type(p + ".role", "a string", role_v ? *role_v : json());
        std::string role = role_v->get<std::string>();
        if (role == "developer") role = "system";
        if (role != "system" && role != "user" && role != "assistant" && role != "tool") {
            throw ApiError::bad_request(
                fmt::format("'{}.role' must be system, developer, user, assistant or tool, got '{}'", p, role),
                p + ".role");
        }
        json nm = {{"role", role}};
        auto content_it = m.find("content");
        json content = content_it == m.end() ? json() : *content_it;
        nm["content"] = normalise_content(content, p + ".content", role == "assistant");
        if (role == "assistant") {
            if (const json* rc = field(m, "reasoning_content")) {
                if (!rc->is_string()) wrong_type(p + ".reasoning_content", "a string", *rc);
                nm["reasoning_content"] = *rc;
            }
            if (const json* tc = field(m, "tool_calls")) nm["tool_calls"] = normalise_tool_calls(*tc, p + ".tool_calls");
        }
        if (role == "tool") {
            if (const json* id = field(m, "tool_call_id"); id && id->is_string()) nm["tool_call_id"] = *id;
        }
        if (role == "user") last_user_text = content_text(nm["content"]);
        out.push_back(std::move(nm));
    }
    return out;
}

void parse_tools(const json& body, ApiRequest& r) {
    if (const json* tools = field(body, "tools")) {
        if (!tools->is_array()) wrong_type("tools", "an array", *tools);
        for (size_t i = 0; i < tools->size(); ++i) {
            std::string p = fmt::format("tools[{}]", i);
            const json& t = (*tools)[i];
            if (!t.is_object()) wrong_type(p, "an object", t);
            const json* type = field(t, "type");
            if (!type || *type != "function") {
                throw ApiError::bad_request(fmt::format("'{}.type' must be 'function'", p), p + ".type");
            }
            const json* fn = field(t, "function");
            if (!fn || !fn->is_object()) wrong_type(p + ".function", "an object", fn ? *fn : json());
            const json* name = field(*fn, "name");
            if (!name || !name->is_string() || name->get_ref<const std::string&>().empty()) {
                throw ApiError::bad_request(fmt::format("'{}.function.name' must be a non-empty string", p),
                                            p + ".function.name");
            }
            if (const json* params = field(*fn, "parameters"); params && !params->is_object()) {
                wrong_type(p + ".function.parameters", "an object", *params);
            }
        }
        if (!tools->empty()) r.tools = *tools;
    }
    const json* choice = field(body, "tool_choice");
    if (!choice) return;
    using Mode = ToolChoice::Mode;
    if (choice->is_string()) {
        const std::string& c = choice->get_ref<const std::string&>();
        if (c == "auto") r.tool_choice.mode = Mode::Auto;
        else if (c == "none") r.tool_choice.mode = Mode::None;
        else if (c == "required") r.tool_choice.mode = Mode::Required;
        else {
            throw ApiError::bad_request(
                fmt::format("'tool_choice' must be auto, none, required or a function, got '{}'", c), "tool_choice");
        }
    } else if (choice->is_object()) {
        const json* fn = field(*choice, "function");
        const json* name = fn && fn->is_object() ? field(*fn, "name") : nullptr;
        if (!name || !name->is_string()) {
            throw ApiError::bad_request("'tool_choice' must be {\"type\": \"function\", \"function\": {\"name\": ...}}",
                                        "tool_choice");
        }
        r.tool_choice.mode = Mode::Named;
        r.tool_choice.name = name->get<std::string>();
    } else {
        wrong_type("tool_choice", "a string or an object", *choice);
    }
    const bool needs_tools = r.tool_choice.mode == Mode::Required || r.tool_choice.mode == Mode::Named;
    if (needs_tools && !r.tools.is_array()) {
        throw ApiError::bad_request("'tool_choice' requires 'tools'", "tool_choice");
    }
    if (r.tool_choice.mode == Mode::Named) {
        bool found = false;
        for (auto& t : r.tools) found = found || t["function"]["name"] == r.tool_choice.name;
        if (!found) {
            throw ApiError::bad_request(fmt::format("tool_choice names '{}', which is not in 'tools'", r.tool_choice.name),
                                        "tool_choice");
        }
    }
}

}  // namespace

bool ApiRequest::thinking_enabled() const {
    auto it = template_kwargs.find("enable_thinking");
    return it == template_kwargs.end() || !it->is_boolean() || it->get<bool>();
}

json parse_body(std::string_view body) {
    json j = json::parse(body, nullptr, false);
    if (j.is_discarded()) throw ApiError::bad_request("the request body is not valid JSON");
    if (!j.is_object()) throw ApiError::bad_request("the request body must be a JSON object");
    return j;
}

ApiRequest parse_chat_request(const json& body, const SamplingParams& defaults) {
    ApiRequest r;
    r.endpoint = Endpoint::Chat;
    r.messages = normalise_messages(body, r.last_user_text);
    parse_tools(body, r);
    if (const json* kw = field(body, "chat_template_kwargs")) {
        if (!kw->is_object()) wrong_type("chat_template_kwargs", "an object", *kw);
        r.template_kwargs = *kw;
    }
    if (const json* rf = field(body, "response_format")) {
        if (!rf->is_object() || rf->value("type", "") != "text") {
            refuse("response_format", "only {\"type\": \"text\"} (no constrained decoding)");
        }
    }
    parse_common(body, defaults, r);
    return r;
}

ApiRequest parse_completion_request(const json& body, const SamplingParams& defaults) {
    ApiRequest r;
    r.endpoint = Endpoint::Completion;
    const json* prompt = field(body, "prompt");
    if (!prompt) throw ApiError::bad_request("'prompt' is required", "prompt");
    const json* p = prompt;
    // A list holding one prompt is accepted; several prompts in one request are not.
    if (p->is_array() && p->size() == 1 && ((*p)[0].is_string() || (*p)[0].is_array())) p = &(*p)[0];
    if (p->is_string()) {
        r.prompt = p->get<std::string>();
        if (r.prompt.empty()) throw ApiError::bad_request("'prompt' must not be empty", "prompt");
    } else if (p->is_array() && !p->empty() && (*p)[0].is_number_integer()) {
        for (auto& id : *p) {
            if (!id.is_number_integer() || id.get<int64_t>() < 0 || id.get<int64_t>() > INT32_MAX) {
                throw ApiError::bad_request("'prompt' token ids must be non-negative integers", "prompt");
            }
            r.prompt_ids.push_back(id.get<int32_t>());
        }
    } else if (p->is_array() && p->size() > 1) {
        throw ApiError::bad_request("one prompt per request: 'prompt' lists several", "prompt");
    } else {
        wrong_type("prompt", "a string or an array of token ids", *p);
    }
    r.last_user_text = r.prompt;
    if (get_bool(body, "echo").value_or(false)) refuse("echo", "the prompt is not echoed");
    if (field(body, "suffix")) refuse("suffix", "no fill-in-the-middle");
    if (auto b = get_integer(body, "best_of"); b && *b != 1) refuse("best_of", "one candidate per request");
    if (const json* lp = field(body, "logprobs"); lp && !(lp->is_number_integer() && lp->get<int64_t>() == 0)) {
        refuse("logprobs", "this server does not return log probabilities");
    }
    parse_common(body, defaults, r);
    return r;
}

}  // namespace flashmoe::server
