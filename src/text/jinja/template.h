// A parsed Jinja template: the entry point of the interpreter (lexer.h -> parser.h -> interpreter.h).
//
// Template::parse() checks the whole template up front (syntax, tags, filter and test names) and
// fails with Error(BadModel) naming the construct, line and column. The parsed tree is immutable:
// one Template may be rendered from any number of threads at once; each render builds its own
// scopes and output. Rendering fails with Error(BadInput) when the data is at fault (including the
// template's raise_exception, whose message is passed through unchanged) and Error(BadModel) for
// constructs found unsupported only at run time.
//
// Supported (jinja2 3.1 semantics, checked against jinja2 by tests/jinja): {{ }}, {% %}, {# #},
// whitespace control, raw; if/elif/else, for (unpacking, `if` filter, else, loop.*, break,
// continue), set (names, tuples, namespace attributes, block set), macro (defaults, keywords),
// with, filter blocks, transformers' {% generation %}; all operators, literals, slicing, ternaries;
// the filters and tests listed in filters.cpp; str/dict methods in methods.cpp; the globals
// raise_exception, namespace, range, dict, strftime_now.
// Rejected with a message: include/import/extends/block/call, recursive loops, *args/**kwargs,
// macro varargs/kwargs/caller, reading a method without calling it, printing a generator,
// str.format specs, case conversion of scripts without a mapping table (see pystr.h).
#pragma once

#include "text/jinja/ast.h"
#include "text/jinja/interpreter.h"

#include <nlohmann/json.hpp>

#include <memory>
#include <string>
#include <string_view>

namespace flashmoe::jinja {

class Template {
public:
    static Template parse(std::string_view source);

    // `variables` must be a JSON object; each member becomes a template variable. Key order is
    // kept (tojson and dict iteration print keys in the order given).
    std::string render(const nlohmann::ordered_json& variables, const RenderOptions& options = {}) const;

private:
    explicit Template(std::shared_ptr<const Body> body) : body_(std::move(body)) {}
    std::shared_ptr<const Body> body_;
};

}  // namespace flashmoe::jinja
