#include "engine/tool_calls.h"

#include <algorithm>
#include <charconv>
#include <optional>

namespace flashmoe {
namespace {

using json = nlohmann::ordered_json;

constexpr std::string_view kCallOpen = "<tool_call>";
constexpr std::string_view kCallClose = "</tool_call>";
constexpr std::string_view kFunctionOpen = "<function=";
constexpr std::string_view kFunctionClose = "</function>";
constexpr std::string_view kParamOpen = "<parameter=";
constexpr std::string_view kParamClose = "</parameter>";

bool is_space(char c) { return c == ' ' || c == '\n' || c == '\r' || c == '\t'; }

std::string_view trim(std::string_view s) {
    while (!s.empty() && is_space(s.front())) s.remove_prefix(1);
    while (!s.empty() && is_space(s.back())) s.remove_suffix(1);
    return s;
}

void skip_space(std::string_view& s) {
    while (!s.empty() && is_space(s.front())) s.remove_prefix(1);
}

// Length of the longest suffix of `text` that is a proper prefix of `tag`.
size_t partial_suffix(std::string_view text, std::string_view tag) {
    for (size_t n = std::min(text.size(), tag.size() - 1); n > 0; --n) {
        if (text.substr(text.size() - n) == tag.substr(0, n)) return n;
    }
    return 0;
}

std::string lower(std::string_view s) {
    std::string out(s);
    for (char& c : out) c = char(std::tolower(static_cast<unsigned char>(c)));
    return out;
}

// The JSON types a schema admits, in the order they are tried.
void collect_types(const json& schema, std::vector<std::string>& types, int depth = 0) {
    if (!schema.is_object() || depth > 8) return;
    if (auto it = schema.find("type"); it != schema.end()) {
        if (it->is_string()) types.push_back(it->get<std::string>());
        if (it->is_array())
            for (auto& t : *it)
                if (t.is_string()) types.push_back(t.get<std::string>());
    }
    for (const char* key : {"anyOf", "oneOf"}) {
        if (auto it = schema.find(key); it != schema.end() && it->is_array())
            for (auto& sub : *it) collect_types(sub, types, depth + 1);
    }
    if (!types.empty()) return;
    if (auto it = schema.find("enum"); it != schema.end() && it->is_array()) {
        for (auto& v : *it) {
            if (v.is_string()) types.push_back("string");
            else if (v.is_boolean()) types.push_back("boolean");
            else if (v.is_number_integer()) types.push_back("integer");
            else if (v.is_number()) types.push_back("number");
            else if (v.is_null()) types.push_back("null");
        }
    } else if (schema.contains("properties")) {
        types.push_back("object");
    } else if (schema.contains("items")) {
        types.push_back("array");
    }
}

std::optional<json> as_type(std::string_view raw, const std::string& type) {
    std::string_view t = trim(raw);
    if (type == "string") return json(std::string(raw));
    if (type == "null") {
        if (lower(t) == "null" || t == "None") return json(nullptr);
        return std::nullopt;
    }
    if (type == "boolean") {
        std::string l = lower(t);
        if (l == "true") return json(true);
        if (l == "false") return json(false);
        return std::nullopt;
    }
    if (type == "integer") {
        int64_t v = 0;
        auto [ptr, ec] = std::from_chars(t.data(), t.data() + t.size(), v);
        if (!t.empty() && ec == std::errc() && ptr == t.data() + t.size()) return json(v);
        // 3.0 is an integer in JSON Schema's eyes
        json j = json::parse(t, nullptr, false);
        if (!j.is_discarded() && j.is_number_float()) {
            double d = j.get<double>();
            if (d == double(int64_t(d))) return json(int64_t(d));
        }
        return std::nullopt;
    }
    json j = json::parse(t, nullptr, false);
    if (j.is_discarded()) return std::nullopt;
    if (type == "number" && j.is_number()) return j;
    if (type == "object" && j.is_object()) return j;
    if (type == "array" && j.is_array()) return j;
    return std::nullopt;
}

// The block's call, or nullopt when it is malformed. `closed` says whether the block ended with its
// closing tag (a block cut off by the end of the output must at least have </function>).
std::optional<ParsedToolCall> parse_block(std::string_view block, bool closed, const json& tools) {
    const bool wrapped = block.starts_with(kCallOpen);
    if (wrapped) {
        block.remove_prefix(kCallOpen.size());
        if (block.ends_with(kCallClose)) block.remove_suffix(kCallClose.size());
    }
    std::string_view rest = trim(block);
    if (wrapped && rest.starts_with('{')) {
        // Qwen2.5 / Qwen3 (Hermes) style, which fine-tunes of Qwen3.5 still emit at times:
        // {"name": ..., "arguments": {...}} inside <tool_call>.
        json j = json::parse(rest, nullptr, false);
        if (j.is_discarded() || !j.is_object() || !j.contains("name") || !j["name"].is_string()) return std::nullopt;
        ParsedToolCall call;
        call.name = j["name"].get<std::string>();
        if (call.name.empty()) return std::nullopt;
        if (auto a = j.find("arguments"); a != j.end()) {
            if (a->is_string()) {
                json parsed = json::parse(a->get<std::string>(), nullptr, false);
                if (parsed.is_discarded() || !parsed.is_object()) return std::nullopt;
                call.arguments = std::move(parsed);
            } else if (a->is_object()) {
                call.arguments = *a;
            } else if (!a->is_null()) {
                return std::nullopt;
            }
        }
        return call;
    }
    if (!rest.starts_with(kFunctionOpen)) return std::nullopt;
    rest.remove_prefix(kFunctionOpen.size());
    size_t gt = rest.find('>');
    if (gt == std::string_view::npos) return std::nullopt;
    std::string_view name = trim(rest.substr(0, gt));
    if (name.empty() || name.find_first_of("<\n") != std::string_view::npos) return std::nullopt;
    rest.remove_prefix(gt + 1);

    ParsedToolCall call;
    call.name = std::string(name);
    bool function_closed = false;
    for (;;) {
        skip_space(rest);
        if (rest.empty()) break;
        if (rest.starts_with(kFunctionClose)) {
            rest.remove_prefix(kFunctionClose.size());
            if (!trim(rest).empty()) return std::nullopt;  // text after </function> inside the block
            function_closed = true;
            break;
        }
        if (!rest.starts_with(kParamOpen)) return std::nullopt;
        rest.remove_prefix(kParamOpen.size());
        size_t pgt = rest.find('>');
        if (pgt == std::string_view::npos) return std::nullopt;
        std::string_view pname = trim(rest.substr(0, pgt));
        if (pname.empty() || pname.find_first_of("<\n") != std::string_view::npos) return std::nullopt;
        rest.remove_prefix(pgt + 1);
        std::string_view value;
        size_t end = rest.find(kParamClose);
        if (end != std::string_view::npos) {
            value = rest.substr(0, end);
            rest.remove_prefix(end + kParamClose.size());
        } else {
            // A forgotten </parameter>: the value runs to the next tag the format allows there.
            size_t next = std::min(rest.find(kParamOpen), rest.find(kFunctionClose));
            if (next == std::string_view::npos) return std::nullopt;
            value = rest.substr(0, next);
            rest.remove_prefix(next);
        }
        // The format puts the value on its own lines.
        if (value.starts_with("\r\n")) value.remove_prefix(2);
        else if (value.starts_with('\n')) value.remove_prefix(1);
        if (value.ends_with("\r\n")) value.remove_suffix(2);
        else if (value.ends_with('\n')) value.remove_suffix(1);
        call.arguments[std::string(pname)] = type_tool_argument(value, find_parameter_schema(tools, name, pname));
    }
    if (!function_closed && !(wrapped && closed)) return std::nullopt;
    return call;
}

}  // namespace

const json* find_parameter_schema(const json& tools, std::string_view function, std::string_view parameter) {
    if (!tools.is_array()) return nullptr;
    for (auto& tool : tools) {
        if (!tool.is_object()) continue;
        auto f = tool.find("function");
        if (f == tool.end() || !f->is_object()) continue;
        auto n = f->find("name");
        if (n == f->end() || !n->is_string() || n->get_ref<const std::string&>() != function) continue;
        auto params = f->find("parameters");
        if (params == f->end() || !params->is_object()) return nullptr;
        auto props = params->find("properties");
        if (props == params->end() || !props->is_object()) return nullptr;
        auto p = props->find(std::string(parameter));
        return p == props->end() ? nullptr : &*p;
    }
    return nullptr;
}

json type_tool_argument(std::string_view raw, const json* schema) {
    if (!schema) return json(std::string(raw));
    std::vector<std::string> types;
    collect_types(*schema, types);
    if (types.empty()) {
        // An unconstrained schema ({} or only a description): structured text is taken as JSON.
        std::string_view t = trim(raw);
        if (t.starts_with('{') || t.starts_with('[')) {
            json j = json::parse(t, nullptr, false);
            if (!j.is_discarded()) return j;
        }
        return json(std::string(raw));
    }
    // Strings last, so ["string", "null"] still turns "null" into null.
    for (const char* order : {"null", "boolean", "integer", "number", "object", "array"}) {
        if (std::find(types.begin(), types.end(), order) == types.end()) continue;
        if (auto v = as_type(raw, order)) return *v;
    }
    return json(std::string(raw));
}

ToolCallParser::ToolCallParser(const json& tools) : tools_(tools.is_array() ? tools : json()) {}

void ToolCallParser::emit_text(std::string_view text, ToolCallDelta& out) {
    if (after_call_) {
        // Whitespace between a call and the text after it is the format's, not the answer's.
        skip_space(text);
        if (text.empty()) return;
        pending_ws_.clear();
        after_call_ = false;
    }
    size_t end = text.size();
    while (end > 0 && is_space(text[end - 1])) --end;
    if (end == 0) {
        pending_ws_.append(text);
        return;
    }
    out.content += pending_ws_;
    out.content.append(text.substr(0, end));
    pending_ws_.assign(text.substr(end));
}

void ToolCallParser::scan(ToolCallDelta& out, bool at_end) {
    for (;;) {
        std::string_view buf = buffer_;
        if (!in_block_) {
            size_t a = buf.find(kCallOpen), b = buf.find(kFunctionOpen);
            size_t open = std::min(a, b);
            if (open != std::string_view::npos) {
                emit_text(buf.substr(0, open), out);
                buffer_.erase(0, open);
                in_block_ = true;
                continue;
            }
            size_t keep = at_end ? 0 : std::max(partial_suffix(buf, kCallOpen), partial_suffix(buf, kFunctionOpen));
            emit_text(buf.substr(0, buf.size() - keep), out);
            buffer_.erase(0, buf.size() - keep);
            return;
        }
        const bool wrapped = buf.starts_with(kCallOpen);
        const std::string_view open_tag = wrapped ? kCallOpen : kFunctionOpen;
        const std::string_view close_tag = wrapped ? kCallClose : kFunctionClose;
        size_t close = buf.find(close_tag, open_tag.size());
        size_t reopen = buf.find(open_tag, open_tag.size());
        if (reopen != std::string_view::npos && (close == std::string_view::npos || reopen < close)) {
            // A new block began before this one ended: this one was not a call.
            emit_text(buf.substr(0, reopen), out);
            buffer_.erase(0, reopen);
            continue;
        }
        if (close == std::string_view::npos && !at_end) return;  // wait for the rest of the block
        size_t len = close == std::string_view::npos ? buf.size() : close + close_tag.size();
        if (auto call = parse_block(buf.substr(0, len), close != std::string_view::npos, tools_)) {
            pending_ws_.clear();  // between the content and a call
            out.calls.push_back(std::move(*call));
            ++calls_seen_;
            after_call_ = true;
        } else {
            emit_text(buf.substr(0, len), out);
        }
        buffer_.erase(0, len);
        in_block_ = false;
        if (buffer_.empty()) return;
    }
}

ToolCallDelta ToolCallParser::push(std::string_view text) {
    ToolCallDelta out;
    buffer_.append(text);
    scan(out, false);
    return out;
}

ToolCallDelta ToolCallParser::flush() {
    ToolCallDelta out;
    scan(out, true);
    if (calls_seen_ == 0) out.content += pending_ws_;
    pending_ws_.clear();
    return out;
}

ToolCallDelta parse_tool_calls(std::string_view text, const json& tools) {
    ToolCallParser parser(tools);
    ToolCallDelta out = parser.push(text);
    ToolCallDelta tail = parser.flush();
    out.content += tail.content;
    for (auto& c : tail.calls) out.calls.push_back(std::move(c));
    return out;
}

}  // namespace flashmoe
