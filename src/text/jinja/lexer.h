// Jinja lexer: template source -> tokens, with whitespace control already applied to the text.
//
// Matches jinja2's lexer under the settings transformers uses for chat templates: trim_blocks=True
// (the first newline after a block or comment tag is dropped), lstrip_blocks=True (spaces and tabs
// before a block or comment tag at the start of a line are dropped), '-' on a tag side strips all
// whitespace on that side, '+' turns trim/lstrip off for that tag, newlines are normalised to "\n",
// and one trailing newline of the source is dropped (keep_trailing_newline=False). {% raw %} is
// handled here. Pure function; fails with Error(BadModel) naming line and column.
#pragma once

#include <string>
#include <string_view>
#include <vector>

namespace flashmoe::jinja {

struct SourcePos {
    int line = 1;
    int column = 1;
};

enum class TokenType {
    Text,        // literal template data, already whitespace-controlled
    VarBegin,    // {{
    VarEnd,      // }}
    BlockBegin,  // {%
    BlockEnd,    // %}
    Name,
    String,      // value holds the unescaped string
    Integer,
    Float,
    Operator,    // value holds the operator text: + - * / // % ** ~ == != < > <= >= = ( ) [ ] { } , . : |
    End,
};

struct Token {
    TokenType type;
    std::string value;
    SourcePos pos;
};

struct LexOptions {
    bool trim_blocks = true;
    bool lstrip_blocks = true;
};

std::vector<Token> tokenize(std::string_view source, const LexOptions& options = {});

const char* token_type_name(TokenType type);

}  // namespace flashmoe::jinja
