// The value model of the Jinja interpreter: what a template expression evaluates to.
//
// A Value is one of Python's types as Jinja sees them (undefined, None, bool, int, float, str,
// list/tuple, dict, namespace, callable). Lists and dicts are immutable once built and shared by
// pointer, so copying a Value is cheap and a Value can be read from several threads; namespaces
// are the one mutable kind and live only inside one render. Dicts keep insertion order, as Python
// dicts do, because tojson and iteration must reproduce the order the caller gave.
//
// Failure: operations that Python would reject (adding a list to an int, ...) throw EvalError;
// the interpreter attaches the template position and turns it into flashmoe::Error.
#pragma once

#include "util/error.h"

#include <nlohmann/json.hpp>

#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <string_view>
#include <utility>
#include <variant>
#include <vector>

namespace flashmoe::jinja {

// An evaluation failure without a position yet; the interpreter adds "line L, column C".
class EvalError : public std::runtime_error {
public:
    EvalError(ErrorKind kind, std::string message) : std::runtime_error(std::move(message)), kind_(kind) {}
    ErrorKind kind() const { return kind_; }

private:
    ErrorKind kind_;
};

template <typename... Args>
[[noreturn]] void eval_fail(ErrorKind kind, fmt::format_string<Args...> format, Args&&... args) {
    throw EvalError(kind, fmt::format(format, std::forward<Args>(args)...));
}

class Value;
class Interpreter;

struct ListData {
    std::vector<Value> items;
    bool is_tuple = false;     // only changes how it prints: ('a', 1)
    bool is_iterator = false;  // a Python generator (map, select, reverse...): no len(), always true, unprintable
};

struct DictData {
    std::vector<std::pair<std::string, Value>> items;  // insertion order; keys are unique
    const Value* find(std::string_view key) const;
    Value* find(std::string_view key);
    void set(std::string key, Value value);  // replaces in place or appends
};

struct CallArgs {
    std::vector<Value> positional;
    std::vector<std::pair<std::string, Value>> named;
};

// A function a template can call: a global (raise_exception, namespace, range, ...), a macro, or a
// method bound to its receiver. The interpreter is passed in so that macros can render.
struct Callable {
    std::string name;
    std::function<Value(Interpreter&, CallArgs&)> fn;
};

struct Undefined {
    std::string hint;  // why it is undefined, for the error raised when it is used wrongly
};

struct None {};

// A Python str; markup marks jinja2's Markup (from |safe, |escape), which escapes what is added to it.
struct Str {
    std::string s;
    bool markup = false;
};

class Value {
public:
    using ListPtr = std::shared_ptr<const ListData>;
    using DictPtr = std::shared_ptr<const DictData>;
    using NamespacePtr = std::shared_ptr<DictData>;
    using CallablePtr = std::shared_ptr<const Callable>;

    enum class Type { Undefined, None, Bool, Int, Float, String, List, Dict, Namespace, Callable };

    Value() : v_(Undefined{}) {}
    Value(None) : v_(None{}) {}
    Value(bool b) : v_(b) {}
    Value(int i) : v_(int64_t{i}) {}
    Value(int64_t i) : v_(i) {}
    Value(double d) : v_(d) {}
    Value(std::string s) : v_(Str{std::move(s)}) {}
    Value(std::string_view s) : v_(Str{std::string(s)}) {}
    Value(const char* s) : v_(Str{std::string(s)}) {}
    Value(ListPtr l) : v_(std::move(l)) {}
    Value(DictPtr d) : v_(std::move(d)) {}
    Value(NamespacePtr n) : v_(std::move(n)) {}
    Value(CallablePtr c) : v_(std::move(c)) {}

    static Value undefined(std::string hint) { Value v; v.v_ = Undefined{std::move(hint)}; return v; }
    static Value markup(std::string s) { Value v; v.v_ = Str{std::move(s), true}; return v; }
    static Value list(std::vector<Value> items, bool is_tuple = false);
    static Value iterator(std::vector<Value> items);
    static Value dict(std::vector<std::pair<std::string, Value>> items);
    static Value callable(std::string name, std::function<Value(Interpreter&, CallArgs&)> fn);

    // Converts caller data; key order is kept. Binary and discarded JSON values are rejected.
    static Value from_json(const nlohmann::ordered_json& j);

    Type type() const { return static_cast<Type>(v_.index()); }
    bool is_undefined() const { return type() == Type::Undefined; }
    bool is_none() const { return type() == Type::None; }
    bool is_bool() const { return type() == Type::Bool; }
    bool is_int() const { return type() == Type::Int; }
    bool is_float() const { return type() == Type::Float; }
    bool is_number() const { return is_int() || is_float() || is_bool(); }  // Python: bool is an int
    bool is_string() const { return type() == Type::String; }
    bool is_list() const { return type() == Type::List; }
    bool is_dict() const { return type() == Type::Dict; }
    bool is_namespace() const { return type() == Type::Namespace; }
    bool is_callable() const { return type() == Type::Callable; }

    bool as_bool() const { return std::get<bool>(v_); }
    int64_t as_int() const;  // int or bool
    double as_double() const;  // int, bool or float
    const std::string& as_string() const { return std::get<Str>(v_).s; }
    bool is_markup() const { return is_string() && std::get<Str>(v_).markup; }
    const ListData& as_list() const { return *std::get<ListPtr>(v_); }
    const DictData& as_dict() const { return *std::get<DictPtr>(v_); }
    DictData& as_namespace() const { return *std::get<NamespacePtr>(v_); }
    const Callable& as_callable() const { return *std::get<CallablePtr>(v_); }
    const std::string& undefined_hint() const { return std::get<Undefined>(v_).hint; }

    // Python semantics.
    bool truthy() const;
    std::string str() const;   // str(x): what {{ x }} prints
    std::string repr() const;  // repr(x): how x prints inside a list or dict
    const char* type_name() const;  // Python's name: 'str', 'dict', ...

    // HF's tojson: json.dumps(x, ensure_ascii=False, indent=None, separators=None, sort_keys=False).
    struct JsonOptions {
        int indent = -1;  // < 0: None (one line)
        bool ensure_ascii = false;
        bool sort_keys = false;
        std::string item_separator;  // empty: ", " without indent, "," with
        std::string key_separator = ": ";
    };
    std::string to_json(const JsonOptions& options) const;
    std::string to_json() const { return to_json(JsonOptions{}); }

    // Values a template can iterate (list, tuple, dict keys, string characters); undefined is empty.
    std::vector<Value> iterate() const;

private:
    std::variant<Undefined, None, bool, int64_t, double, Str, ListPtr, DictPtr, NamespacePtr, CallablePtr> v_;
};

// Python ==, <; comparisons of unrelated types throw EvalError like Python's TypeError.
bool values_equal(const Value& a, const Value& b);
bool value_less(const Value& a, const Value& b);

// Python's float repr: 1.0, 0.1, 1e-05, 1e+20.
std::string python_float_repr(double d);
// Python's repr of a str: 'it''s' -> "it's".
std::string python_string_repr(std::string_view s);

}  // namespace flashmoe::jinja
