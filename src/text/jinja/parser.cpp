#include "text/jinja/parser.h"

#include "text/jinja/filters.h"
#include "util/error.h"

#include <cerrno>
#include <cstdlib>
#include <set>

namespace flashmoe::jinja {
namespace {

class Parser {
public:
    explicit Parser(const std::vector<Token>& tokens) : t_(tokens) {}

    Body parse_template() {
        Body body = parse_body({});
        if (cur().type != TokenType::End) error(cur().pos, "unexpected token");
        return body;
    }

private:
    // Deeply nested input (thousands of brackets, `not`s or blocks) must fail cleanly, not
    // overflow the stack in the parser or later in the evaluator.
    static constexpr int kMaxNesting = 200;
    struct Nest {
        Parser& p;
        Nest(Parser& parser, SourcePos pos) : p(parser) {
            if (++p.nesting_ > kMaxNesting) p.error(pos, fmt::format("nesting deeper than {} levels", kMaxNesting));
        }
        ~Nest() { --p.nesting_; }
    };
    int nesting_ = 0;

    const std::vector<Token>& t_;
    size_t i_ = 0;

    const Token& cur() const { return t_[i_]; }
    const Token& peek(size_t n = 1) const { return t_[std::min(i_ + n, t_.size() - 1)]; }
    const Token& next() { return t_[i_ < t_.size() - 1 ? i_++ : i_]; }

    [[noreturn]] static void error(SourcePos p, const std::string& message) {
        fail(ErrorKind::BadModel, "chat template syntax error at line {}, column {}: {}", p.line, p.column, message);
    }

    static std::string describe(const Token& t) {
        if (t.type == TokenType::Name || t.type == TokenType::Operator) return fmt::format("'{}'", t.value);
        return token_type_name(t.type);
    }

    bool is_op(std::string_view op) const { return cur().type == TokenType::Operator && cur().value == op; }
    bool is_name(std::string_view n) const { return cur().type == TokenType::Name && cur().value == n; }
    bool skip_op(std::string_view op) {
        if (!is_op(op)) return false;
        next();
        return true;
    }
    bool skip_name(std::string_view n) {
        if (!is_name(n)) return false;
        next();
        return true;
    }
    void expect_op(std::string_view op) {
        if (!skip_op(op)) error(cur().pos, fmt::format("expected '{}', got {}", op, describe(cur())));
    }
    std::string expect_name() {
        if (cur().type != TokenType::Name) error(cur().pos, fmt::format("expected a name, got {}", describe(cur())));
        return next().value;
    }
    void expect_block_end(std::string_view tag) {
        if (cur().type != TokenType::BlockEnd) {
            error(cur().pos, fmt::format("expected end of '{}' tag, got {}", tag, describe(cur())));
        }
        next();
    }

    // ---- statements ----------------------------------------------------------------------------

    // Parses until one of `ends` opens a block tag; leaves the tag name as the current token.
    Body parse_body(const std::set<std::string_view>& ends) {
        Nest nest(*this, cur().pos);
        Body body;
        while (true) {
            const Token& t = cur();
            switch (t.type) {
                case TokenType::End:
                    if (!ends.empty()) {
                        std::string names;
                        for (std::string_view e : ends) names += fmt::format("{}'{}'", names.empty() ? "" : " or ", e);
                        error(t.pos, fmt::format("unexpected end of template, a block is not closed (expected {})", names));
                    }
                    return body;
                case TokenType::Text:
                    body.push_back(std::make_unique<TextStmt>(t.pos, t.value));
                    next();
                    break;
                case TokenType::VarBegin: {
                    next();
                    ExprPtr e = parse_tuple(true);
                    if (cur().type != TokenType::VarEnd) error(cur().pos, fmt::format("expected '}}}}', got {}", describe(cur())));
                    next();
                    body.push_back(std::make_unique<OutputStmt>(t.pos, std::move(e)));
                    break;
                }
                case TokenType::BlockBegin: {
                    const Token& name = peek();
                    if (name.type != TokenType::Name) error(name.pos, "expected a tag name after '{%'");
                    if (ends.count(name.value)) {
                        next();
                        return body;
                    }
                    next();
                    body.push_back(parse_statement());
                    break;
                }
                default: error(t.pos, fmt::format("unexpected {}", describe(t)));
            }
        }
    }

    StmtPtr parse_statement() {
        const Token& tag = next();
        const std::string& n = tag.value;
        if (n == "if") return parse_if(tag.pos);
        if (n == "for") return parse_for(tag.pos);
        if (n == "set") return parse_set(tag.pos);
        if (n == "macro") return parse_macro(tag.pos);
        if (n == "filter") return parse_filter_block(tag.pos);
        if (n == "with") return parse_with(tag.pos);
        if (n == "generation") {  // transformers' AssistantTracker tag: renders its body unchanged
            expect_block_end(n);
            auto s = std::make_unique<BlockStmt>(tag.pos);
            s->body = parse_body({"endgeneration"});
            next();
            expect_block_end("endgeneration");
            return s;
        }
        if (n == "break" || n == "continue") {
            expect_block_end(n);
            return std::make_unique<LoopControlStmt>(n == "break" ? Stmt::Kind::Break : Stmt::Kind::Continue, tag.pos);
        }
        static const std::set<std::string_view> unsupported = {
            "call", "include", "import", "from", "extends", "block", "do", "autoescape", "trans", "raw"};
        if (unsupported.count(n)) error(tag.pos, fmt::format("unsupported tag '{}'", n));
        error(tag.pos, fmt::format("unknown tag '{}'", n));
    }

    StmtPtr parse_if(SourcePos pos) {
        auto s = std::make_unique<IfStmt>(pos);
        ExprPtr cond = parse_tuple(false);
        expect_block_end("if");
        while (true) {
            Body body = parse_body({"elif", "else", "endif"});
            s->branches.emplace_back(std::move(cond), std::move(body));
            std::string tag = next().value;
            if (tag == "elif") {
                cond = parse_tuple(false);
                expect_block_end("elif");
                continue;
            }
            expect_block_end(tag);
            if (tag == "else") {
                s->otherwise = parse_body({"endif"});
                next();
                expect_block_end("endif");
            }
            return s;
        }
    }

    std::vector<std::string> parse_targets() {
        std::vector<std::string> names;
        bool parens = skip_op("(");
        do {
            if (parens && is_op(")")) break;
            names.push_back(expect_name());
        } while (skip_op(","));
        if (parens) expect_op(")");
        return names;
    }

    StmtPtr parse_for(SourcePos pos) {
        auto s = std::make_unique<ForStmt>(pos);
        s->targets = parse_targets();
        if (!skip_name("in")) error(cur().pos, fmt::format("expected 'in' in for loop, got {}", describe(cur())));
        s->iterable = parse_tuple(false);
        if (skip_name("if")) s->filter = parse_tuple(false);
        if (is_name("recursive")) error(cur().pos, "unsupported construct: recursive for loop");
        expect_block_end("for");
        s->body = parse_body({"else", "endfor"});
        if (next().value == "else") {
            expect_block_end("else");
            s->otherwise = parse_body({"endfor"});
            next();
        }
        expect_block_end("endfor");
        return s;
    }

    StmtPtr parse_set(SourcePos pos) {
        std::vector<std::string> targets = parse_targets();
        std::string attribute;
        if (targets.size() == 1 && skip_op(".")) attribute = expect_name();
        if (skip_op("=")) {
            auto s = std::make_unique<SetStmt>(pos);
            s->targets = std::move(targets);
            s->attribute = std::move(attribute);
            s->value = parse_tuple(true);
            expect_block_end("set");
            return s;
        }
        if (targets.size() != 1 || !attribute.empty()) error(cur().pos, "a block set takes a single name");
        auto s = std::make_unique<SetBlockStmt>(pos);
        s->target = targets[0];
        if (is_op("|")) s->filter = parse_filter_chain(nullptr);
        expect_block_end("set");
        s->body = parse_body({"endset"});
        next();
        expect_block_end("endset");
        return s;
    }

    StmtPtr parse_macro(SourcePos pos) {
        auto s = std::make_unique<MacroStmt>(pos);
        s->name = expect_name();
        expect_op("(");
        while (!is_op(")")) {
            if (!s->params.empty()) expect_op(",");
            if (is_op(")")) break;
            std::string param = expect_name();
            ExprPtr dflt;
            if (skip_op("=")) dflt = parse_expression(true);
            s->params.emplace_back(std::move(param), std::move(dflt));
        }
        next();
        expect_block_end("macro");
        s->body = parse_body({"endmacro"});
        next();
        if (cur().type == TokenType::Name) next();  // {% endmacro name %}
        expect_block_end("endmacro");
        return s;
    }

    StmtPtr parse_filter_block(SourcePos pos) {
        auto s = std::make_unique<FilterBlockStmt>(pos);
        s->filter = parse_filter_chain(nullptr, /*leading_pipe=*/false);
        expect_block_end("filter");
        s->body = parse_body({"endfilter"});
        next();
        expect_block_end("endfilter");
        return s;
    }

    StmtPtr parse_with(SourcePos pos) {
        auto s = std::make_unique<WithStmt>(pos);
        while (cur().type != TokenType::BlockEnd) {
            if (!s->assignments.empty()) expect_op(",");
            std::string name = expect_name();
            expect_op("=");
            s->assignments.emplace_back(std::move(name), parse_expression(true));
        }
        next();
        s->body = parse_body({"endwith"});
        next();
        expect_block_end("endwith");
        return s;
    }

    // ---- expressions ---------------------------------------------------------------------------

    ExprPtr parse_tuple(bool with_condexpr) {
        SourcePos pos = cur().pos;
        ExprPtr first = parse_expression(with_condexpr);
        if (!is_op(",")) return first;
        auto tuple = std::make_unique<ListExpr>(Expr::Kind::Tuple, pos);
        tuple->items.push_back(std::move(first));
        while (skip_op(",")) {
            if (cur().type == TokenType::VarEnd || cur().type == TokenType::BlockEnd || is_op(")")) break;
            tuple->items.push_back(parse_expression(with_condexpr));
        }
        return tuple;
    }

    ExprPtr parse_expression(bool with_condexpr) { return with_condexpr ? parse_condexpr() : parse_or(); }

    ExprPtr parse_condexpr() {
        ExprPtr e = parse_or();
        while (is_name("if")) {
            auto c = std::make_unique<CondExpr>(next().pos);
            c->cond = parse_or();
            if (skip_name("else")) c->otherwise = parse_condexpr();
            c->then = std::move(e);
            e = std::move(c);
        }
        return e;
    }

    ExprPtr parse_or() {
        ExprPtr e = parse_and();
        while (is_name("or")) {
            SourcePos p = next().pos;
            e = std::make_unique<BinaryExpr>(p, "or", std::move(e), parse_and());
        }
        return e;
    }

    ExprPtr parse_and() {
        ExprPtr e = parse_not();
        while (is_name("and")) {
            SourcePos p = next().pos;
            e = std::make_unique<BinaryExpr>(p, "and", std::move(e), parse_not());
        }
        return e;
    }

    ExprPtr parse_not() {
        Nest nest(*this, cur().pos);
        if (is_name("not")) {
            SourcePos p = next().pos;
            return std::make_unique<UnaryExpr>(p, "not", parse_not());
        }
        return parse_compare();
    }

    ExprPtr parse_compare() {
        SourcePos pos = cur().pos;
        ExprPtr first = parse_math1();
        std::unique_ptr<CompareExpr> cmp;
        while (true) {
            std::string op;
            if (cur().type == TokenType::Operator &&
                (cur().value == "==" || cur().value == "!=" || cur().value == "<" || cur().value == ">" ||
                 cur().value == "<=" || cur().value == ">=")) {
                op = next().value;
            } else if (is_name("in")) {
                next();
                op = "in";
            } else if (is_name("not") && peek().type == TokenType::Name && peek().value == "in") {
                next();
                next();
                op = "notin";
            } else {
                break;
            }
            if (!cmp) cmp = std::make_unique<CompareExpr>(pos, std::move(first));
            cmp->rest.emplace_back(op, parse_math1());
        }
        if (cmp) return cmp;
        return first;
    }

    ExprPtr parse_math1() {
        ExprPtr e = parse_concat();
        while (is_op("+") || is_op("-")) {
            const Token& t = next();
            e = std::make_unique<BinaryExpr>(t.pos, t.value, std::move(e), parse_concat());
        }
        return e;
    }

    ExprPtr parse_concat() {
        ExprPtr e = parse_math2();
        while (is_op("~")) {
            SourcePos p = next().pos;
            e = std::make_unique<BinaryExpr>(p, "~", std::move(e), parse_math2());
        }
        return e;
    }

    ExprPtr parse_math2() {
        ExprPtr e = parse_pow();
        while (is_op("*") || is_op("/") || is_op("//") || is_op("%")) {
            const Token& t = next();
            e = std::make_unique<BinaryExpr>(t.pos, t.value, std::move(e), parse_pow());
        }
        return e;
    }

    ExprPtr parse_pow() {
        ExprPtr e = parse_unary(true);
        while (is_op("**")) {
            SourcePos p = next().pos;
            e = std::make_unique<BinaryExpr>(p, "**", std::move(e), parse_unary(true));
        }
        return e;
    }

    ExprPtr parse_unary(bool with_filter) {
        Nest nest(*this, cur().pos);
        ExprPtr e;
        if (is_op("-") || is_op("+")) {
            const Token& t = next();
            e = std::make_unique<UnaryExpr>(t.pos, t.value, parse_unary(false));
        } else {
            e = parse_postfix(parse_primary());
        }
        if (with_filter) e = parse_filter_expr(std::move(e));
        return e;
    }

    ExprPtr parse_primary() {
        const Token& t = cur();
        switch (t.type) {
            case TokenType::Name: {
                next();
                if (t.value == "true" || t.value == "True") return std::make_unique<LiteralExpr>(t.pos, Value(true));
                if (t.value == "false" || t.value == "False") return std::make_unique<LiteralExpr>(t.pos, Value(false));
                if (t.value == "none" || t.value == "None") return std::make_unique<LiteralExpr>(t.pos, Value(None{}));
                return std::make_unique<NameExpr>(t.pos, t.value);
            }
            case TokenType::String: {
                std::string s;
                while (cur().type == TokenType::String) s += next().value;  // adjacent literals concatenate
                return std::make_unique<LiteralExpr>(t.pos, Value(std::move(s)));
            }
            case TokenType::Integer: {
                next();
                errno = 0;
                long long v = std::strtoll(t.value.c_str(), nullptr, 10);
                if (errno == ERANGE) error(t.pos, fmt::format("integer literal {} is too large", t.value));
                return std::make_unique<LiteralExpr>(t.pos, Value(static_cast<int64_t>(v)));
            }
            case TokenType::Float:
                next();
                return std::make_unique<LiteralExpr>(t.pos, Value(std::strtod(t.value.c_str(), nullptr)));
            case TokenType::Operator:
                if (t.value == "(") {
                    next();
                    if (skip_op(")")) return std::make_unique<ListExpr>(Expr::Kind::Tuple, t.pos);
                    ExprPtr first = parse_expression(true);
                    if (skip_op(")")) return first;
                    auto tuple = std::make_unique<ListExpr>(Expr::Kind::Tuple, t.pos);
                    tuple->items.push_back(std::move(first));
                    while (skip_op(",")) {
                        if (is_op(")")) break;
                        tuple->items.push_back(parse_expression(true));
                    }
                    expect_op(")");
                    return tuple;
                }
                if (t.value == "[") {
                    next();
                    auto list = std::make_unique<ListExpr>(Expr::Kind::List, t.pos);
                    while (!is_op("]")) {
                        if (!list->items.empty()) expect_op(",");
                        if (is_op("]")) break;
                        list->items.push_back(parse_expression(true));
                    }
                    next();
                    return list;
                }
                if (t.value == "{") {
                    next();
                    auto dict = std::make_unique<DictExpr>(t.pos);
                    while (!is_op("}")) {
                        if (!dict->items.empty()) expect_op(",");
                        if (is_op("}")) break;
                        ExprPtr key = parse_expression(true);
                        expect_op(":");
                        dict->items.emplace_back(std::move(key), parse_expression(true));
                    }
                    next();
                    return dict;
                }
                break;
            default: break;
        }
        error(t.pos, fmt::format("unexpected {}", describe(t)));
    }

    ExprPtr parse_postfix(ExprPtr e) {
        while (true) {
            if (is_op(".")) {
                SourcePos p = next().pos;
                if (cur().type == TokenType::Integer) {
                    const Token& t = next();
                    e = std::make_unique<GetItemExpr>(
                        p, std::move(e), std::make_unique<LiteralExpr>(t.pos, Value(static_cast<int64_t>(std::stoll(t.value)))));
                } else {
                    e = std::make_unique<GetAttrExpr>(p, std::move(e), expect_name());
                }
            } else if (is_op("[")) {
                e = parse_subscript(std::move(e));
            } else if (is_op("(")) {
                e = parse_call(std::move(e));
            } else {
                return e;
            }
        }
    }

    ExprPtr parse_subscript(ExprPtr e) {
        SourcePos p = next().pos;
        ExprPtr start;
        if (!is_op(":")) {
            start = parse_expression(true);
            if (skip_op("]")) return std::make_unique<GetItemExpr>(p, std::move(e), std::move(start));
            if (is_op(",")) error(cur().pos, "unsupported construct: tuple subscript");
        }
        auto s = std::make_unique<SliceExpr>(p, std::move(e));
        s->start = std::move(start);
        expect_op(":");
        if (!is_op("]") && !is_op(":")) s->stop = parse_expression(true);
        if (skip_op(":") && !is_op("]")) s->step = parse_expression(true);
        expect_op("]");
        return s;
    }

    Args parse_call_args() {
        expect_op("(");
        Args args;
        bool first = true;
        while (!is_op(")")) {
            if (!first) expect_op(",");
            first = false;
            if (is_op(")")) break;
            if (is_op("*") || is_op("**")) error(cur().pos, "unsupported construct: *args / **kwargs in a call");
            if (cur().type == TokenType::Name && peek().type == TokenType::Operator && peek().value == "=") {
                std::string name = next().value;
                next();
                args.named.emplace_back(std::move(name), parse_expression(true));
            } else {
                if (!args.named.empty()) error(cur().pos, "positional argument follows keyword argument");
                args.positional.push_back(parse_expression(true));
            }
        }
        next();
        return args;
    }

    ExprPtr parse_call(ExprPtr callee) {
        auto c = std::make_unique<CallExpr>(cur().pos, std::move(callee));
        c->args = parse_call_args();
        return c;
    }

    ExprPtr parse_filter_expr(ExprPtr e) {
        while (true) {
            if (is_op("|")) {
                e = parse_filter_chain(std::move(e));
            } else if (is_name("is")) {
                e = parse_test(std::move(e));
            } else if (is_op("(")) {
                e = parse_call(std::move(e));
            } else {
                return e;
            }
        }
    }

    // One or more `| name(args)`; input may be null (filter blocks, block sets).
    ExprPtr parse_filter_chain(ExprPtr input, bool leading_pipe = true) {
        const bool block_mode = input == nullptr;  // expressions chain further pipes in parse_filter_expr
        do {
            if (leading_pipe) expect_op("|");
            leading_pipe = true;
            SourcePos p = cur().pos;
            std::string name = expect_name();
            if (is_op(".")) error(p, fmt::format("unknown filter '{}.{}'", name, peek().value));
            if (!find_filter(name)) error(p, fmt::format("unsupported filter '{}'", name));
            auto f = std::make_unique<FilterExpr>(p, std::move(input), std::move(name));
            if (is_op("(")) f->args = parse_call_args();
            input = std::move(f);
        } while (block_mode && is_op("|"));
        return input;
    }

    ExprPtr parse_test(ExprPtr input) {
        SourcePos p = next().pos;
        bool negated = skip_name("not");
        SourcePos name_pos = cur().pos;
        std::string name = expect_name();
        if (!find_test(name)) error(name_pos, fmt::format("unsupported test '{}'", name));
        auto t = std::make_unique<TestExpr>(p, std::move(input), std::move(name));
        t->negated = negated;
        if (is_op("(")) {
            t->args = parse_call_args();
        } else if ((cur().type == TokenType::Name || cur().type == TokenType::String ||
                    cur().type == TokenType::Integer || cur().type == TokenType::Float || is_op("(") || is_op("[") ||
                    is_op("{")) &&
                   !is_name("else") && !is_name("or") && !is_name("and")) {
            if (is_name("is")) error(cur().pos, "you cannot chain multiple tests with is");
            t->args.positional.push_back(parse_postfix(parse_primary()));
        }
        return t;
    }
};

}  // namespace

Body parse(const std::vector<Token>& tokens) { return Parser(tokens).parse_template(); }

}  // namespace flashmoe::jinja
