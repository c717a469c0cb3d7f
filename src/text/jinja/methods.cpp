// Python methods on str and dict values, and the global functions a chat template can call.
#include "text/jinja/filters.h"
#include "text/jinja/interpreter.h"
#include "text/jinja/pystr.h"

#include <algorithm>
#include <array>
#include <ctime>

namespace flashmoe::jinja {
namespace {

constexpr std::array<std::string_view, 47> kStrMethods = {
    "capitalize", "casefold", "center", "count", "encode", "endswith", "expandtabs", "find", "format",
    "format_map", "index", "isalnum", "isalpha", "isascii", "isdecimal", "isdigit", "isidentifier", "islower",
    "isnumeric", "isprintable", "isspace", "istitle", "isupper", "join", "ljust", "lower", "lstrip",
    "maketrans", "partition", "removeprefix", "removesuffix", "replace", "rfind", "rindex", "rjust",
    "rpartition", "rsplit", "rstrip", "split", "splitlines", "startswith", "strip", "swapcase", "title",
    "translate", "upper", "zfill"};
constexpr std::array<std::string_view, 11> kDictMethods = {
    "clear", "copy", "fromkeys", "get", "items", "keys", "pop", "popitem", "setdefault", "update", "values"};
constexpr std::array<std::string_view, 11> kListMethods = {
    "append", "clear", "copy", "count", "extend", "index", "insert", "pop", "remove", "reverse", "sort"};

template <size_t N>
bool listed(const std::array<std::string_view, N>& names, std::string_view name) {
    return std::find(names.begin(), names.end(), name) != names.end();
}

std::optional<std::string> optional_string(std::string_view fn, const Value& v) {
    if (v.is_undefined() || v.is_none()) return std::nullopt;
    if (!v.is_string()) eval_fail(ErrorKind::BadInput, "{}() argument must be str or None, not {}", fn, v.type_name());
    return v.as_string();
}

int64_t optional_int(std::string_view fn, const Value& v, int64_t dflt) {
    if (v.is_undefined()) return dflt;
    if (!v.is_int() && !v.is_bool()) eval_fail(ErrorKind::BadInput, "{}() expected an integer, got {}", fn, v.type_name());
    return v.as_int();
}

Value string_list(std::vector<std::string> parts) {
    std::vector<Value> out;
    out.reserve(parts.size());
    for (auto& p : parts) out.emplace_back(std::move(p));
    return Value::list(std::move(out));
}

bool affix_match(std::string_view fn, const std::string& s, const Value& affix, bool prefix) {
    auto one = [&](const Value& a) {
        if (!a.is_string()) eval_fail(ErrorKind::BadInput, "{} first arg must be str or a tuple of str, not {}", fn, a.type_name());
        const std::string& x = a.as_string();
        return prefix ? s.compare(0, x.size(), x) == 0 && s.size() >= x.size()
                      : s.size() >= x.size() && s.compare(s.size() - x.size(), x.size(), x) == 0;
    };
    if (affix.is_list() && affix.as_list().is_tuple) {
        return std::any_of(affix.as_list().items.begin(), affix.as_list().items.end(), one);
    }
    return one(affix);
}

bool ascii_only(std::string_view fn, const std::string& s) {
    if (std::any_of(s.begin(), s.end(), [](char c) { return static_cast<unsigned char>(c) >= 0x80; })) {
        eval_fail(ErrorKind::BadInput, "str.{}() of non-ASCII text is not supported", fn);
    }
    return true;
}

// str.format with automatic ({}), positional ({0}) and named ({name}) fields, !s / !r, no specs.
std::string python_format(const std::string& f, const CallArgs& args) {
    std::string out;
    size_t auto_index = 0;
    for (size_t i = 0; i < f.size(); ++i) {
        char c = f[i];
        if (c == '}') {
            if (i + 1 < f.size() && f[i + 1] == '}') { out += '}'; ++i; continue; }
            eval_fail(ErrorKind::BadInput, "Single '}}' encountered in format string");
        }
        if (c != '{') { out += c; continue; }
        if (i + 1 < f.size() && f[i + 1] == '{') { out += '{'; ++i; continue; }
        size_t close = f.find('}', i);
        if (close == std::string::npos) eval_fail(ErrorKind::BadInput, "Single '{{' encountered in format string");
        std::string field = f.substr(i + 1, close - i - 1);
        i = close;
        char conversion = 's';
        if (size_t bang = field.find('!'); bang != std::string::npos) {
            conversion = bang + 1 < field.size() ? field[bang + 1] : '?';
            field.resize(bang);
            if (conversion != 's' && conversion != 'r') eval_fail(ErrorKind::BadModel, "str.format: unsupported conversion");
        }
        if (field.find_first_of(":.[") != std::string::npos) eval_fail(ErrorKind::BadModel, "str.format: format specs and field lookups are not supported");
        const Value* v = nullptr;
        if (field.empty()) {
            if (auto_index >= args.positional.size()) eval_fail(ErrorKind::BadInput, "str.format: not enough positional arguments");
            v = &args.positional[auto_index++];
        } else if (std::all_of(field.begin(), field.end(), [](char d) { return d >= '0' && d <= '9'; })) {
            size_t k = std::stoul(field);
            if (k >= args.positional.size()) eval_fail(ErrorKind::BadInput, "str.format: index {} out of range", k);
            v = &args.positional[k];
        } else {
            for (const auto& [name, val] : args.named) {
                if (name == field) v = &val;
            }
            if (!v) eval_fail(ErrorKind::BadInput, "str.format: missing argument '{}'", field);
        }
        out += conversion == 'r' ? v->repr() : v->str();
    }
    return out;
}

bool call_str_method(const Value& receiver, std::string_view name, CallArgs& args, Value* result) {
    const std::string& s = receiver.as_string();
    auto strip = [&](bool l, bool r) {
        auto a = bind_args(name, args, {"chars"});
        return Value(pystr::strip(s, optional_string(name, a[0]), l, r));
    };
    if (receiver.is_markup() && (name == "replace" || name == "format" || name == "join")) {
        eval_fail(ErrorKind::BadModel, "str.{}() on a Markup string (|safe, |escape) is not supported", name);
    }
    if (name == "strip") *result = strip(true, true);
    else if (name == "lstrip") *result = strip(true, false);
    else if (name == "rstrip") *result = strip(false, true);
    else if (name == "startswith" || name == "endswith") {
        auto a = bind_args(name, args, {"affix"}, 1);
        *result = Value(affix_match(name, s, a[0], name == "startswith"));
    } else if (name == "split" || name == "rsplit") {
        auto a = bind_args(name, args, {"sep", "maxsplit"});
        std::optional<std::string> sep = optional_string(name, a[0]);
        int64_t maxsplit = optional_int(name, a[1], -1);
        *result = string_list(name == "split" ? pystr::split(s, sep, maxsplit) : pystr::rsplit(s, sep, maxsplit));
    } else if (name == "splitlines") {
        bind_args(name, args, {});
        *result = string_list(pystr::splitlines(s));
    } else if (name == "replace") {
        auto a = bind_args(name, args, {"old", "new", "count"}, 2);
        if (!a[0].is_string() || !a[1].is_string()) eval_fail(ErrorKind::BadInput, "replace() arguments must be str");
        *result = Value(pystr::replace(s, a[0].as_string(), a[1].as_string(), optional_int(name, a[2], -1)));
    } else if (name == "upper") {
        bind_args(name, args, {});
        *result = Value(pystr::upper(s));
    } else if (name == "lower") {
        bind_args(name, args, {});
        *result = Value(pystr::lower(s));
    } else if (name == "capitalize") {
        bind_args(name, args, {});
        *result = Value(pystr::capitalize(s));
    } else if (name == "title") {  // Python's rule: a letter is upper-cased after a non-letter
        bind_args(name, args, {});
        ascii_only(name, s);
        std::string out = s;
        bool prev_letter = false;
        for (char& c : out) {
            bool letter = std::isalpha(static_cast<unsigned char>(c)) != 0;
            if (letter) c = static_cast<char>(prev_letter ? std::tolower(static_cast<unsigned char>(c)) : std::toupper(static_cast<unsigned char>(c)));
            prev_letter = letter;
        }
        *result = Value(std::move(out));
    } else if (name == "find" || name == "count") {
        auto a = bind_args(name, args, {"sub"}, 1);
        if (!a[0].is_string()) eval_fail(ErrorKind::BadInput, "{}() argument must be str", name);
        *result = Value(name == "find" ? pystr::find(s, a[0].as_string()) : pystr::count(s, a[0].as_string()));
    } else if (name == "join") {
        auto a = bind_args(name, args, {"iterable"}, 1);
        std::string out;
        bool first = true;
        for (const Value& item : a[0].iterate()) {
            if (!item.is_string()) eval_fail(ErrorKind::BadInput, "join(): expected str instance, {} found", item.type_name());
            if (!first) out += s;
            first = false;
            out += item.as_string();
        }
        *result = Value(std::move(out));
    } else if (name == "format") {
        *result = Value(python_format(s, args));
    } else if (name == "isdigit" || name == "isalpha" || name == "isalnum" || name == "isspace" || name == "islower" ||
               name == "isupper") {
        bind_args(name, args, {});
        ascii_only(name, s);
        auto all = [&](int (*pred)(int)) {
            return !s.empty() && std::all_of(s.begin(), s.end(), [&](char c) { return pred(static_cast<unsigned char>(c)) != 0; });
        };
        bool has_lower = std::any_of(s.begin(), s.end(), [](char c) { return std::islower(static_cast<unsigned char>(c)); });
        bool has_upper = std::any_of(s.begin(), s.end(), [](char c) { return std::isupper(static_cast<unsigned char>(c)); });
        bool r = name == "isdigit" ? all(std::isdigit) : name == "isalpha" ? all(std::isalpha)
               : name == "isalnum" ? all(std::isalnum) : name == "isspace" ? all(std::isspace)
               : name == "islower" ? has_lower && !has_upper : has_upper && !has_lower;
        *result = Value(r);
    } else {
        return false;
    }
    return true;
}

bool call_dict_method(const Value& receiver, std::string_view name, CallArgs& args, Value* result) {
    const DictData& d = receiver.as_dict();
    if (name == "get") {
        auto a = bind_args(name, args, {"key", "default"}, 1);
        const Value* v = a[0].is_string() ? d.find(a[0].as_string()) : nullptr;
        *result = v ? *v : a[1].is_undefined() ? Value(None{}) : a[1];
    } else if (name == "items" || name == "keys" || name == "values") {
        bind_args(name, args, {});
        std::vector<Value> out;
        for (const auto& [k, v] : d.items) {
            out.push_back(name == "items" ? Value::list({Value(k), v}, true) : name == "keys" ? Value(k) : v);
        }
        *result = Value::list(std::move(out));
    } else {
        return false;
    }
    return true;
}

std::string strftime_now(const RenderOptions& options, const std::string& format) {
    std::time_t t = options.now ? options.now() : std::time(nullptr);
    std::tm tm{};
    localtime_r(&t, &tm);
    if (format.empty()) return "";
    std::string buf(256 + format.size() * 4, '\0');
    size_t n = std::strftime(buf.data(), buf.size(), format.c_str(), &tm);
    if (n == 0) eval_fail(ErrorKind::BadInput, "strftime_now: format '{}' produced no output", format);
    buf.resize(n);
    return buf;
}

}  // namespace

bool is_method_name(const Value& receiver, std::string_view name) {
    if (receiver.is_string()) return listed(kStrMethods, name);
    if (receiver.is_dict()) return listed(kDictMethods, name);
    if (receiver.is_list()) return listed(kListMethods, name);
    return false;
}

bool call_method(const Value& receiver, std::string_view name, CallArgs& args, Value* result) {
    if (receiver.is_string()) return call_str_method(receiver, name, args, result);
    if (receiver.is_dict()) return call_dict_method(receiver, name, args, result);
    return false;
}

void Interpreter::add_builtins(Scope& scope) {
    scope.set("raise_exception", Value::callable("raise_exception", [](Interpreter&, CallArgs& args) -> Value {
        auto a = bind_args("raise_exception", args, {"message"}, 1);
        // The template rejected the request: BadInput, with the template's own words.
        throw Error(ErrorKind::BadInput, a[0].str());
    }));
    scope.set("namespace", Value::callable("namespace", [](Interpreter&, CallArgs& args) -> Value {
        auto ns = std::make_shared<DictData>();
        for (const Value& p : args.positional) {
            if (!p.is_dict()) eval_fail(ErrorKind::BadInput, "namespace() positional argument must be a dict");
            for (const auto& [k, v] : p.as_dict().items) ns->set(k, v);
        }
        for (auto& [k, v] : args.named) ns->set(k, v);
        return Value(Value::NamespacePtr(std::move(ns)));
    }));
    scope.set("dict", Value::callable("dict", [](Interpreter&, CallArgs& args) -> Value {
        if (!args.positional.empty()) eval_fail(ErrorKind::BadModel, "dict() with positional arguments is not supported");
        return Value::dict(args.named);
    }));
    scope.set("range", Value::callable("range", [](Interpreter&, CallArgs& args) -> Value {
        if (!args.named.empty() || args.positional.empty() || args.positional.size() > 3) {
            eval_fail(ErrorKind::BadInput, "range() takes 1 to 3 positional arguments");
        }
        std::vector<int64_t> p;
        for (const Value& v : args.positional) {
            if (!v.is_int() && !v.is_bool()) eval_fail(ErrorKind::BadInput, "range() arguments must be integers, not {}", v.type_name());
            p.push_back(v.as_int());
        }
        int64_t start = p.size() == 1 ? 0 : p[0], stop = p.size() == 1 ? p[0] : p[1], step = p.size() == 3 ? p[2] : 1;
        if (step == 0) eval_fail(ErrorKind::BadInput, "range() arg 3 must not be zero");
        std::vector<Value> out;
        for (int64_t i = start; step > 0 ? i < stop : i > stop; i += step) {
            if (out.size() >= 100000) eval_fail(ErrorKind::BadInput, "range too big, max 100000 items");  // jinja2 sandbox limit
            out.emplace_back(i);
        }
        return Value::list(std::move(out));
    }));
    scope.set("strftime_now", Value::callable("strftime_now", [](Interpreter& in, CallArgs& args) -> Value {
        auto a = bind_args("strftime_now", args, {"format"}, 1);
        if (!a[0].is_string()) eval_fail(ErrorKind::BadInput, "strftime_now() argument must be str");
        return Value(strftime_now(in.options(), a[0].as_string()));
    }));
}

}  // namespace flashmoe::jinja
