// Python str semantics over UTF-8 std::string: what str.strip(), str.split(), len(), slicing and the
// case methods do in CPython, so that templates render byte-for-byte what transformers renders.
//
// Strings are sequences of code points (not bytes) for len, indexing and slicing. Whitespace is
// Python's str.isspace() set. Case mapping covers the scripts whose simple mappings we carry
// (ASCII, Latin-1, Latin Extended-A, Latin Extended Additional, Greek, Cyrillic); a cased letter
// outside them throws EvalError instead of being left unchanged, so no prompt is rendered wrong.
// All functions are pure and thread-safe. Invalid UTF-8 throws EvalError (BadInput).
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace flashmoe::jinja::pystr {

std::vector<char32_t> decode(std::string_view s);
std::string encode(const std::vector<char32_t>& cps);
void append_utf8(std::string& out, char32_t cp);
size_t length(std::string_view s);  // in code points

bool is_space(char32_t cp);

// chars == nullopt: Python whitespace; otherwise any code point in *chars.
std::string strip(std::string_view s, const std::optional<std::string>& chars, bool left, bool right);

// sep == nullopt: split on whitespace runs, dropping empty pieces. maxsplit < 0: no limit.
std::vector<std::string> split(std::string_view s, const std::optional<std::string>& sep, int64_t maxsplit);
std::vector<std::string> rsplit(std::string_view s, const std::optional<std::string>& sep, int64_t maxsplit);
std::vector<std::string> splitlines(std::string_view s);

// count < 0: replace all.
std::string replace(std::string_view s, std::string_view from, std::string_view to, int64_t count);
int64_t count(std::string_view s, std::string_view sub);
int64_t find(std::string_view s, std::string_view sub);  // in code points, -1 if absent

std::string upper(std::string_view s);
std::string lower(std::string_view s);
std::string capitalize(std::string_view s);
std::string title(std::string_view s);  // Jinja's title filter: words start after space, -, (, { ...

// s[start:stop:step] in code points; missing bounds are nullopt. step must be non-zero.
std::string slice(std::string_view s, std::optional<int64_t> start, std::optional<int64_t> stop, int64_t step);

}  // namespace flashmoe::jinja::pystr
