#include "text/jinja/lexer.h"

#include "text/jinja/pystr.h"
#include "util/error.h"

#include <algorithm>
#include <array>

namespace flashmoe::jinja {

const char* token_type_name(TokenType type) {
    switch (type) {
        case TokenType::Text: return "text";
        case TokenType::VarBegin: return "'{{'";
        case TokenType::VarEnd: return "'}}'";
        case TokenType::BlockBegin: return "'{%'";
        case TokenType::BlockEnd: return "'%}'";
        case TokenType::Name: return "name";
        case TokenType::String: return "string";
        case TokenType::Integer: return "integer";
        case TokenType::Float: return "float";
        case TokenType::Operator: return "operator";
        case TokenType::End: return "end of template";
    }
    return "?";
}

namespace {

class Lexer {
public:
    Lexer(std::string source, const LexOptions& options) : src_(std::move(source)), opt_(options) {
        line_starts_.push_back(0);
        for (size_t i = 0; i < src_.size(); ++i) {
            if (src_[i] == '\n') line_starts_.push_back(i + 1);
        }
    }

    std::vector<Token> run() {
        size_t pos = 0;
        bool line_starting = true;  // jinja2: did the previous match end with a newline?
        while (pos < src_.size()) {
            size_t open = find_tag(pos);
            if (open == std::string::npos) {
                emit_text(src_.substr(pos), pos);
                break;
            }
            std::string text = src_.substr(pos, open - pos);
            char kind = src_[open + 1];  // '{', '%' or '#'
            char sign = open + 2 < src_.size() ? src_[open + 2] : '\0';
            if (sign != '-' && sign != '+') sign = '\0';
            if (sign == '-') {
                text = rstrip_ws(text);
            } else if (sign != '+' && opt_.lstrip_blocks && kind != '{') {
                size_t l_pos = text.rfind('\n');
                l_pos = l_pos == std::string::npos ? 0 : l_pos + 1;
                if ((l_pos > 0 || line_starting) && l_pos < text.size() &&
                    std::all_of(text.begin() + static_cast<std::ptrdiff_t>(l_pos), text.end(),
                                [](char c) { return c == ' ' || c == '\t' || c == '\r' || c == '\f' || c == '\v'; })) {
                    text.resize(l_pos);
                }
            }
            emit_text(std::move(text), pos);
            size_t body = open + 2 + (sign ? 1 : 0);
            if (kind == '#') {
                pos = lex_comment(open, body);
            } else if (kind == '%' && is_raw_begin(body)) {
                pos = lex_raw(body);
            } else {
                pos = lex_tag(open, body, kind == '%');
            }
            line_starting = pos > 0 && src_[pos - 1] == '\n';
        }
        tokens_.push_back(Token{TokenType::End, "", pos_of(src_.size())});
        return std::move(tokens_);
    }

private:
    std::string src_;
    LexOptions opt_;
    std::vector<size_t> line_starts_;
    std::vector<Token> tokens_;

    SourcePos pos_of(size_t offset) const {
        auto it = std::upper_bound(line_starts_.begin(), line_starts_.end(), offset);
        size_t line = static_cast<size_t>(it - line_starts_.begin());
        size_t start = line_starts_[line - 1];
        int column = 1 + static_cast<int>(pystr::length(std::string_view(src_).substr(start, offset - start)));
        return SourcePos{static_cast<int>(line), column};
    }

    [[noreturn]] void error(size_t offset, const std::string& message) const {
        SourcePos p = pos_of(offset);
        fail(ErrorKind::BadModel, "chat template syntax error at line {}, column {}: {}", p.line, p.column, message);
    }

    size_t find_tag(size_t from) const {
        for (size_t i = src_.find('{', from); i != std::string::npos; i = src_.find('{', i + 1)) {
            if (i + 1 < src_.size() && (src_[i + 1] == '{' || src_[i + 1] == '%' || src_[i + 1] == '#')) return i;
        }
        return std::string::npos;
    }

    void emit_text(std::string text, size_t offset) {
        if (!text.empty()) tokens_.push_back(Token{TokenType::Text, std::move(text), pos_of(offset)});
    }

    static std::string rstrip_ws(const std::string& s) { return pystr::strip(s, std::nullopt, false, true); }

    // After a '-' closing sign: skip all following whitespace (Python's \s).
    size_t skip_ws_after(size_t pos) const {
        std::string_view rest = std::string_view(src_).substr(pos);
        std::string stripped = pystr::strip(rest, std::nullopt, true, false);
        return pos + (rest.size() - stripped.size());
    }

    size_t after_trim(size_t pos) const {
        if (opt_.trim_blocks && pos < src_.size() && src_[pos] == '\n') return pos + 1;
        return pos;
    }

    size_t lex_comment(size_t open, size_t body) {
        size_t close = src_.find("#}", body);
        if (close == std::string::npos) error(open, "unclosed comment '{#'");
        char sign = close > body ? src_[close - 1] : '\0';
        size_t pos = close + 2;
        if (sign == '-') return skip_ws_after(pos);
        if (sign == '+') return pos;
        return after_trim(pos);
    }

    size_t skip_spaces(size_t i) const {
        while (i < src_.size() && (src_[i] == ' ' || src_[i] == '\t' || src_[i] == '\n' || src_[i] == '\r')) ++i;
        return i;
    }

    bool is_raw_begin(size_t body) const {
        size_t i = skip_spaces(body);
        if (src_.compare(i, 3, "raw") != 0) return false;
        i = skip_spaces(i + 3);
        return src_.compare(i, 2, "%}") == 0 || src_.compare(i, 3, "-%}") == 0;
    }

    size_t lex_raw(size_t body) {
        size_t i = skip_spaces(skip_spaces(body) + 3);
        size_t start = src_[i] == '-' ? skip_ws_after(i + 3) : i + 2;  // no trim_blocks after raw, as jinja2
        for (size_t open = src_.find("{%", start); open != std::string::npos; open = src_.find("{%", open + 2)) {
            size_t j = open + 2;
            char sign = src_[j] == '-' || src_[j] == '+' ? src_[j++] : '\0';
            j = skip_spaces(j);
            if (src_.compare(j, 6, "endraw") != 0) continue;
            j = skip_spaces(j + 6);
            char end_sign = src_[j] == '-' || src_[j] == '+' ? src_[j++] : '\0';
            if (src_.compare(j, 2, "%}") != 0) continue;
            std::string text = src_.substr(start, open - start);
            if (sign == '-') text = rstrip_ws(text);
            emit_text(std::move(text), start);
            j += 2;
            if (end_sign == '-') return skip_ws_after(j);
            if (end_sign == '+') return j;
            return after_trim(j);
        }
        error(body, "missing '{% endraw %}'");
    }

    size_t lex_tag(size_t open, size_t i, bool block) {
        tokens_.push_back(Token{block ? TokenType::BlockBegin : TokenType::VarBegin, "", pos_of(open)});
        int depth = 0;
        while (true) {
            i = skip_spaces(i);
            if (i >= src_.size()) error(open, block ? "unclosed tag '{%'" : "unclosed expression '{{'");
            if (depth == 0) {
                std::string_view rest = std::string_view(src_).substr(i);
                std::string_view end = block ? "%}" : "}}";
                char sign = (rest[0] == '-' || (block && rest[0] == '+')) ? rest[0] : '\0';
                if (rest.substr(sign ? 1 : 0, 2) == end) {
                    tokens_.push_back(Token{block ? TokenType::BlockEnd : TokenType::VarEnd, "", pos_of(i)});
                    size_t pos = i + (sign ? 3 : 2);
                    if (sign == '-') return skip_ws_after(pos);
                    if (sign == '+' || !block) return pos;
                    return after_trim(pos);
                }
            }
            i = lex_token(i, depth);
        }
    }

    size_t lex_token(size_t i, int& depth) {
        char c = src_[i];
        SourcePos p = pos_of(i);
        auto is_digit = [&](size_t k) { return k < src_.size() && src_[k] >= '0' && src_[k] <= '9'; };
        if (std::isalpha(static_cast<unsigned char>(c)) || c == '_') {
            size_t j = i;
            while (j < src_.size() && (std::isalnum(static_cast<unsigned char>(src_[j])) || src_[j] == '_')) ++j;
            tokens_.push_back(Token{TokenType::Name, src_.substr(i, j - i), p});
            return j;
        }
        if (is_digit(i)) {
            size_t j = i;
            auto digits = [&] { while (is_digit(j) || (src_[j] == '_' && is_digit(j + 1))) ++j; };
            digits();
            bool is_float = false;
            if (j < src_.size() && src_[j] == '.' && is_digit(j + 1)) {
                ++j;
                digits();
                is_float = true;
            }
            if (j < src_.size() && (src_[j] == 'e' || src_[j] == 'E')) {
                size_t k = j + 1;
                if (k < src_.size() && (src_[k] == '+' || src_[k] == '-')) ++k;
                if (is_digit(k)) {
                    j = k;
                    digits();
                    is_float = true;
                }
            }
            std::string text = src_.substr(i, j - i);
            text.erase(std::remove(text.begin(), text.end(), '_'), text.end());
            tokens_.push_back(Token{is_float ? TokenType::Float : TokenType::Integer, text, p});
            return j;
        }
        if (c == '\'' || c == '"') return lex_string(i);
        static constexpr std::array<std::string_view, 6> two = {"//", "**", "==", "!=", ">=", "<="};
        for (std::string_view op : two) {
            if (std::string_view(src_).substr(i, 2) == op) {
                tokens_.push_back(Token{TokenType::Operator, std::string(op), p});
                return i + 2;
            }
        }
        if (std::string_view("+-*/%~<>=()[]{},.:|").find(c) != std::string_view::npos) {
            if (c == '(' || c == '[' || c == '{') ++depth;
            if (c == ')' || c == ']' || c == '}') {
                if (depth == 0) error(i, fmt::format("unexpected '{}'", c));
                --depth;
            }
            tokens_.push_back(Token{TokenType::Operator, std::string(1, c), p});
            return i + 1;
        }
        error(i, fmt::format("unexpected character '{}'", c));
    }

    size_t lex_string(size_t i) {
        char quote = src_[i];
        std::string out;
        size_t j = i + 1;
        auto hex = [&](size_t at, int n) {
            if (at + static_cast<size_t>(n) > src_.size()) error(at, "truncated escape in string literal");
            char32_t v = 0;
            for (int k = 0; k < n; ++k) {
                char h = src_[at + static_cast<size_t>(k)];
                int d = std::isdigit(static_cast<unsigned char>(h)) ? h - '0'
                        : (h >= 'a' && h <= 'f') ? h - 'a' + 10 : (h >= 'A' && h <= 'F') ? h - 'A' + 10 : -1;
                if (d < 0) error(at, "invalid hex escape in string literal");
                v = v * 16 + static_cast<char32_t>(d);
            }
            return v;
        };
        while (true) {
            if (j >= src_.size()) error(i, "unterminated string literal");
            char c = src_[j];
            if (c == quote) break;
            if (c != '\\') { out += c; ++j; continue; }
            if (j + 1 >= src_.size()) error(i, "unterminated string literal");
            char e = src_[j + 1];
            j += 2;
            switch (e) {  // Python's unicode-escape, which jinja2 applies to literals
                case 'n': out += '\n'; break;
                case 't': out += '\t'; break;
                case 'r': out += '\r'; break;
                case '\\': out += '\\'; break;
                case '\'': out += '\''; break;
                case '"': out += '"'; break;
                case 'a': out += '\a'; break;
                case 'b': out += '\b'; break;
                case 'f': out += '\f'; break;
                case 'v': out += '\v'; break;
                case '\n': break;  // line continuation
                case 'x': pystr::append_utf8(out, hex(j, 2)); j += 2; break;
                case 'u': pystr::append_utf8(out, hex(j, 4)); j += 4; break;
                case 'U': pystr::append_utf8(out, hex(j, 8)); j += 8; break;
                case 'N': error(j - 2, "\\N{...} escapes are not supported");
                default:
                    if (e >= '0' && e <= '7') {
                        char32_t v = static_cast<char32_t>(e - '0');
                        for (int k = 0; k < 2 && j < src_.size() && src_[j] >= '0' && src_[j] <= '7'; ++k, ++j) {
                            v = v * 8 + static_cast<char32_t>(src_[j] - '0');
                        }
                        pystr::append_utf8(out, v);
                    } else {
                        out += '\\';  // unknown escapes stay as written
                        out += e;
                    }
            }
        }
        tokens_.push_back(Token{TokenType::String, std::move(out), pos_of(i)});
        return j + 1;
    }
};

std::string normalize_source(std::string_view source) {
    std::string s;
    s.reserve(source.size());
    for (size_t i = 0; i < source.size(); ++i) {
        if (source[i] == '\r') {
            s += '\n';
            if (i + 1 < source.size() && source[i + 1] == '\n') ++i;
        } else {
            s += source[i];
        }
    }
    if (!s.empty() && s.back() == '\n') s.pop_back();  // keep_trailing_newline=False
    return s;
}

}  // namespace

std::vector<Token> tokenize(std::string_view source, const LexOptions& options) {
    return Lexer(normalize_source(source), options).run();
}

}  // namespace flashmoe::jinja
