// Jinja's built-in filters and tests, the global functions, and the Python methods that chat
// templates call on strings and dicts ("x".startswith(...), d.get(...)), with jinja2 3.1 semantics
// plus transformers' overrides (tojson: ensure_ascii=False, no HTML escaping, sort_keys=False).
//
// The tables are immutable after static initialisation; every function is thread-safe.
// Failures throw EvalError; a name missing from the tables is rejected at parse time.
#pragma once

#include "text/jinja/value.h"

#include <string_view>

namespace flashmoe::jinja {

using FilterFn = Value (*)(const Value& input, CallArgs& args);
using TestFn = bool (*)(const Value& input, CallArgs& args);

// nullptr when there is no such filter / test.
FilterFn find_filter(std::string_view name);
TestFn find_test(std::string_view name);

// Calls a Python method on a str, dict or list receiver. Returns false (and leaves *result
// alone) when the receiver's type has no method of that name that we support.
bool call_method(const Value& receiver, std::string_view name, CallArgs& args, Value* result);

// Whether `receiver.name` names a Python method (which jinja2 resolves before dict keys).
bool is_method_name(const Value& receiver, std::string_view name);

// Helpers shared with the interpreter.
Value apply_filter(std::string_view name, const Value& input, CallArgs& args);
bool apply_test(std::string_view name, const Value& input, CallArgs& args);
std::string html_escape(std::string_view s);

// Binds positional and keyword arguments to parameter names, Python style. Throws EvalError
// naming `fn` for an unknown keyword, a duplicate or too many positionals.
std::vector<Value> bind_args(std::string_view fn, CallArgs& args, std::initializer_list<std::string_view> params,
                             size_t required = 0);

}  // namespace flashmoe::jinja
