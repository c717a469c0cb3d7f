#include "text/jinja/interpreter.h"

#include "text/jinja/filters.h"
#include "text/jinja/pystr.h"

#include <chrono>

namespace flashmoe::jinja {

Value* Scope::find_local(std::string_view name) {
    for (auto& [k, v] : vars) {
        if (k == name) return &v;
    }
    return nullptr;
}

const Value* Scope::lookup(std::string_view name) const {
    for (const Scope* s = this; s; s = s->parent.get()) {
        for (const auto& [k, v] : s->vars) {
            if (k == name) return &v;
        }
    }
    return nullptr;
}

void Scope::set(std::string_view name, Value value) {
    if (Value* v = find_local(name)) {
        *v = std::move(value);
    } else {
        vars.emplace_back(std::string(name), std::move(value));
    }
}

namespace {

constexpr int kMaxMacroDepth = 200;

ScopePtr child_of(const ScopePtr& parent) {
    auto s = std::make_shared<Scope>();
    s->parent = parent;
    return s;
}

void bind_targets(Scope& scope, const std::vector<std::string>& targets, const Value& value) {
    if (targets.size() == 1) {
        scope.set(targets[0], value);
        return;
    }
    if (!value.is_list() && !value.is_string()) {
        eval_fail(ErrorKind::BadInput, "cannot unpack a '{}' into {} names", value.type_name(), targets.size());
    }
    std::vector<Value> items = value.iterate();
    if (items.size() != targets.size()) {
        eval_fail(ErrorKind::BadInput, "cannot unpack {} values into {} names", items.size(), targets.size());
    }
    for (size_t i = 0; i < targets.size(); ++i) scope.set(targets[i], items[i]);
}

}  // namespace

std::string Interpreter::render(const Body& body, ScopePtr globals) {
    std::string out;
    out_ = &out;
    ScopePtr root = child_of(globals);
    Flow flow = exec_body(body, root);
    if (flow != Flow::Normal) fail(ErrorKind::BadModel, "chat template error: 'break' or 'continue' outside a loop");
    out_ = nullptr;
    return out;
}

std::string Interpreter::capture(const Body& body, const ScopePtr& scope) {
    std::string buf;
    std::string* saved = out_;
    out_ = &buf;
    Flow flow = exec_body(body, scope);
    out_ = saved;
    if (flow != Flow::Normal) fail(ErrorKind::BadModel, "chat template error: 'break' or 'continue' outside a loop");
    return buf;
}

Interpreter::Flow Interpreter::exec_body(const Body& body, const ScopePtr& scope) {
    for (const StmtPtr& s : body) {
        Flow f = exec(*s, scope);
        if (f != Flow::Normal) return f;
    }
    return Flow::Normal;
}

Interpreter::Flow Interpreter::exec(const Stmt& stmt, const ScopePtr& scope) {
    try {
        switch (stmt.kind) {
            case Stmt::Kind::Text: *out_ += static_cast<const TextStmt&>(stmt).text; return Flow::Normal;
            case Stmt::Kind::Output: *out_ += eval(*static_cast<const OutputStmt&>(stmt).expr, scope).str(); return Flow::Normal;
            case Stmt::Kind::If: {
                const auto& s = static_cast<const IfStmt&>(stmt);
                for (const auto& [cond, body] : s.branches) {
                    if (eval(*cond, scope).truthy()) return exec_body(body, scope);
                }
                return exec_body(s.otherwise, scope);
            }
            case Stmt::Kind::For: return exec_for(static_cast<const ForStmt&>(stmt), scope);
            case Stmt::Kind::Set: exec_set(static_cast<const SetStmt&>(stmt), scope); return Flow::Normal;
            case Stmt::Kind::SetBlock: {
                const auto& s = static_cast<const SetBlockStmt&>(stmt);
                Value v(capture(s.body, scope));
                if (s.filter) v = eval_filter(static_cast<const FilterExpr&>(*s.filter), scope, &v);
                scope->set(s.target, std::move(v));
                return Flow::Normal;
            }
            case Stmt::Kind::Macro: {
                const auto& s = static_cast<const MacroStmt&>(stmt);
                std::weak_ptr<Scope> closure = scope;  // weak: the scope holds the macro, avoid a cycle
                scope->set(s.name, Value::callable(s.name, [&s, closure](Interpreter& in, CallArgs& args) {
                               return in.call_macro(s, closure, args);
                           }));
                return Flow::Normal;
            }
            case Stmt::Kind::FilterBlock: {
                const auto& s = static_cast<const FilterBlockStmt&>(stmt);
                Value v(capture(s.body, scope));
                *out_ += eval_filter(static_cast<const FilterExpr&>(*s.filter), scope, &v).str();
                return Flow::Normal;
            }
            case Stmt::Kind::With: {
                const auto& s = static_cast<const WithStmt&>(stmt);
                ScopePtr inner = child_of(scope);
                for (const auto& [name, e] : s.assignments) inner->set(name, eval(*e, scope));
                return exec_body(s.body, inner);
            }
            case Stmt::Kind::Block: return exec_body(static_cast<const BlockStmt&>(stmt).body, scope);
            case Stmt::Kind::Break: return Flow::Break;
            case Stmt::Kind::Continue: return Flow::Continue;
        }
    } catch (const EvalError& e) {
        fail(e.kind(), "chat template error at line {}, column {}: {}", stmt.pos.line, stmt.pos.column, e.what());
    }
    return Flow::Normal;
}

Interpreter::Flow Interpreter::exec_for(const ForStmt& s, const ScopePtr& scope) {
    Value iterable = eval(*s.iterable, scope);
    if (!iterable.is_undefined() && !iterable.is_list() && !iterable.is_dict() && !iterable.is_string()) {
        eval_fail(ErrorKind::BadInput, "'{}' object is not iterable", iterable.type_name());
    }
    std::vector<Value> items = iterable.iterate();
    if (s.filter) {  // `for x in xs if cond`: loop.length counts only the kept items
        std::vector<Value> kept;
        for (const Value& item : items) {
            ScopePtr probe = child_of(scope);
            bind_targets(*probe, s.targets, item);
            if (eval(*s.filter, probe).truthy()) kept.push_back(item);
        }
        items = std::move(kept);
    }
    const auto n = static_cast<int64_t>(items.size());
    for (int64_t i = 0; i < n; ++i) {
        ScopePtr inner = child_of(scope);
        bind_targets(*inner, s.targets, items[static_cast<size_t>(i)]);
        std::vector<std::pair<std::string, Value>> loop = {
            {"index", Value(i + 1)},     {"index0", Value(i)},          {"revindex", Value(n - i)},
            {"revindex0", Value(n - i - 1)}, {"first", Value(i == 0)}, {"last", Value(i == n - 1)},
            {"length", Value(n)},        {"depth", Value(1)},           {"depth0", Value(0)},
        };
        loop.emplace_back("cycle", Value::callable("loop.cycle", [i](Interpreter&, CallArgs& args) -> Value {
                              if (!args.named.empty() || args.positional.empty()) eval_fail(ErrorKind::BadInput, "loop.cycle() needs positional arguments");
                              return args.positional[static_cast<size_t>(i) % args.positional.size()];
                          }));
        if (i > 0) loop.emplace_back("previtem", items[static_cast<size_t>(i - 1)]);
        if (i + 1 < n) loop.emplace_back("nextitem", items[static_cast<size_t>(i + 1)]);
        inner->set("loop", Value::dict(std::move(loop)));
        Flow f = exec_body(s.body, inner);
        if (f == Flow::Break) break;
    }
    if (n == 0) return exec_body(s.otherwise, child_of(scope));
    return Flow::Normal;
}

namespace {
// Whether `v` holds the namespace `target` anywhere inside it. Namespaces are the only mutable
// values, so refusing such an assignment keeps every value acyclic (no reference-count cycles, no
// endless printing).
bool reaches(const Value& v, const DictData* target) {
    if (v.is_namespace()) {
        if (&v.as_namespace() == target) return true;
        for (const auto& [k, item] : v.as_namespace().items)
            if (reaches(item, target)) return true;
    } else if (v.is_dict()) {
        for (const auto& [k, item] : v.as_dict().items)
            if (reaches(item, target)) return true;
    } else if (v.is_list()) {
        for (const auto& item : v.as_list().items)
            if (reaches(item, target)) return true;
    }
    return false;
}
}  // namespace

void Interpreter::exec_set(const SetStmt& s, const ScopePtr& scope) {
    Value v = eval(*s.value, scope);
    if (s.attribute.empty()) {
        bind_targets(*scope, s.targets, v);
        return;
    }
    const Value* target = scope->lookup(s.targets[0]);
    if (!target || !target->is_namespace()) {
        eval_fail(ErrorKind::BadInput, "cannot assign attribute on non-namespace object '{}'", s.targets[0]);
    }
    if (reaches(v, &target->as_namespace())) {
        eval_fail(ErrorKind::BadInput, "cannot store namespace '{}' inside itself", s.targets[0]);
    }
    target->as_namespace().set(s.attribute, std::move(v));
}

Value Interpreter::call_macro(const MacroStmt& m, const std::weak_ptr<Scope>& closure, CallArgs& args) {
    ScopePtr parent = closure.lock();
    if (!parent) eval_fail(ErrorKind::BadModel, "macro '{}' called after its scope ended", m.name);
    if (args.positional.size() > m.params.size()) {
        eval_fail(ErrorKind::BadInput, "macro '{}' takes not more than {} argument(s)", m.name, m.params.size());
    }
    if (macro_depth_ >= kMaxMacroDepth) eval_fail(ErrorKind::BadInput, "macro '{}' recursed too deeply", m.name);
    ScopePtr inner = child_of(parent);
    std::vector<bool> bound(m.params.size(), false);
    for (size_t i = 0; i < args.positional.size(); ++i) {
        inner->set(m.params[i].first, std::move(args.positional[i]));
        bound[i] = true;
    }
    for (auto& [name, v] : args.named) {
        size_t k = 0;
        while (k < m.params.size() && m.params[k].first != name) ++k;
        if (k == m.params.size()) eval_fail(ErrorKind::BadInput, "macro '{}' takes no keyword argument '{}'", m.name, name);
        if (bound[k]) eval_fail(ErrorKind::BadInput, "macro '{}' got multiple values for argument '{}'", m.name, name);
        inner->set(name, std::move(v));
        bound[k] = true;
    }
    for (size_t k = 0; k < m.params.size(); ++k) {
        if (bound[k]) continue;
        const auto& [name, dflt] = m.params[k];
        inner->set(name, dflt ? eval(*dflt, inner) : Value::undefined(fmt::format("parameter '{}' was not provided", name)));
    }
    ++macro_depth_;
    std::string rendered;
    try {
        rendered = capture(m.body, inner);
    } catch (...) {
        --macro_depth_;
        throw;
    }
    --macro_depth_;
    return Value(std::move(rendered));
}

Value Interpreter::call(const Value& callee, CallArgs& args) {
    if (callee.is_undefined()) eval_fail(ErrorKind::BadInput, "{}", callee.undefined_hint());
    if (!callee.is_callable()) eval_fail(ErrorKind::BadInput, "'{}' object is not callable", callee.type_name());
    return callee.as_callable().fn(*this, args);
}

// ---- expressions ----------------------------------------------------------------------------------

Value Interpreter::eval(const Expr& e, const ScopePtr& scope) {
    try {
        return eval_inner(e, scope);
    } catch (const EvalError& err) {
        fail(err.kind(), "chat template error at line {}, column {}: {}", e.pos.line, e.pos.column, err.what());
    }
}

CallArgs Interpreter::eval_args(const Args& args, const ScopePtr& scope) {
    CallArgs out;
    for (const ExprPtr& a : args.positional) out.positional.push_back(eval(*a, scope));
    for (const auto& [name, a] : args.named) out.named.emplace_back(name, eval(*a, scope));
    return out;
}

Value Interpreter::eval_inner(const Expr& e, const ScopePtr& scope) {
    switch (e.kind) {
        case Expr::Kind::Literal: return static_cast<const LiteralExpr&>(e).value;
        case Expr::Kind::Name: {
            const auto& n = static_cast<const NameExpr&>(e);
            const Value* v = scope->lookup(n.name);
            return v ? *v : Value::undefined(fmt::format("'{}' is undefined", n.name));
        }
        case Expr::Kind::List:
        case Expr::Kind::Tuple: {
            std::vector<Value> items;
            for (const ExprPtr& item : static_cast<const ListExpr&>(e).items) items.push_back(eval(*item, scope));
            return Value::list(std::move(items), e.kind == Expr::Kind::Tuple);
        }
        case Expr::Kind::Dict: {
            std::vector<std::pair<std::string, Value>> items;
            for (const auto& [k, v] : static_cast<const DictExpr&>(e).items) {
                Value key = eval(*k, scope);
                if (!key.is_string()) eval_fail(ErrorKind::BadModel, "dict literal keys must be strings, got '{}'", key.type_name());
                items.emplace_back(key.as_string(), eval(*v, scope));
            }
            return Value::dict(std::move(items));
        }
        case Expr::Kind::GetAttr: {
            const auto& g = static_cast<const GetAttrExpr&>(e);
            return get_attribute(eval(*g.object, scope), g.name);
        }
        case Expr::Kind::GetItem: {
            const auto& g = static_cast<const GetItemExpr&>(e);
            Value object = eval(*g.object, scope);
            return get_item(object, eval(*g.index, scope));
        }
        case Expr::Kind::Slice: {
            const auto& s = static_cast<const SliceExpr&>(e);
            Value object = eval(*s.object, scope);
            if (object.is_undefined()) eval_fail(ErrorKind::BadInput, "{}", object.undefined_hint());
            auto bound = [&](const ExprPtr& x) -> std::optional<int64_t> {
                if (!x) return std::nullopt;
                Value v = eval(*x, scope);
                if (v.is_none()) return std::nullopt;
                if (!v.is_int() && !v.is_bool()) eval_fail(ErrorKind::BadInput, "slice indices must be integers or None");
                return v.as_int();
            };
            std::optional<int64_t> start = bound(s.start), stop = bound(s.stop), step = bound(s.step);
            int64_t st = step.value_or(1);
            if (st == 0) eval_fail(ErrorKind::BadInput, "slice step cannot be zero");
            if (object.is_string()) return Value(pystr::slice(object.as_string(), start, stop, st));
            if (!object.is_list() || object.as_list().is_iterator) {
                eval_fail(ErrorKind::BadInput, "'{}' object is not subscriptable", object.type_name());
            }
            const auto& items = object.as_list().items;
            auto n = static_cast<int64_t>(items.size());
            auto clamp = [&](std::optional<int64_t> v, int64_t dflt, int64_t lo, int64_t hi) {
                if (!v) return dflt;
                return std::clamp(*v < 0 ? *v + n : *v, lo, hi);
            };
            std::vector<Value> out;
            if (st > 0) {
                for (int64_t i = clamp(start, 0, 0, n), end = clamp(stop, n, 0, n); i < end; i += st) out.push_back(items[static_cast<size_t>(i)]);
            } else {
                for (int64_t i = clamp(start, n - 1, -1, n - 1), end = clamp(stop, -1, -1, n - 1); i > end; i += st) out.push_back(items[static_cast<size_t>(i)]);
            }
            return Value::list(std::move(out), object.as_list().is_tuple);
        }
        case Expr::Kind::Call: return eval_call(static_cast<const CallExpr&>(e), scope);
        case Expr::Kind::Filter: return eval_filter(static_cast<const FilterExpr&>(e), scope, nullptr);
        case Expr::Kind::Test: {
            const auto& t = static_cast<const TestExpr&>(e);
            Value input = eval(*t.input, scope);
            CallArgs args = eval_args(t.args, scope);
            return Value(apply_test(t.name, input, args) != t.negated);
        }
        case Expr::Kind::Unary: {
            const auto& u = static_cast<const UnaryExpr&>(e);
            Value v = eval(*u.operand, scope);
            if (u.op == "not") return Value(!v.truthy());
            if (v.is_undefined()) eval_fail(ErrorKind::BadInput, "{}", v.undefined_hint());
            if (!v.is_number()) eval_fail(ErrorKind::BadInput, "bad operand type for unary {}: '{}'", u.op, v.type_name());
            if (u.op == "+") return v.is_bool() ? Value(v.as_int()) : v;
            if (v.is_float()) return Value(-v.as_double());
            if (v.as_int() == INT64_MIN) eval_fail(ErrorKind::BadInput, "integer overflow");
            return Value(-v.as_int());
        }
        case Expr::Kind::Binary: return eval_binary(static_cast<const BinaryExpr&>(e), scope);
        case Expr::Kind::Compare: {
            const auto& c = static_cast<const CompareExpr&>(e);
            Value left = eval(*c.first, scope);
            for (const auto& [op, rhs] : c.rest) {
                Value right = eval(*rhs, scope);
                bool ok;
                if (op == "==") ok = values_equal(left, right);
                else if (op == "!=") ok = !values_equal(left, right);
                else if (op == "<") ok = value_less(left, right);
                else if (op == ">") ok = value_less(right, left);
                else if (op == "<=") ok = value_less(left, right) || values_equal(left, right);
                else if (op == ">=") ok = value_less(right, left) || values_equal(left, right);
                else if (op == "in") ok = contains(right, left);
                else ok = !contains(right, left);
                if (!ok) return Value(false);
                left = std::move(right);
            }
            return Value(true);
        }
        case Expr::Kind::Cond: {
            const auto& c = static_cast<const CondExpr&>(e);
            if (eval(*c.cond, scope).truthy()) return eval(*c.then, scope);
            if (c.otherwise) return eval(*c.otherwise, scope);
            return Value::undefined("the inline if-expression evaluated to false and no else section was defined");
        }
    }
    eval_fail(ErrorKind::Internal, "unknown expression kind");
}

Value Interpreter::eval_filter(const FilterExpr& f, const ScopePtr& scope, const Value* block_input) {
    Value input;
    if (!f.input) {
        if (!block_input) eval_fail(ErrorKind::Internal, "filter '{}' without input", f.name);
        input = *block_input;
    } else if (f.input->kind == Expr::Kind::Filter && block_input) {
        input = eval_filter(static_cast<const FilterExpr&>(*f.input), scope, block_input);
    } else {
        input = eval(*f.input, scope);
    }
    CallArgs args = eval_args(f.args, scope);
    return apply_filter(f.name, input, args);
}

Value Interpreter::eval_call(const CallExpr& c, const ScopePtr& scope) {
    if (c.callee->kind == Expr::Kind::GetAttr) {  // a method call: "x".strip(), d.get(k), loop.cycle(...)
        const auto& g = static_cast<const GetAttrExpr&>(*c.callee);
        Value object = eval(*g.object, scope);
        if (object.is_undefined()) eval_fail(ErrorKind::BadInput, "{}", object.undefined_hint());
        CallArgs args = eval_args(c.args, scope);
        Value result;
        if (call_method(object, g.name, args, &result)) return result;
        if (is_method_name(object, g.name)) {
            eval_fail(ErrorKind::BadModel, "unsupported method '{}.{}()'", object.type_name(), g.name);
        }
        return call(get_attribute(object, g.name), args);
    }
    Value callee = eval(*c.callee, scope);
    CallArgs args = eval_args(c.args, scope);
    return call(callee, args);
}

Value Interpreter::eval_binary(const BinaryExpr& b, const ScopePtr& scope) {
    Value left = eval(*b.left, scope);
    if (b.op == "and") return left.truthy() ? eval(*b.right, scope) : left;
    if (b.op == "or") return left.truthy() ? left : eval(*b.right, scope);
    Value right = eval(*b.right, scope);
    if (b.op == "~") return Value(left.str() + right.str());
    return binary_op(b.op, left, right);
}

}  // namespace flashmoe::jinja
