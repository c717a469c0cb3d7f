// Jinja parser: tokens -> syntax tree (ast.h), following jinja2's grammar and operator precedence.
//
// Unsupported constructs ({% include %}, {% call %}, recursive loops, *args, unknown filters or
// tests, ...) are rejected here, so a template that parses is one we can render faithfully.
// Pure function; fails with Error(BadModel) naming the construct, line and column.
#pragma once

#include "text/jinja/ast.h"

#include <vector>

namespace flashmoe::jinja {

Body parse(const std::vector<Token>& tokens);

}  // namespace flashmoe::jinja
