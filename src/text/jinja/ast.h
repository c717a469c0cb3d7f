// The syntax tree of a parsed template. Built once by the parser, owned by jinja::Template through
// unique_ptrs, and never modified afterwards, so any number of renders may walk it concurrently.
#pragma once

#include "text/jinja/lexer.h"
#include "text/jinja/value.h"

#include <memory>
#include <optional>
#include <string>
#include <vector>

namespace flashmoe::jinja {

struct Expr {
    enum class Kind { Literal, Name, List, Tuple, Dict, GetAttr, GetItem, Slice, Call, Filter, Test, Unary, Binary, Compare, Cond };
    Kind kind;
    SourcePos pos;
    Expr(Kind k, SourcePos p) : kind(k), pos(p) {}
    virtual ~Expr() = default;
};
using ExprPtr = std::unique_ptr<Expr>;

struct Args {
    std::vector<ExprPtr> positional;
    std::vector<std::pair<std::string, ExprPtr>> named;
};

struct LiteralExpr : Expr {
    Value value;
    LiteralExpr(SourcePos p, Value v) : Expr(Kind::Literal, p), value(std::move(v)) {}
};

struct NameExpr : Expr {
    std::string name;
    NameExpr(SourcePos p, std::string n) : Expr(Kind::Name, p), name(std::move(n)) {}
};

struct ListExpr : Expr {  // also tuples (Kind::Tuple)
    std::vector<ExprPtr> items;
    ListExpr(Kind k, SourcePos p) : Expr(k, p) {}
};

struct DictExpr : Expr {
    std::vector<std::pair<ExprPtr, ExprPtr>> items;
    explicit DictExpr(SourcePos p) : Expr(Kind::Dict, p) {}
};

struct GetAttrExpr : Expr {  // obj.name
    ExprPtr object;
    std::string name;
    GetAttrExpr(SourcePos p, ExprPtr o, std::string n) : Expr(Kind::GetAttr, p), object(std::move(o)), name(std::move(n)) {}
};

struct GetItemExpr : Expr {  // obj[index]
    ExprPtr object, index;
    GetItemExpr(SourcePos p, ExprPtr o, ExprPtr i) : Expr(Kind::GetItem, p), object(std::move(o)), index(std::move(i)) {}
};

struct SliceExpr : Expr {  // obj[start:stop:step], each part optional
    ExprPtr object, start, stop, step;
    SliceExpr(SourcePos p, ExprPtr o) : Expr(Kind::Slice, p), object(std::move(o)) {}
};

struct CallExpr : Expr {
    ExprPtr callee;
    Args args;
    CallExpr(SourcePos p, ExprPtr c) : Expr(Kind::Call, p), callee(std::move(c)) {}
};

struct FilterExpr : Expr {  // input | name(args); input is null inside {% filter %} blocks
    ExprPtr input;
    std::string name;
    Args args;
    FilterExpr(SourcePos p, ExprPtr i, std::string n) : Expr(Kind::Filter, p), input(std::move(i)), name(std::move(n)) {}
};

struct TestExpr : Expr {  // input is [not] name(args)
    ExprPtr input;
    std::string name;
    Args args;
    bool negated = false;
    TestExpr(SourcePos p, ExprPtr i, std::string n) : Expr(Kind::Test, p), input(std::move(i)), name(std::move(n)) {}
};

struct UnaryExpr : Expr {  // op: "not", "-", "+"
    std::string op;
    ExprPtr operand;
    UnaryExpr(SourcePos p, std::string o, ExprPtr e) : Expr(Kind::Unary, p), op(std::move(o)), operand(std::move(e)) {}
};

struct BinaryExpr : Expr {  // op: and or + - * / // % ** ~
    std::string op;
    ExprPtr left, right;
    BinaryExpr(SourcePos p, std::string o, ExprPtr l, ExprPtr r)
        : Expr(Kind::Binary, p), op(std::move(o)), left(std::move(l)), right(std::move(r)) {}
};

struct CompareExpr : Expr {  // first op1 e1 op2 e2 ...: ops == != < > <= >= in notin
    ExprPtr first;
    std::vector<std::pair<std::string, ExprPtr>> rest;
    CompareExpr(SourcePos p, ExprPtr f) : Expr(Kind::Compare, p), first(std::move(f)) {}
};

struct CondExpr : Expr {  // then if cond else otherwise (otherwise may be null: undefined)
    ExprPtr cond, then, otherwise;
    explicit CondExpr(SourcePos p) : Expr(Kind::Cond, p) {}
};

struct Stmt {
    enum class Kind { Text, Output, If, For, Set, SetBlock, Macro, FilterBlock, With, Break, Continue, Block };
    Kind kind;
    SourcePos pos;
    Stmt(Kind k, SourcePos p) : kind(k), pos(p) {}
    virtual ~Stmt() = default;
};
using StmtPtr = std::unique_ptr<Stmt>;
using Body = std::vector<StmtPtr>;

struct TextStmt : Stmt {
    std::string text;
    TextStmt(SourcePos p, std::string t) : Stmt(Kind::Text, p), text(std::move(t)) {}
};

struct OutputStmt : Stmt {
    ExprPtr expr;
    OutputStmt(SourcePos p, ExprPtr e) : Stmt(Kind::Output, p), expr(std::move(e)) {}
};

struct IfStmt : Stmt {
    std::vector<std::pair<ExprPtr, Body>> branches;  // if, elif...
    Body otherwise;
    explicit IfStmt(SourcePos p) : Stmt(Kind::If, p) {}
};

struct ForStmt : Stmt {
    std::vector<std::string> targets;  // one name, or several to unpack
    ExprPtr iterable, filter;          // filter: `for x in xs if cond`, may be null
    Body body, otherwise;
    explicit ForStmt(SourcePos p) : Stmt(Kind::For, p) {}
};

struct SetStmt : Stmt {
    std::vector<std::string> targets;  // one name, or several to unpack
    std::string attribute;             // non-empty: `set ns.attribute = ...` (targets has ns)
    ExprPtr value;
    explicit SetStmt(SourcePos p) : Stmt(Kind::Set, p) {}
};

struct SetBlockStmt : Stmt {  // {% set name | filters %}body{% endset %}
    std::string target;
    ExprPtr filter;  // FilterExpr chain whose innermost input is null, or null
    Body body;
    explicit SetBlockStmt(SourcePos p) : Stmt(Kind::SetBlock, p) {}
};

struct MacroStmt : Stmt {
    std::string name;
    std::vector<std::pair<std::string, ExprPtr>> params;  // default may be null
    Body body;
    explicit MacroStmt(SourcePos p) : Stmt(Kind::Macro, p) {}
};

struct FilterBlockStmt : Stmt {
    ExprPtr filter;  // FilterExpr chain whose innermost input is null
    Body body;
    explicit FilterBlockStmt(SourcePos p) : Stmt(Kind::FilterBlock, p) {}
};

struct WithStmt : Stmt {
    std::vector<std::pair<std::string, ExprPtr>> assignments;
    Body body;
    explicit WithStmt(SourcePos p) : Stmt(Kind::With, p) {}
};

struct BlockStmt : Stmt {  // a body without a scope of its own: {% generation %}
    Body body;
    explicit BlockStmt(SourcePos p) : Stmt(Kind::Block, p) {}
};

struct LoopControlStmt : Stmt {  // break / continue
    LoopControlStmt(Kind k, SourcePos p) : Stmt(k, p) {}
};

}  // namespace flashmoe::jinja
