// Python operators, membership and attribute / item lookup with jinja2's sandboxed semantics.
#include "text/jinja/filters.h"
#include "text/jinja/interpreter.h"
#include "text/jinja/pystr.h"

#include <cmath>

namespace flashmoe::jinja {
namespace {

[[noreturn]] void unsupported_operands(std::string_view op, const Value& a, const Value& b) {
    eval_fail(ErrorKind::BadInput, "unsupported operand type(s) for {}: '{}' and '{}'", op, a.type_name(), b.type_name());
}

int64_t checked_add(int64_t a, int64_t b) {
    int64_t r = 0;
    if (__builtin_add_overflow(a, b, &r)) eval_fail(ErrorKind::BadInput, "integer overflow");
    return r;
}

int64_t checked_sub(int64_t a, int64_t b) {
    int64_t r = 0;
    if (__builtin_sub_overflow(a, b, &r)) eval_fail(ErrorKind::BadInput, "integer overflow");
    return r;
}

int64_t checked_mul(int64_t a, int64_t b) {
    int64_t r = 0;
    if (__builtin_mul_overflow(a, b, &r)) eval_fail(ErrorKind::BadInput, "integer overflow");
    return r;
}

Value repeat(const Value& seq, int64_t times) {
    if (seq.is_string()) {
        std::string out;
        for (int64_t i = 0; i < times; ++i) out += seq.as_string();
        return seq.is_markup() ? Value::markup(std::move(out)) : Value(std::move(out));
    }
    std::vector<Value> out;
    for (int64_t i = 0; i < times; ++i) {
        out.insert(out.end(), seq.as_list().items.begin(), seq.as_list().items.end());
    }
    return Value::list(std::move(out), seq.as_list().is_tuple);
}

double float_mod(double a, double b) {
    double m = std::fmod(a, b);
    if (m != 0 && ((m < 0) != (b < 0))) m += b;
    return m;
}

// printf-style `"%s and %d" % (a, b)`, the subset templates use.
std::string percent_format(const std::string& fmtstr, const Value& args) {
    std::vector<Value> values = args.is_list() && args.as_list().is_tuple ? args.as_list().items : std::vector<Value>{args};
    std::string out;
    size_t next = 0;
    for (size_t i = 0; i < fmtstr.size(); ++i) {
        if (fmtstr[i] != '%') { out += fmtstr[i]; continue; }
        if (++i >= fmtstr.size()) eval_fail(ErrorKind::BadInput, "incomplete format");
        char c = fmtstr[i];
        if (c == '%') { out += '%'; continue; }
        if (c != 's' && c != 'd' && c != 'i' && c != 'r') eval_fail(ErrorKind::BadModel, "unsupported format directive '%{}'", c);
        if (next >= values.size()) eval_fail(ErrorKind::BadInput, "not enough arguments for format string");
        const Value& v = values[next++];
        if (c == 's') out += v.str();
        else if (c == 'r') out += v.repr();
        else if (v.is_number()) out += std::to_string(v.is_float() ? static_cast<int64_t>(v.as_double()) : v.as_int());
        else eval_fail(ErrorKind::BadInput, "%d format: a real number is required, not {}", v.type_name());
    }
    // Python lets a lone list or dict argument go unused (it could serve %(name)s lookups).
    const bool mapping_like = (args.is_list() && !args.as_list().is_tuple) || args.is_dict() || args.is_undefined();
    if (next != values.size() && !(next == 0 && mapping_like)) {
        eval_fail(ErrorKind::BadInput, "not all arguments converted during string formatting");
    }
    return out;
}

}  // namespace

Value binary_op(std::string_view op, const Value& a, const Value& b) {
    if (a.is_undefined()) eval_fail(ErrorKind::BadInput, "{}", a.undefined_hint());
    if (op == "%" && a.is_string()) {  // str % x formats; an undefined x prints as ''
        if (a.is_markup()) eval_fail(ErrorKind::BadModel, "'%' formatting of a Markup string is not supported");
        return Value(percent_format(a.as_string(), b));
    }
    if (b.is_undefined()) eval_fail(ErrorKind::BadInput, "{}", b.undefined_hint());
    const bool ints = (a.is_int() || a.is_bool()) && (b.is_int() || b.is_bool());
    const bool nums = a.is_number() && b.is_number();
    if (op == "+") {
        if (ints) return Value(checked_add(a.as_int(), b.as_int()));
        if (nums) return Value(a.as_double() + b.as_double());
        if (a.is_string() && b.is_string()) {
            // jinja2's Markup escapes the plain string added to it
            if (a.is_markup() || b.is_markup()) {
                std::string l = a.is_markup() ? a.as_string() : html_escape(a.as_string());
                std::string r = b.is_markup() ? b.as_string() : html_escape(b.as_string());
                return Value::markup(l + r);
            }
            return Value(a.as_string() + b.as_string());
        }
        if (a.is_list() && b.is_list() && a.as_list().is_tuple == b.as_list().is_tuple && !a.as_list().is_iterator &&
            !b.as_list().is_iterator) {
            std::vector<Value> items = a.as_list().items;
            items.insert(items.end(), b.as_list().items.begin(), b.as_list().items.end());
            return Value::list(std::move(items), a.as_list().is_tuple);
        }
        unsupported_operands(op, a, b);
    }
    if (op == "-") {
        if (ints) return Value(checked_sub(a.as_int(), b.as_int()));
        if (nums) return Value(a.as_double() - b.as_double());
        unsupported_operands(op, a, b);
    }
    if (op == "*") {
        if (ints) return Value(checked_mul(a.as_int(), b.as_int()));
        if (nums) return Value(a.as_double() * b.as_double());
        auto seq_times = [&](const Value& seq, const Value& n) {
            return (seq.is_string() || (seq.is_list() && !seq.as_list().is_iterator)) && (n.is_int() || n.is_bool());
        };
        if (seq_times(a, b)) return repeat(a, std::max<int64_t>(0, b.as_int()));
        if (seq_times(b, a)) return repeat(b, std::max<int64_t>(0, a.as_int()));
        unsupported_operands(op, a, b);
    }
    if (op == "/") {
        if (!nums) unsupported_operands(op, a, b);
        if (b.as_double() == 0) eval_fail(ErrorKind::BadInput, "division by zero");
        return Value(a.as_double() / b.as_double());
    }
    if (op == "//") {
        if (!nums) unsupported_operands(op, a, b);
        if (b.as_double() == 0) eval_fail(ErrorKind::BadInput, "integer division or modulo by zero");
        if (ints) {
            int64_t x = a.as_int(), y = b.as_int();
            if (x == INT64_MIN && y == -1) eval_fail(ErrorKind::BadInput, "integer overflow");
            int64_t q = x / y;
            if ((x % y != 0) && ((x < 0) != (y < 0))) --q;
            return Value(q);
        }
        return Value(std::floor(a.as_double() / b.as_double()));
    }
    if (op == "%") {
        if (!nums) unsupported_operands(op, a, b);
        if (b.as_double() == 0) eval_fail(ErrorKind::BadInput, "integer division or modulo by zero");
        if (ints) {
            int64_t x = a.as_int(), y = b.as_int();
            if (y == -1) return Value(int64_t{0});
            int64_t m = x % y;
            if (m != 0 && ((m < 0) != (y < 0))) m += y;
            return Value(m);
        }
        return Value(float_mod(a.as_double(), b.as_double()));
    }
    if (op == "**") {
        if (!nums) unsupported_operands(op, a, b);
        if (ints && b.as_int() >= 0) {
            int64_t base = a.as_int(), r = 1;
            for (int64_t e = b.as_int(); e > 0; e >>= 1) {  // square-and-multiply
                if ((e & 1) && __builtin_mul_overflow(r, base, &r)) eval_fail(ErrorKind::BadInput, "integer overflow");
                if (e > 1 && __builtin_mul_overflow(base, base, &base)) eval_fail(ErrorKind::BadInput, "integer overflow");
            }
            return Value(r);
        }
        return Value(std::pow(a.as_double(), b.as_double()));
    }
    eval_fail(ErrorKind::Internal, "unknown operator '{}'", op);
}

bool contains(const Value& container, const Value& item) {
    switch (container.type()) {
        case Value::Type::Undefined: return false;
        case Value::Type::String:
            if (!item.is_string()) {
                eval_fail(ErrorKind::BadInput, "'in <string>' requires string as left operand, not {}", item.type_name());
            }
            return container.as_string().find(item.as_string()) != std::string::npos;
        case Value::Type::List:
            for (const Value& v : container.as_list().items) {
                if (values_equal(v, item)) return true;
            }
            return false;
        case Value::Type::Dict:
            if (item.is_list() && !item.as_list().is_tuple) eval_fail(ErrorKind::BadInput, "unhashable type: 'list'");
            if (item.is_dict()) eval_fail(ErrorKind::BadInput, "unhashable type: 'dict'");
            return item.is_string() && container.as_dict().find(item.as_string()) != nullptr;
        default: eval_fail(ErrorKind::BadInput, "argument of type '{}' is not iterable", container.type_name());
    }
}

Value get_attribute(const Value& object, std::string_view name) {
    switch (object.type()) {
        case Value::Type::Undefined: eval_fail(ErrorKind::BadInput, "{}", object.undefined_hint());
        case Value::Type::Dict: {
            if (is_method_name(object, name)) {
                eval_fail(ErrorKind::BadModel, "reading the dict method '{}' without calling it is not supported", name);
            }
            if (const Value* v = object.as_dict().find(name)) return *v;
            return Value::undefined(fmt::format("'dict object' has no attribute '{}'", name));
        }
        case Value::Type::Namespace:
            if (const Value* v = object.as_namespace().find(name)) return *v;
            return Value::undefined(fmt::format("'Namespace' object has no attribute '{}'", name));
        default:
            if (is_method_name(object, name)) {
                eval_fail(ErrorKind::BadModel, "reading the {} method '{}' without calling it is not supported", object.type_name(), name);
            }
            return Value::undefined(fmt::format("'{}' object has no attribute '{}'", object.type_name(), name));
    }
}

Value get_item(const Value& object, const Value& index) {
    if (object.is_undefined()) eval_fail(ErrorKind::BadInput, "{}", object.undefined_hint());
    if (index.is_string() && !object.is_dict()) return get_attribute(object, index.as_string());
    auto position = [&](int64_t size) -> std::optional<size_t> {
        int64_t i = index.as_int();
        if (i < 0) i += size;
        if (i < 0 || i >= size) return std::nullopt;
        return static_cast<size_t>(i);
    };
    const bool int_index = index.is_int() || index.is_bool();
    switch (object.type()) {
        case Value::Type::List: {
            if (object.as_list().is_iterator) eval_fail(ErrorKind::BadInput, "'generator' object is not subscriptable");
            const auto& items = object.as_list().items;
            if (int_index) {
                if (auto p = position(static_cast<int64_t>(items.size()))) return items[*p];
                return Value::undefined(fmt::format("{} object has no element {}", object.type_name(), index.as_int()));
            }
            break;
        }
        case Value::Type::String: {
            if (int_index) {
                std::vector<char32_t> cps = pystr::decode(object.as_string());
                if (auto p = position(static_cast<int64_t>(cps.size()))) return Value(pystr::encode({cps[*p]}));
                return Value::undefined(fmt::format("str object has no element {}", index.as_int()));
            }
            break;
        }
        case Value::Type::Dict: {
            if (index.is_string()) {
                if (const Value* v = object.as_dict().find(index.as_string())) return *v;
                if (is_method_name(object, index.as_string())) {
                    eval_fail(ErrorKind::BadModel, "reading the dict method '{}' without calling it is not supported", index.as_string());
                }
                return Value::undefined(fmt::format("'dict object' has no attribute '{}'", index.as_string()));
            }
            break;
        }
        default: break;
    }
    return Value::undefined(fmt::format("'{}' object has no item {}", object.type_name(), index.repr()));
}

}  // namespace flashmoe::jinja
