// Built-in filters and tests (jinja2 3.1 semantics; tojson as transformers overrides it).
#include "text/jinja/filters.h"

#include "text/jinja/interpreter.h"
#include "text/jinja/pystr.h"

#include <algorithm>
#include <cerrno>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <map>

namespace flashmoe::jinja {

std::vector<Value> bind_args(std::string_view fn, CallArgs& args, std::initializer_list<std::string_view> params,
                             size_t required) {
    std::vector<Value> out(params.size());  // undefined = not given
    std::vector<bool> given(params.size(), false);
    if (args.positional.size() > params.size()) {
        eval_fail(ErrorKind::BadInput, "{}() takes at most {} argument(s), {} given", fn, params.size(), args.positional.size());
    }
    for (size_t i = 0; i < args.positional.size(); ++i) {
        out[i] = std::move(args.positional[i]);
        given[i] = true;
    }
    for (auto& [name, v] : args.named) {
        auto it = std::find(params.begin(), params.end(), name);
        if (it == params.end()) eval_fail(ErrorKind::BadInput, "{}() got an unexpected keyword argument '{}'", fn, name);
        auto k = static_cast<size_t>(it - params.begin());
        if (given[k]) eval_fail(ErrorKind::BadInput, "{}() got multiple values for argument '{}'", fn, name);
        out[k] = std::move(v);
        given[k] = true;
    }
    for (size_t k = 0; k < required; ++k) {
        if (!given[k]) eval_fail(ErrorKind::BadInput, "{}() missing required argument '{}'", fn, *(params.begin() + k));
    }
    return out;
}

std::string html_escape(std::string_view s) {
    std::string out;
    for (char c : s) {
        switch (c) {
            case '&': out += "&amp;"; break;
            case '<': out += "&lt;"; break;
            case '>': out += "&gt;"; break;
            case '"': out += "&#34;"; break;
            case '\'': out += "&#39;"; break;
            default: out += c;
        }
    }
    return out;
}

namespace {

// Keeps jinja2's Markup-ness through filters that return Markup for Markup input.
Value same_kind(const Value& input, std::string s) { return input.is_markup() ? Value::markup(std::move(s)) : Value(std::move(s)); }

const std::string& need_string(std::string_view fn, const Value& v) {
    if (!v.is_string()) eval_fail(ErrorKind::BadInput, "{}: expected a string, got '{}'", fn, v.type_name());
    return v.as_string();
}

int64_t need_int(std::string_view fn, const Value& v) {
    if (!v.is_int() && !v.is_bool()) eval_fail(ErrorKind::BadInput, "{}: expected an integer, got '{}'", fn, v.type_name());
    return v.as_int();
}

std::vector<Value> items_of(std::string_view fn, const Value& v) {
    if (!v.is_undefined() && !v.is_list() && !v.is_dict() && !v.is_string()) {
        eval_fail(ErrorKind::BadInput, "{}: '{}' object is not iterable", fn, v.type_name());
    }
    return v.iterate();
}

// jinja2's attribute paths: "a.b.0" looks up item by item.
Value attribute_path(const Value& item, const std::string& path) {
    Value v = item;
    for (const std::string& part : pystr::split(path, std::string("."), -1)) {
        bool digits = !part.empty() && std::all_of(part.begin(), part.end(), [](char c) { return c >= '0' && c <= '9'; });
        v = get_item(v, digits ? Value(static_cast<int64_t>(std::stoll(part))) : Value(part));
        if (v.is_undefined()) break;
    }
    return v;
}

// Sort / unique / min / max key: lower-cased strings unless case_sensitive.
Value ordering_key(const Value& v, bool case_sensitive) {
    if (!case_sensitive && v.is_string()) return Value(pystr::lower(v.as_string()));
    return v;
}

int64_t length_of(const Value& v) {
    switch (v.type()) {
        case Value::Type::Undefined: return 0;
        case Value::Type::String: return static_cast<int64_t>(pystr::length(v.as_string()));
        case Value::Type::List:
            if (v.as_list().is_iterator) eval_fail(ErrorKind::BadInput, "object of type 'generator' has no len()");
            return static_cast<int64_t>(v.as_list().items.size());
        case Value::Type::Dict: return static_cast<int64_t>(v.as_dict().items.size());
        default: eval_fail(ErrorKind::BadInput, "object of type '{}' has no len()", v.type_name());
    }
}

std::optional<int64_t> parse_python_int(std::string s) {
    s = pystr::strip(s, std::nullopt, true, true);
    s.erase(std::remove(s.begin(), s.end(), '_'), s.end());
    if (s.empty()) return std::nullopt;
    errno = 0;
    char* end = nullptr;
    long long v = std::strtoll(s.c_str(), &end, 10);
    if (errno != 0 || *end != '\0') return std::nullopt;
    return static_cast<int64_t>(v);
}

std::optional<double> parse_python_float(std::string s) {
    s = pystr::strip(s, std::nullopt, true, true);
    if (s.empty()) return std::nullopt;
    char* end = nullptr;
    double d = std::strtod(s.c_str(), &end);
    if (*end != '\0') return std::nullopt;
    return d;
}

Value f_abs(const Value& in, CallArgs& args) {
    bind_args("abs", args, {});
    if (!in.is_number()) eval_fail(ErrorKind::BadInput, "bad operand type for abs(): '{}'", in.type_name());
    if (in.is_float()) return Value(std::fabs(in.as_double()));
    if (in.as_int() == INT64_MIN) eval_fail(ErrorKind::BadInput, "integer overflow");
    return Value(static_cast<int64_t>(std::llabs(in.as_int())));
}

Value f_capitalize(const Value& in, CallArgs& args) {
    bind_args("capitalize", args, {});
    return same_kind(in, pystr::capitalize(in.str()));
}

Value f_length(const Value& in, CallArgs& args) {
    bind_args("length", args, {});
    return Value(length_of(in));
}

Value f_default(const Value& in, CallArgs& args) {
    auto a = bind_args("default", args, {"default_value", "boolean"});
    Value dflt = a[0].is_undefined() ? Value("") : a[0];
    if (in.is_undefined() || (a[1].truthy() && !in.truthy())) return dflt;
    return in;
}

Value f_escape(const Value& in, CallArgs& args) {
    bind_args("escape", args, {});
    if (in.is_markup()) return in;
    return Value::markup(html_escape(in.str()));
}

Value f_safe(const Value& in, CallArgs& args) {
    bind_args("safe", args, {});
    return Value::markup(in.str());
}

Value f_first(const Value& in, CallArgs& args) {
    bind_args("first", args, {});
    std::vector<Value> items = items_of("first", in);
    if (items.empty()) return Value::undefined("No first item, sequence was empty.");
    return items.front();
}

Value f_last(const Value& in, CallArgs& args) {
    bind_args("last", args, {});
    if (in.is_list() && in.as_list().is_iterator) eval_fail(ErrorKind::BadInput, "'generator' object is not reversible");
    std::vector<Value> items = items_of("last", in);
    if (items.empty()) return Value::undefined("No last item, sequence was empty.");
    return items.back();
}

// jinja2's Undefined refuses int()/float() (and `+`), unlike str(): those filters fail on it.
void refuse_undefined(const Value& in) {
    if (in.is_undefined()) eval_fail(ErrorKind::BadInput, "{}", in.undefined_hint());
}

Value f_float(const Value& in, CallArgs& args) {
    auto a = bind_args("float", args, {"default"});
    refuse_undefined(in);
    Value dflt = a[0].is_undefined() ? Value(0.0) : a[0];
    if (in.is_number()) return Value(in.as_double());
    if (in.is_string()) {
        if (auto d = parse_python_float(in.as_string())) return Value(*d);
    }
    return dflt;
}

Value f_int(const Value& in, CallArgs& args) {
    auto a = bind_args("int", args, {"default", "base"});
    refuse_undefined(in);
    Value dflt = a[0].is_undefined() ? Value(int64_t{0}) : a[0];
    if (!a[1].is_undefined() && !(a[1].is_int() && a[1].as_int() == 10)) eval_fail(ErrorKind::BadModel, "int filter: only base 10 is supported");
    if (in.is_int() || in.is_bool()) return Value(in.as_int());
    auto from_double = [&](double d) -> Value {
        if (!std::isfinite(d)) eval_fail(ErrorKind::BadInput, "cannot convert float {} to integer", python_float_repr(d));
        if (std::fabs(d) >= 9.2e18) eval_fail(ErrorKind::BadInput, "integer overflow");
        return Value(static_cast<int64_t>(d));
    };
    if (in.is_float()) return from_double(in.as_double());
    if (in.is_string()) {
        if (auto i = parse_python_int(in.as_string())) return Value(*i);
        if (auto d = parse_python_float(in.as_string())) return from_double(*d);
    }
    return dflt;
}

Value f_join(const Value& in, CallArgs& args) {
    auto a = bind_args("join", args, {"d", "attribute"});
    std::string sep = a[0].is_undefined() ? "" : a[0].str();
    std::string out;
    bool first = true;
    for (const Value& item : items_of("join", in)) {
        if (!first) out += sep;
        first = false;
        out += a[1].is_undefined() ? item.str() : attribute_path(item, a[1].str()).str();
    }
    return Value(std::move(out));
}

Value f_list(const Value& in, CallArgs& args) {
    bind_args("list", args, {});
    return Value::list(items_of("list", in));
}

Value f_lower(const Value& in, CallArgs& args) {
    bind_args("lower", args, {});
    return same_kind(in, pystr::lower(in.str()));
}

Value f_upper(const Value& in, CallArgs& args) {
    bind_args("upper", args, {});
    return same_kind(in, pystr::upper(in.str()));
}

Value f_title(const Value& in, CallArgs& args) {
    bind_args("title", args, {});
    return same_kind(in, pystr::title(in.str()));
}

Value f_items(const Value& in, CallArgs& args) {
    bind_args("items", args, {});
    if (in.is_undefined()) return Value::iterator({});
    if (!in.is_dict()) eval_fail(ErrorKind::BadInput, "Can only get item pairs from a mapping.");
    std::vector<Value> out;
    for (const auto& [k, v] : in.as_dict().items) out.push_back(Value::list({Value(k), v}, true));
    return Value::iterator(std::move(out));
}

Value f_replace(const Value& in, CallArgs& args) {
    auto a = bind_args("replace", args, {"old", "new", "count"}, 2);
    int64_t count = a[2].is_undefined() || a[2].is_none() ? -1 : need_int("replace", a[2]);
    return Value(pystr::replace(in.str(), a[0].str(), a[1].str(), count));
}

Value f_reverse(const Value& in, CallArgs& args) {
    bind_args("reverse", args, {});
    if (in.is_string()) return Value(pystr::slice(in.as_string(), std::nullopt, std::nullopt, -1));
    if (in.is_list() && in.as_list().is_iterator) eval_fail(ErrorKind::BadInput, "'generator' object is not reversible");
    std::vector<Value> items = items_of("reverse", in);
    std::reverse(items.begin(), items.end());
    return Value::iterator(std::move(items));
}

Value f_round(const Value& in, CallArgs& args) {
    auto a = bind_args("round", args, {"precision", "method"});
    int64_t precision = a[0].is_undefined() ? 0 : need_int("round", a[0]);
    std::string method = a[1].is_undefined() ? "common" : a[1].str();
    if (!in.is_number()) eval_fail(ErrorKind::BadInput, "round: expected a number, got '{}'", in.type_name());
    if (precision < 0 || precision > 20) eval_fail(ErrorKind::BadModel, "round: precision {} is not supported", precision);
    if (method == "common") {
        if (!in.is_float()) return Value(in.as_int());  // Python's round(int, n) stays an int
        // glibc prints the exact binary value rounded half-to-even, as CPython's round() does.
        char buf[400];
        std::snprintf(buf, sizeof buf, "%.*f", static_cast<int>(precision), in.as_double());
        return Value(std::strtod(buf, nullptr));
    }
    double scale = std::pow(10.0, static_cast<double>(precision));
    if (method == "floor") return Value(std::floor(in.as_double() * scale) / scale);
    if (method == "ceil") return Value(std::ceil(in.as_double() * scale) / scale);
    eval_fail(ErrorKind::BadInput, "method must be 'common', 'ceil' or 'floor'");
}

Value f_string(const Value& in, CallArgs& args) {
    bind_args("string", args, {});
    return in.is_markup() ? in : Value(in.str());
}

Value f_trim(const Value& in, CallArgs& args) {
    auto a = bind_args("trim", args, {"chars"});
    std::optional<std::string> chars;
    if (!a[0].is_undefined() && !a[0].is_none()) chars = a[0].str();
    return same_kind(in, pystr::strip(in.str(), chars, true, true));
}

Value f_indent(const Value& in, CallArgs& args) {
    auto a = bind_args("indent", args, {"width", "first", "blank"});
    refuse_undefined(in);
    std::string pad = a[0].is_undefined() ? "    " : a[0].is_string() ? a[0].as_string()
                                                   : std::string(static_cast<size_t>(std::max<int64_t>(0, need_int("indent", a[0]))), ' ');
    bool first = a[1].truthy(), blank = a[2].truthy();
    std::vector<std::string> lines = pystr::splitlines(in.str() + "\n");
    std::string out;
    for (size_t i = 0; i < lines.size(); ++i) {
        if (i > 0) out += "\n";
        bool indent_line = i == 0 ? first : (blank || !lines[i].empty());
        if (indent_line) out += pad;
        out += lines[i];
    }
    return Value(std::move(out));
}

Value f_tojson(const Value& in, CallArgs& args) {
    // transformers' signature: tojson(x, ensure_ascii=False, indent=None, separators=None, sort_keys=False)
    auto a = bind_args("tojson", args, {"ensure_ascii", "indent", "separators", "sort_keys"});
    Value::JsonOptions o;
    o.ensure_ascii = a[0].truthy();
    if (!a[1].is_undefined() && !a[1].is_none()) o.indent = static_cast<int>(std::clamp<int64_t>(need_int("tojson", a[1]), 0, 64));
    if (!a[2].is_undefined() && !a[2].is_none()) {
        if (!a[2].is_list() || a[2].as_list().items.size() != 2) eval_fail(ErrorKind::BadInput, "tojson: separators must be a pair of strings");
        o.item_separator = need_string("tojson", a[2].as_list().items[0]);
        o.key_separator = need_string("tojson", a[2].as_list().items[1]);
        if (o.item_separator.empty()) eval_fail(ErrorKind::BadModel, "tojson: an empty item separator is not supported");
    }
    o.sort_keys = a[3].truthy();
    return Value(in.to_json(o));
}

Value f_unique(const Value& in, CallArgs& args) {
    auto a = bind_args("unique", args, {"case_sensitive", "attribute"});
    std::vector<Value> out, seen;
    for (const Value& item : items_of("unique", in)) {
        Value key = ordering_key(a[1].is_undefined() ? item : attribute_path(item, a[1].str()), a[0].truthy());
        if (key.is_dict() || (key.is_list() && !key.as_list().is_tuple)) {  // jinja2 keeps a set of seen keys
            eval_fail(ErrorKind::BadInput, "unhashable type: '{}'", key.type_name());
        }
        if (std::any_of(seen.begin(), seen.end(), [&](const Value& s) { return values_equal(s, key); })) continue;
        seen.push_back(key);
        out.push_back(item);
    }
    return Value::iterator(std::move(out));
}

Value f_map(const Value& in, CallArgs& args) {
    std::vector<Value> out;
    if (!in.truthy()) return Value::iterator({});  // jinja2 skips falsy input (None, '', undefined)
    if (args.positional.empty()) {  // map(attribute='x', default=...)
        auto a = bind_args("map", args, {"attribute", "default"});
        if (a[0].is_undefined()) eval_fail(ErrorKind::BadInput, "map: needs a filter name or attribute=");
        for (const Value& item : items_of("map", in)) {
            Value v = attribute_path(item, a[0].str());
            out.push_back(v.is_undefined() && !a[1].is_undefined() ? a[1] : v);
        }
        return Value::iterator(std::move(out));
    }
    std::string name = need_string("map", args.positional[0]);
    CallArgs rest;
    rest.positional.assign(args.positional.begin() + 1, args.positional.end());
    rest.named = args.named;
    for (const Value& item : items_of("map", in)) {
        CallArgs copy = rest;
        out.push_back(apply_filter(name, item, copy));
    }
    return Value::iterator(std::move(out));
}

Value select_impl(std::string_view fn, const Value& in, CallArgs& args, bool by_attribute, bool keep) {
    size_t skip = by_attribute ? 1 : 0;
    if (by_attribute && args.positional.empty()) eval_fail(ErrorKind::BadInput, "{}: missing attribute name", fn);
    std::string attr = by_attribute ? need_string(fn, args.positional[0]) : "";
    std::optional<std::string> test;
    if (args.positional.size() > skip) test = need_string(fn, args.positional[skip]);
    CallArgs rest;
    if (args.positional.size() > skip + 1) rest.positional.assign(args.positional.begin() + static_cast<std::ptrdiff_t>(skip + 1), args.positional.end());
    rest.named = args.named;
    if (test && !find_test(*test)) eval_fail(ErrorKind::BadModel, "unsupported test '{}'", *test);
    std::vector<Value> out;
    if (!in.truthy()) return Value::iterator({});  // jinja2 skips falsy input (None, '', undefined)
    for (const Value& item : items_of(fn, in)) {
        Value v = by_attribute ? attribute_path(item, attr) : item;
        CallArgs copy = rest;
        bool ok = test ? apply_test(*test, v, copy) : v.truthy();
        if (ok == keep) out.push_back(item);
    }
    return Value::iterator(std::move(out));
}

Value f_select(const Value& in, CallArgs& a) { return select_impl("select", in, a, false, true); }
Value f_reject(const Value& in, CallArgs& a) { return select_impl("reject", in, a, false, false); }
Value f_selectattr(const Value& in, CallArgs& a) { return select_impl("selectattr", in, a, true, true); }
Value f_rejectattr(const Value& in, CallArgs& a) { return select_impl("rejectattr", in, a, true, false); }

Value f_sum(const Value& in, CallArgs& args) {
    auto a = bind_args("sum", args, {"attribute", "start"});
    Value total = a[1].is_undefined() ? Value(int64_t{0}) : a[1];
    for (const Value& item : items_of("sum", in)) {
        total = binary_op("+", total, a[0].is_undefined() ? item : attribute_path(item, a[0].str()));
    }
    return total;
}

std::vector<Value> sorted(std::string_view fn, const Value& in, bool reverse, bool case_sensitive, const Value& attribute) {
    std::vector<Value> items = items_of(fn, in);
    auto key = [&](const Value& v) {
        return ordering_key(attribute.is_undefined() ? v : attribute_path(v, attribute.str()), case_sensitive);
    };
    std::stable_sort(items.begin(), items.end(), [&](const Value& x, const Value& y) {
        return reverse ? value_less(key(y), key(x)) : value_less(key(x), key(y));
    });
    return items;
}

Value f_sort(const Value& in, CallArgs& args) {
    auto a = bind_args("sort", args, {"reverse", "case_sensitive", "attribute"});
    return Value::list(sorted("sort", in, a[0].truthy(), a[1].truthy(), a[2]));
}

Value min_max(std::string_view fn, const Value& in, CallArgs& args, bool want_max) {
    auto a = bind_args(fn, args, {"case_sensitive", "attribute"});
    std::vector<Value> items = sorted(fn, in, false, a[0].truthy(), a[1]);
    if (items.empty()) return Value::undefined(fmt::format("No aggregated item, sequence was empty."));
    if (!want_max) return items.front();
    // max() returns the first maximal item; a stable ascending sort puts it first among equals
    size_t k = items.size() - 1;
    auto key = [&](const Value& v) { return ordering_key(a[1].is_undefined() ? v : attribute_path(v, a[1].str()), a[0].truthy()); };
    while (k > 0 && values_equal(key(items[k - 1]), key(items[k]))) --k;
    return items[k];
}

Value f_min(const Value& in, CallArgs& a) { return min_max("min", in, a, false); }
Value f_max(const Value& in, CallArgs& a) { return min_max("max", in, a, true); }

Value f_format(const Value& in, CallArgs& args) {
    if (!args.named.empty()) eval_fail(ErrorKind::BadModel, "format filter: keyword arguments are not supported");
    return binary_op("%", Value(need_string("format", in)), Value::list(args.positional, true));
}

// ---- tests ------------------------------------------------------------------------------------

bool t_defined(const Value& v, CallArgs& a) { bind_args("defined", a, {}); return !v.is_undefined(); }
bool t_undefined(const Value& v, CallArgs& a) { bind_args("undefined", a, {}); return v.is_undefined(); }
bool t_none(const Value& v, CallArgs& a) { bind_args("none", a, {}); return v.is_none(); }
bool t_boolean(const Value& v, CallArgs& a) { bind_args("boolean", a, {}); return v.is_bool(); }
bool t_true(const Value& v, CallArgs& a) { bind_args("true", a, {}); return v.is_bool() && v.as_bool(); }
bool t_false(const Value& v, CallArgs& a) { bind_args("false", a, {}); return v.is_bool() && !v.as_bool(); }
bool t_integer(const Value& v, CallArgs& a) { bind_args("integer", a, {}); return v.is_int(); }
bool t_float(const Value& v, CallArgs& a) { bind_args("float", a, {}); return v.is_float(); }
bool t_number(const Value& v, CallArgs& a) { bind_args("number", a, {}); return v.is_number(); }
bool t_string(const Value& v, CallArgs& a) { bind_args("string", a, {}); return v.is_string(); }
bool t_mapping(const Value& v, CallArgs& a) { bind_args("mapping", a, {}); return v.is_dict(); }
bool t_callable(const Value& v, CallArgs& a) { bind_args("callable", a, {}); return v.is_callable(); }
bool t_escaped(const Value& v, CallArgs& a) { bind_args("escaped", a, {}); return v.is_markup(); }
bool t_iterable(const Value& v, CallArgs& a) {
    bind_args("iterable", a, {});
    return v.is_undefined() || v.is_string() || v.is_list() || v.is_dict();
}
bool t_sequence(const Value& v, CallArgs& a) {
    bind_args("sequence", a, {});
    return v.is_undefined() || v.is_string() || (v.is_list() && !v.as_list().is_iterator) || v.is_dict();
}
bool t_in(const Value& v, CallArgs& a) { return contains(bind_args("in", a, {"seq"}, 1)[0], v); }
bool t_eq(const Value& v, CallArgs& a) { return values_equal(v, bind_args("eq", a, {"other"}, 1)[0]); }
bool t_ne(const Value& v, CallArgs& a) { return !values_equal(v, bind_args("ne", a, {"other"}, 1)[0]); }
bool t_lt(const Value& v, CallArgs& a) { return value_less(v, bind_args("lt", a, {"other"}, 1)[0]); }
bool t_gt(const Value& v, CallArgs& a) { return value_less(bind_args("gt", a, {"other"}, 1)[0], v); }
bool t_le(const Value& v, CallArgs& a) { Value o = bind_args("le", a, {"other"}, 1)[0]; return !value_less(o, v); }
bool t_ge(const Value& v, CallArgs& a) { Value o = bind_args("ge", a, {"other"}, 1)[0]; return !value_less(v, o); }
bool t_odd(const Value& v, CallArgs& a) { bind_args("odd", a, {}); return need_int("odd", v) % 2 != 0; }
bool t_even(const Value& v, CallArgs& a) { bind_args("even", a, {}); return need_int("even", v) % 2 == 0; }
bool t_divisibleby(const Value& v, CallArgs& a) {
    int64_t n = need_int("divisibleby", bind_args("divisibleby", a, {"num"}, 1)[0]);
    if (n == 0) eval_fail(ErrorKind::BadInput, "integer division or modulo by zero");
    return need_int("divisibleby", v) % n == 0;
}
bool t_sameas(const Value& v, CallArgs& a) {
    Value o = bind_args("sameas", a, {"other"}, 1)[0];
    if ((v.is_none() || v.is_bool()) && (o.is_none() || o.is_bool())) return values_equal(v, o) && v.type() == o.type();
    if (v.is_none() || v.is_bool() || o.is_none() || o.is_bool()) return false;
    eval_fail(ErrorKind::BadModel, "the 'sameas' test is only supported against None, True and False");
}

const std::map<std::string_view, FilterFn>& filter_table() {
    static const std::map<std::string_view, FilterFn> table = {
        {"abs", f_abs},         {"capitalize", f_capitalize}, {"count", f_length},   {"d", f_default},
        {"default", f_default}, {"e", f_escape},              {"escape", f_escape},  {"first", f_first},
        {"float", f_float},     {"format", f_format},         {"indent", f_indent},  {"int", f_int},
        {"items", f_items},     {"join", f_join},             {"last", f_last},      {"length", f_length},
        {"list", f_list},       {"lower", f_lower},           {"map", f_map},        {"max", f_max},
        {"min", f_min},         {"reject", f_reject},         {"rejectattr", f_rejectattr},
        {"replace", f_replace}, {"reverse", f_reverse},       {"round", f_round},    {"safe", f_safe},
        {"select", f_select},   {"selectattr", f_selectattr}, {"sort", f_sort},      {"string", f_string},
        {"sum", f_sum},         {"title", f_title},           {"tojson", f_tojson},  {"trim", f_trim},
        {"unique", f_unique},   {"upper", f_upper},
    };
    return table;
}

const std::map<std::string_view, TestFn>& test_table() {
    static const std::map<std::string_view, TestFn> table = {
        {"defined", t_defined},   {"undefined", t_undefined}, {"none", t_none},         {"boolean", t_boolean},
        {"true", t_true},         {"false", t_false},         {"integer", t_integer},   {"float", t_float},
        {"number", t_number},     {"string", t_string},       {"mapping", t_mapping},   {"iterable", t_iterable},
        {"sequence", t_sequence}, {"callable", t_callable},   {"escaped", t_escaped},   {"in", t_in},
        {"eq", t_eq},             {"equalto", t_eq},          {"==", t_eq},             {"ne", t_ne},
        {"!=", t_ne},             {"lt", t_lt},               {"lessthan", t_lt},       {"<", t_lt},
        {"gt", t_gt},             {"greaterthan", t_gt},      {">", t_gt},              {"le", t_le},
        {"<=", t_le},             {"ge", t_ge},               {">=", t_ge},             {"odd", t_odd},
        {"even", t_even},         {"divisibleby", t_divisibleby}, {"sameas", t_sameas},
    };
    return table;
}

}  // namespace

FilterFn find_filter(std::string_view name) {
    auto it = filter_table().find(name);
    return it == filter_table().end() ? nullptr : it->second;
}

TestFn find_test(std::string_view name) {
    auto it = test_table().find(name);
    return it == test_table().end() ? nullptr : it->second;
}

Value apply_filter(std::string_view name, const Value& input, CallArgs& args) {
    FilterFn f = find_filter(name);
    if (!f) eval_fail(ErrorKind::BadModel, "unsupported filter '{}'", name);
    return f(input, args);
}

bool apply_test(std::string_view name, const Value& input, CallArgs& args) {
    TestFn t = find_test(name);
    if (!t) eval_fail(ErrorKind::BadModel, "unsupported test '{}'", name);
    return t(input, args);
}

}  // namespace flashmoe::jinja
