// The tree-walking evaluator: runs a parsed template body against a set of variables.
//
// One Interpreter per render: it owns the output buffer, the variable scopes and any namespaces
// the template creates, and reads the (shared, immutable) syntax tree. Scoping follows jinja2:
// each for-loop iteration, macro call and {% with %} gets a fresh child scope, `if` does not, and a
// `set` writes to the innermost scope (so only namespace attributes escape a loop).
//
// Failure: runtime errors become flashmoe::Error naming the template line and column; kind
// BadInput when the data caused it (undefined attribute of undefined, type mismatch,
// raise_exception), BadModel for constructs we do not support.
#pragma once

#include "text/jinja/ast.h"

#include <ctime>
#include <functional>
#include <memory>
#include <string>

namespace flashmoe::jinja {

struct Scope {
    std::vector<std::pair<std::string, Value>> vars;
    std::shared_ptr<Scope> parent;

    Value* find_local(std::string_view name);
    const Value* lookup(std::string_view name) const;
    void set(std::string_view name, Value value);
};
using ScopePtr = std::shared_ptr<Scope>;

struct RenderOptions {
    std::function<std::time_t()> now;  // for strftime_now; defaults to the system clock
};

class Interpreter {
public:
    explicit Interpreter(RenderOptions options) : options_(std::move(options)) {}

    // Renders `body` with `globals` (caller variables plus built-in functions) as the outermost scope.
    std::string render(const Body& body, ScopePtr globals);

    Value call(const Value& callee, CallArgs& args);
    Value call_macro(const MacroStmt& macro, const std::weak_ptr<Scope>& closure, CallArgs& args);
    const RenderOptions& options() const { return options_; }

    // The functions every template sees: raise_exception, namespace, range, dict, strftime_now.
    static void add_builtins(Scope& scope);

private:
    enum class Flow { Normal, Break, Continue };

    RenderOptions options_;
    std::string* out_ = nullptr;
    int macro_depth_ = 0;

    Flow exec_body(const Body& body, const ScopePtr& scope);
    Flow exec(const Stmt& stmt, const ScopePtr& scope);
    Flow exec_for(const ForStmt& s, const ScopePtr& scope);
    void exec_set(const SetStmt& s, const ScopePtr& scope);
    std::string capture(const Body& body, const ScopePtr& scope);

    Value eval(const Expr& e, const ScopePtr& scope);
    Value eval_inner(const Expr& e, const ScopePtr& scope);
    Value eval_filter(const FilterExpr& f, const ScopePtr& scope, const Value* block_input);
    Value eval_call(const CallExpr& c, const ScopePtr& scope);
    Value eval_binary(const BinaryExpr& b, const ScopePtr& scope);
    CallArgs eval_args(const Args& args, const ScopePtr& scope);
};

// Python operators on values; shared with filters (sum, ...). Throw EvalError.
Value binary_op(std::string_view op, const Value& a, const Value& b);
bool contains(const Value& container, const Value& item);
Value get_attribute(const Value& object, std::string_view name);
Value get_item(const Value& object, const Value& index);

}  // namespace flashmoe::jinja
