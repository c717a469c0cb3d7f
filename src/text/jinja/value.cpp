#include "text/jinja/value.h"

#include "text/jinja/pystr.h"

#include <algorithm>
#include <charconv>
#include <cmath>

namespace flashmoe::jinja {

const Value* DictData::find(std::string_view key) const {
    for (const auto& [k, v] : items) {
        if (k == key) return &v;
    }
    return nullptr;
}

Value* DictData::find(std::string_view key) {
    for (auto& [k, v] : items) {
        if (k == key) return &v;
    }
    return nullptr;
}

void DictData::set(std::string key, Value value) {
    if (Value* v = find(key)) {
        *v = std::move(value);
    } else {
        items.emplace_back(std::move(key), std::move(value));
    }
}

Value Value::list(std::vector<Value> items, bool is_tuple) {
    auto data = std::make_shared<ListData>();
    data->items = std::move(items);
    data->is_tuple = is_tuple;
    return Value(ListPtr(std::move(data)));
}

Value Value::iterator(std::vector<Value> items) {
    auto data = std::make_shared<ListData>();
    data->items = std::move(items);
    data->is_iterator = true;
    return Value(ListPtr(std::move(data)));
}

Value Value::dict(std::vector<std::pair<std::string, Value>> items) {
    auto data = std::make_shared<DictData>();
    for (auto& [k, v] : items) data->set(std::move(k), std::move(v));
    return Value(DictPtr(std::move(data)));
}

Value Value::callable(std::string name, std::function<Value(Interpreter&, CallArgs&)> fn) {
    return Value(CallablePtr(std::make_shared<Callable>(Callable{std::move(name), std::move(fn)})));
}

Value Value::from_json(const nlohmann::ordered_json& j) {
    using T = nlohmann::ordered_json::value_t;
    switch (j.type()) {
        case T::null: return Value(None{});
        case T::boolean: return Value(j.get<bool>());
        case T::number_integer: return Value(j.get<int64_t>());
        case T::number_unsigned: {
            auto u = j.get<uint64_t>();
            if (u > static_cast<uint64_t>(INT64_MAX)) eval_fail(ErrorKind::BadInput, "integer {} is too large", u);
            return Value(static_cast<int64_t>(u));
        }
        case T::number_float: return Value(j.get<double>());
        case T::string: return Value(j.get<std::string>());
        case T::array: {
            std::vector<Value> items;
            items.reserve(j.size());
            for (const auto& e : j) items.push_back(from_json(e));
            return list(std::move(items));
        }
        case T::object: {
            auto data = std::make_shared<DictData>();
            data->items.reserve(j.size());
            for (const auto& [k, v] : j.items()) data->items.emplace_back(k, from_json(v));
            return Value(DictPtr(std::move(data)));
        }
        default: eval_fail(ErrorKind::BadInput, "unsupported JSON value type (binary or discarded)");
    }
}

int64_t Value::as_int() const {
    if (is_bool()) return as_bool() ? 1 : 0;
    return std::get<int64_t>(v_);
}

double Value::as_double() const {
    if (is_float()) return std::get<double>(v_);
    return static_cast<double>(as_int());
}

bool Value::truthy() const {
    switch (type()) {
        case Type::Undefined:
        case Type::None: return false;
        case Type::Bool: return as_bool();
        case Type::Int: return as_int() != 0;
        case Type::Float: return as_double() != 0.0;
        case Type::String: return !as_string().empty();
        case Type::List: return as_list().is_iterator || !as_list().items.empty();
        case Type::Dict: return !as_dict().items.empty();
        case Type::Namespace:
        case Type::Callable: return true;
    }
    return false;
}

const char* Value::type_name() const {
    switch (type()) {
        case Type::Undefined: return "Undefined";
        case Type::None: return "NoneType";
        case Type::Bool: return "bool";
        case Type::Int: return "int";
        case Type::Float: return "float";
        case Type::String: return "str";
        case Type::List: return as_list().is_tuple ? "tuple" : "list";
        case Type::Dict: return "dict";
        case Type::Namespace: return "Namespace";
        case Type::Callable: return "function";
    }
    return "?";
}

std::string python_float_repr(double d) {
    if (std::isnan(d)) return "nan";
    if (std::isinf(d)) return d > 0 ? "inf" : "-inf";
    // Shortest round-trip digits, then laid out the way CPython's repr does.
    char buf[64];
    auto res = std::to_chars(buf, buf + sizeof buf, d, std::chars_format::scientific);
    std::string sci(buf, res.ptr);
    size_t epos = sci.find('e');
    int exp = std::stoi(sci.substr(epos + 1));
    std::string mant = sci.substr(0, epos);
    bool neg = mant[0] == '-';
    if (neg) mant.erase(0, 1);
    std::string digits;
    for (char c : mant) if (c != '.') digits += c;
    std::string out = neg ? "-" : "";
    if (exp >= -5 + 1 && exp < 16) {  // -4 <= exp < 16: positional
        if (exp < 0) {
            out += "0.";
            out.append(static_cast<size_t>(-exp - 1), '0');
            out += digits;
        } else if (static_cast<size_t>(exp) + 1 >= digits.size()) {
            out += digits;
            out.append(static_cast<size_t>(exp) + 1 - digits.size(), '0');
            out += ".0";
        } else {
            out.append(digits, 0, static_cast<size_t>(exp) + 1);
            out += '.';
            out.append(digits, static_cast<size_t>(exp) + 1);
        }
        return out;
    }
    out += digits.substr(0, 1);
    if (digits.size() > 1) {
        out += '.';
        out.append(digits, 1);
    }
    out += fmt::format("e{}{:02d}", exp < 0 ? '-' : '+', std::abs(exp));
    return out;
}

namespace {

// str.isprintable(): false for categories Cc, Cf, Cs, Co, Zl, Zp and Zs other than ' '. Unassigned
// code points (Cn) are not tracked; they print as themselves.
bool printable(char32_t c) {
    if (c < 0x20 || (c >= 0x7F && c <= 0xA0) || c == 0xAD) return false;
    if (c == 0x1680 || (c >= 0x2000 && c <= 0x200F) || (c >= 0x2028 && c <= 0x202F) || (c >= 0x205F && c <= 0x2064) ||
        (c >= 0x2066 && c <= 0x206F) || c == 0x3000 || c == 0xFEFF || (c >= 0xFFF9 && c <= 0xFFFB)) return false;
    if ((c >= 0x0600 && c <= 0x0605) || c == 0x061C || c == 0x06DD || c == 0x070F || c == 0x08E2 || c == 0x180E) return false;
    if ((c >= 0xD800 && c <= 0xF8FF) || c >= 0xF0000) return false;  // surrogates, private use
    if (c == 0x110BD || c == 0x110CD || (c >= 0x1D173 && c <= 0x1D17A) || c == 0xE0001 || (c >= 0xE0020 && c <= 0xE007F)) return false;
    return true;
}

}  // namespace

std::string python_string_repr(std::string_view s) {
    bool has_single = s.find('\'') != std::string_view::npos;
    bool has_double = s.find('"') != std::string_view::npos;
    char quote = (has_single && !has_double) ? '"' : '\'';
    std::string out(1, quote);
    for (char32_t cp : pystr::decode(s)) {
        if (cp == static_cast<char32_t>(quote) || cp == '\\') { out += '\\'; out += static_cast<char>(cp); }
        else if (cp == '\n') out += "\\n";
        else if (cp == '\r') out += "\\r";
        else if (cp == '\t') out += "\\t";
        else if (!printable(cp)) {
            if (cp < 0x100) out += fmt::format("\\x{:02x}", static_cast<uint32_t>(cp));
            else if (cp < 0x10000) out += fmt::format("\\u{:04x}", static_cast<uint32_t>(cp));
            else out += fmt::format("\\U{:08x}", static_cast<uint32_t>(cp));
        } else {
            pystr::append_utf8(out, cp);
        }
    }
    out += quote;
    return out;
}

std::string Value::str() const {
    switch (type()) {
        case Type::Undefined: return "";
        case Type::None: return "None";
        case Type::Bool: return as_bool() ? "True" : "False";
        case Type::Int: return std::to_string(as_int());
        case Type::Float: return python_float_repr(as_double());
        case Type::String: return as_string();
        case Type::Namespace: {
            auto d = std::make_shared<DictData>(as_namespace());
            return "<Namespace " + Value(DictPtr(std::move(d))).repr() + ">";
        }
        case Type::Callable: eval_fail(ErrorKind::BadModel, "printing the function '{}' is not supported", as_callable().name);
        default: return repr();
    }
}

namespace {
// Printing a value that contains itself (ns.a = ns) or nests absurdly deep fails instead of
// recursing without end.
constexpr int kMaxPrintDepth = 100;
thread_local int t_print_depth = 0;
struct PrintDepth {
    PrintDepth() {
        if (++t_print_depth > kMaxPrintDepth) {
            --t_print_depth;
            eval_fail(ErrorKind::BadInput, "a value nests more than {} levels deep (does it contain itself?)",
                      kMaxPrintDepth);
        }
    }
    ~PrintDepth() { --t_print_depth; }
};
}  // namespace

std::string Value::repr() const {
    PrintDepth depth;
    switch (type()) {
        case Type::String: return python_string_repr(as_string());
        case Type::List: {
            const ListData& l = as_list();
            if (l.is_iterator) eval_fail(ErrorKind::BadModel, "printing a generator (the result of map, select, reverse, ...) is not supported; add |list");
            std::string out = l.is_tuple ? "(" : "[";
            for (size_t i = 0; i < l.items.size(); ++i) {
                if (i) out += ", ";
                out += l.items[i].repr();
            }
            if (l.is_tuple && l.items.size() == 1) out += ",";
            out += l.is_tuple ? ")" : "]";
            return out;
        }
        case Type::Dict: {
            std::string out = "{";
            bool first = true;
            for (const auto& [k, v] : as_dict().items) {
                if (!first) out += ", ";
                first = false;
                out += python_string_repr(k) + ": " + v.repr();
            }
            return out + "}";
        }
        case Type::Undefined: eval_fail(ErrorKind::BadInput, "printing an undefined value inside a container ({})", undefined_hint());
        default: return str();
    }
}

namespace {

void json_string(std::string& out, std::string_view s, bool ensure_ascii) {
    out += '"';
    auto escape_cp = [&](char32_t cp) { out += fmt::format("\\u{:04x}", static_cast<uint32_t>(cp)); };
    for (size_t i = 0; i < s.size(); ++i) {
        char c = s[i];
        auto u = static_cast<unsigned char>(c);
        switch (c) {
            case '"': out += "\\\""; break;
            case '\\': out += "\\\\"; break;
            case '\n': out += "\\n"; break;
            case '\r': out += "\\r"; break;
            case '\t': out += "\\t"; break;
            case '\b': out += "\\b"; break;
            case '\f': out += "\\f"; break;
            default:
                if (u < 0x20) {
                    escape_cp(u);
                } else if (u >= 0x80 && ensure_ascii) {
                    size_t n = (u >> 5) == 0x6 ? 2 : (u >> 4) == 0xE ? 3 : 4;
                    std::vector<char32_t> cps = pystr::decode(s.substr(i, n));
                    char32_t cp = cps.at(0);
                    if (cp >= 0x10000) {  // UTF-16 surrogate pair, as json.dumps writes it
                        cp -= 0x10000;
                        escape_cp(0xD800 + (cp >> 10));
                        escape_cp(0xDC00 + (cp & 0x3FF));
                    } else {
                        escape_cp(cp);
                    }
                    i += n - 1;
                } else {
                    out += c;
                }
        }
    }
    out += '"';
}

void json_dump(std::string& out, const Value& v, const Value::JsonOptions& o, int depth) {
    PrintDepth guard;
    const std::string& item_sep = !o.item_separator.empty() ? o.item_separator : o.indent < 0 ? ", " : ",";
    auto newline = [&](int d) {
        if (o.indent < 0) return;
        out += '\n';
        out.append(static_cast<size_t>(o.indent * d), ' ');
    };
    switch (v.type()) {
        case Value::Type::None: out += "null"; return;
        case Value::Type::Bool: out += v.as_bool() ? "true" : "false"; return;
        case Value::Type::Int: out += std::to_string(v.as_int()); return;
        case Value::Type::Float: {
            double d = v.as_double();
            if (std::isnan(d)) out += "NaN";
            else if (std::isinf(d)) out += d > 0 ? "Infinity" : "-Infinity";
            else out += python_float_repr(d);
            return;
        }
        case Value::Type::String: json_string(out, v.as_string(), o.ensure_ascii); return;
        case Value::Type::List: {
            const auto& items = v.as_list().items;
            if (v.as_list().is_iterator) eval_fail(ErrorKind::BadInput, "Object of type generator is not JSON serializable");
            if (items.empty()) { out += "[]"; return; }
            out += '[';
            for (size_t i = 0; i < items.size(); ++i) {
                if (i) out += item_sep;
                newline(depth + 1);
                json_dump(out, items[i], o, depth + 1);
            }
            newline(depth);
            out += ']';
            return;
        }
        case Value::Type::Dict: {
            std::vector<const std::pair<std::string, Value>*> items;
            for (const auto& kv : v.as_dict().items) items.push_back(&kv);
            if (o.sort_keys) {
                std::stable_sort(items.begin(), items.end(), [](auto* a, auto* b) { return a->first < b->first; });
            }
            if (items.empty()) { out += "{}"; return; }
            out += '{';
            for (size_t i = 0; i < items.size(); ++i) {
                if (i) out += item_sep;
                newline(depth + 1);
                json_string(out, items[i]->first, o.ensure_ascii);
                out += o.key_separator;
                json_dump(out, items[i]->second, o, depth + 1);
            }
            newline(depth);
            out += '}';
            return;
        }
        default: eval_fail(ErrorKind::BadInput, "Object of type {} is not JSON serializable", v.type_name());
    }
}

}  // namespace

std::string Value::to_json(const JsonOptions& options) const {
    std::string out;
    json_dump(out, *this, options, 0);
    return out;
}

std::vector<Value> Value::iterate() const {
    switch (type()) {
        case Type::Undefined: return {};
        case Type::List: return as_list().items;
        case Type::Dict: {
            std::vector<Value> keys;
            for (const auto& [k, v] : as_dict().items) keys.emplace_back(k);
            return keys;
        }
        case Type::String: {
            std::vector<Value> chars;
            std::string cur;
            for (char32_t cp : pystr::decode(as_string())) {
                cur.clear();
                pystr::append_utf8(cur, cp);
                chars.emplace_back(cur);
            }
            return chars;
        }
        default: eval_fail(ErrorKind::BadInput, "'{}' object is not iterable", type_name());
    }
}

bool values_equal(const Value& a, const Value& b) {
    if (a.is_number() && b.is_number()) {
        if (a.is_float() || b.is_float()) return a.as_double() == b.as_double();
        return a.as_int() == b.as_int();
    }
    if (a.type() != b.type()) return false;
    switch (a.type()) {
        case Value::Type::Undefined:
        case Value::Type::None: return true;
        case Value::Type::String: return a.as_string() == b.as_string();
        case Value::Type::List: {
            const auto& x = a.as_list();
            const auto& y = b.as_list();
            if (x.is_tuple != y.is_tuple || x.items.size() != y.items.size()) return false;
            for (size_t i = 0; i < x.items.size(); ++i) {
                if (!values_equal(x.items[i], y.items[i])) return false;
            }
            return true;
        }
        case Value::Type::Dict: {
            const auto& x = a.as_dict().items;
            const auto& y = b.as_dict();
            if (x.size() != y.items.size()) return false;
            for (const auto& [k, v] : x) {
                const Value* other = y.find(k);
                if (!other || !values_equal(v, *other)) return false;
            }
            return true;
        }
        case Value::Type::Namespace: return &a.as_namespace() == &b.as_namespace();
        case Value::Type::Callable: return &a.as_callable() == &b.as_callable();
        default: return false;
    }
}

bool value_less(const Value& a, const Value& b) {
    if (a.is_number() && b.is_number()) {
        if (a.is_float() || b.is_float()) return a.as_double() < b.as_double();
        return a.as_int() < b.as_int();
    }
    if (a.is_string() && b.is_string()) return a.as_string() < b.as_string();  // UTF-8 order = code point order
    if (a.is_list() && b.is_list() && a.as_list().is_tuple == b.as_list().is_tuple) {
        const auto& x = a.as_list().items;
        const auto& y = b.as_list().items;
        for (size_t i = 0; i < x.size() && i < y.size(); ++i) {
            if (!values_equal(x[i], y[i])) return value_less(x[i], y[i]);
        }
        return x.size() < y.size();
    }
    eval_fail(ErrorKind::BadInput, "'<' not supported between instances of '{}' and '{}'", a.type_name(), b.type_name());
}

}  // namespace flashmoe::jinja
