#include "text/chat_template.h"

#include "util/error.h"

#include <fstream>
#include <sstream>

namespace flashmoe {
namespace {

std::string read_file(const std::filesystem::path& path) {
    std::ifstream in(path, std::ios::binary);
    if (!in) fail(ErrorKind::Io, "cannot open {}", path.string());
    std::ostringstream ss;
    ss << in.rdbuf();
    if (in.bad()) fail(ErrorKind::Io, "cannot read {}", path.string());
    return ss.str();
}

nlohmann::ordered_json read_json(const std::filesystem::path& path) {
    try {
        return nlohmann::ordered_json::parse(read_file(path));
    } catch (const nlohmann::json::exception& e) {
        fail(ErrorKind::BadModel, "{} is not valid JSON: {}", path.string(), e.what());
    }
}

// tokenizer_config.json writes a token either as a string or as an AddedToken {"content": ...}.
nlohmann::ordered_json token_text(const nlohmann::ordered_json& t, const std::string& where) {
    if (t.is_null() || t.is_string()) return t;
    if (t.is_object() && t.contains("content") && t["content"].is_string()) return t["content"];
    if (t.is_array()) {
        nlohmann::ordered_json out = nlohmann::ordered_json::array();
        for (const auto& e : t) out.push_back(token_text(e, where));
        return out;
    }
    fail(ErrorKind::BadModel, "{}: a special token must be a string or {{\"content\": ...}}", where);
}

std::string template_from_config(const nlohmann::ordered_json& value, const std::string& where) {
    if (value.is_string()) return value.get<std::string>();
    if (value.is_array()) {
        for (const auto& entry : value) {
            if (entry.is_object() && entry.value("name", "") == "default" && entry.contains("template") &&
                entry["template"].is_string()) {
                return entry["template"].get<std::string>();
            }
        }
        fail(ErrorKind::BadModel, "{}: \"chat_template\" is a list without a \"default\" entry", where);
    }
    fail(ErrorKind::BadModel, "{}: \"chat_template\" must be a string or a list of {{name, template}}", where);
}

}  // namespace

ChatTemplate ChatTemplate::from_source(std::string source, nlohmann::ordered_json special_tokens) {
    if (!special_tokens.is_object()) fail(ErrorKind::Internal, "special_tokens must be a JSON object");
    nlohmann::ordered_json kept = nlohmann::ordered_json::object();
    for (const auto& [name, value] : special_tokens.items()) {
        if (!value.is_null()) kept[name] = value;
    }
    jinja::Template parsed = jinja::Template::parse(source);
    return ChatTemplate(std::move(source), std::move(parsed), std::move(kept));
}

ChatTemplate ChatTemplate::from_model_dir(const std::filesystem::path& dir) {
    const auto config_path = dir / "tokenizer_config.json";
    nlohmann::ordered_json config = nlohmann::ordered_json::object();
    if (std::filesystem::exists(config_path)) config = read_json(config_path);
    if (!config.is_object()) fail(ErrorKind::BadModel, "{} must hold a JSON object", config_path.string());

    std::string source;
    if (std::filesystem::exists(dir / "chat_template.jinja")) {
        source = read_file(dir / "chat_template.jinja");
    } else if (std::filesystem::exists(dir / "chat_template.json")) {
        auto j = read_json(dir / "chat_template.json");
        if (!j.is_object() || !j.contains("chat_template")) {
            fail(ErrorKind::BadModel, "{} has no \"chat_template\"", (dir / "chat_template.json").string());
        }
        source = template_from_config(j["chat_template"], (dir / "chat_template.json").string());
    } else if (config.contains("chat_template")) {
        source = template_from_config(config["chat_template"], config_path.string());
    } else {
        fail(ErrorKind::BadModel,
             "no chat template in {}: expected chat_template.jinja, chat_template.json or \"chat_template\" in "
             "tokenizer_config.json",
             dir.string());
    }

    nlohmann::ordered_json special = nlohmann::ordered_json::object();
    for (const char* name : {"bos_token", "eos_token", "unk_token", "sep_token", "pad_token", "cls_token", "mask_token",
                             "additional_special_tokens"}) {
        if (config.contains(name)) special[name] = token_text(config[name], config_path.string() + " " + name);
    }
    try {
        return from_source(std::move(source), std::move(special));
    } catch (const Error& e) {
        fail(e.kind(), "{}: {}", dir.string(), e.what());
    }
}

std::string ChatTemplate::render(const nlohmann::ordered_json& messages, const nlohmann::ordered_json& tools,
                                 bool add_generation_prompt, const nlohmann::ordered_json& extra) const {
    if (!messages.is_array()) fail(ErrorKind::BadInput, "chat messages must be a JSON array");
    if (!tools.is_null() && !tools.is_array()) fail(ErrorKind::BadInput, "chat tools must be a JSON array or null");
    if (!extra.is_object()) fail(ErrorKind::BadInput, "chat template arguments must be a JSON object");
    // The variables apply_chat_template passes, in its order.
    nlohmann::ordered_json vars = nlohmann::ordered_json::object();
    vars["messages"] = messages;
    vars["tools"] = tools;
    vars["documents"] = nullptr;
    vars["add_generation_prompt"] = add_generation_prompt;
    for (const auto& [name, value] : special_tokens_.items()) vars[name] = value;
    for (const auto& [name, value] : extra.items()) vars[name] = value;
    return template_.render(vars);
}

std::string ChatTemplate::bos_token() const {
    auto it = special_tokens_.find("bos_token");
    return it != special_tokens_.end() && it->is_string() ? it->get<std::string>() : "";
}

std::string ChatTemplate::eos_token() const {
    auto it = special_tokens_.find("eos_token");
    return it != special_tokens_.end() && it->is_string() ? it->get<std::string>() : "";
}

}  // namespace flashmoe
