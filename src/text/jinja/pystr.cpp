#include "text/jinja/pystr.h"

#include "text/jinja/value.h"

#include <algorithm>

namespace flashmoe::jinja::pystr {

std::vector<char32_t> decode(std::string_view s) {
    std::vector<char32_t> out;
    out.reserve(s.size());
    size_t i = 0;
    while (i < s.size()) {
        auto c = static_cast<unsigned char>(s[i]);
        int n = c < 0x80 ? 1 : (c >> 5) == 0x6 ? 2 : (c >> 4) == 0xE ? 3 : (c >> 3) == 0x1E ? 4 : 0;
        if (n == 0 || i + n > s.size()) {
            eval_fail(ErrorKind::BadInput, "invalid UTF-8 in a string at byte {}", i);
        }
        char32_t cp = n == 1 ? c : n == 2 ? (c & 0x1F) : n == 3 ? (c & 0x0F) : (c & 0x07);
        for (int k = 1; k < n; ++k) {
            auto cc = static_cast<unsigned char>(s[i + k]);
            if ((cc & 0xC0) != 0x80) {
                eval_fail(ErrorKind::BadInput, "invalid UTF-8 in a string at byte {}", i);
            }
            cp = (cp << 6) | (cc & 0x3F);
        }
        out.push_back(cp);
        i += n;
    }
    return out;
}

void append_utf8(std::string& out, char32_t cp) {
    if (cp < 0x80) {
        out += static_cast<char>(cp);
    } else if (cp < 0x800) {
        out += static_cast<char>(0xC0 | (cp >> 6));
        out += static_cast<char>(0x80 | (cp & 0x3F));
    } else if (cp < 0x10000) {
        out += static_cast<char>(0xE0 | (cp >> 12));
        out += static_cast<char>(0x80 | ((cp >> 6) & 0x3F));
        out += static_cast<char>(0x80 | (cp & 0x3F));
    } else {
        out += static_cast<char>(0xF0 | (cp >> 18));
        out += static_cast<char>(0x80 | ((cp >> 12) & 0x3F));
        out += static_cast<char>(0x80 | ((cp >> 6) & 0x3F));
        out += static_cast<char>(0x80 | (cp & 0x3F));
    }
}

std::string encode(const std::vector<char32_t>& cps) {
    std::string out;
    out.reserve(cps.size());
    for (char32_t cp : cps) append_utf8(out, cp);
    return out;
}

size_t length(std::string_view s) {
    size_t n = 0;
    for (char c : s) n += (static_cast<unsigned char>(c) & 0xC0) != 0x80;
    return n;
}

bool is_space(char32_t cp) {
    // CPython's str.isspace(): bidirectional types WS, B, S or category Zs.
    return (cp >= 0x09 && cp <= 0x0D) || (cp >= 0x1C && cp <= 0x20) || cp == 0x85 || cp == 0xA0 ||
           cp == 0x1680 || (cp >= 0x2000 && cp <= 0x200A) || cp == 0x2028 || cp == 0x2029 || cp == 0x202F ||
           cp == 0x205F || cp == 0x3000;
}

std::string strip(std::string_view s, const std::optional<std::string>& chars, bool left, bool right) {
    bool ascii_ws = !chars && std::all_of(s.begin(), s.end(), [](char c) { return static_cast<unsigned char>(c) < 0x80; });
    if (ascii_ws) {  // fast path for the common case
        size_t b = 0, e = s.size();
        auto ws = [](char c) { return (c >= 0x09 && c <= 0x0D) || (c >= 0x1C && c <= 0x20); };
        if (left) while (b < e && ws(s[b])) ++b;
        if (right) while (e > b && ws(s[e - 1])) --e;
        return std::string(s.substr(b, e - b));
    }
    std::vector<char32_t> cps = decode(s);
    std::vector<char32_t> set;
    if (chars) set = decode(*chars);
    auto strippable = [&](char32_t cp) {
        return chars ? std::find(set.begin(), set.end(), cp) != set.end() : is_space(cp);
    };
    size_t b = 0, e = cps.size();
    if (left) while (b < e && strippable(cps[b])) ++b;
    if (right) while (e > b && strippable(cps[e - 1])) --e;
    return encode(std::vector<char32_t>(cps.begin() + b, cps.begin() + e));
}

std::vector<std::string> split(std::string_view s, const std::optional<std::string>& sep, int64_t maxsplit) {
    std::vector<std::string> out;
    if (sep) {
        if (sep->empty()) eval_fail(ErrorKind::BadInput, "split: empty separator");
        size_t pos = 0;
        while (maxsplit < 0 || static_cast<int64_t>(out.size()) < maxsplit) {
            size_t at = s.find(*sep, pos);
            if (at == std::string_view::npos) break;
            out.emplace_back(s.substr(pos, at - pos));
            pos = at + sep->size();
        }
        out.emplace_back(s.substr(pos));
        return out;
    }
    std::vector<char32_t> cps = decode(s);
    size_t i = 0, n = cps.size();
    while (true) {
        while (i < n && is_space(cps[i])) ++i;
        if (i == n) break;
        if (maxsplit >= 0 && static_cast<int64_t>(out.size()) == maxsplit) {
            size_t e = n;
            while (e > i && is_space(cps[e - 1])) --e;
            out.push_back(encode(std::vector<char32_t>(cps.begin() + i, cps.begin() + e)));
            break;
        }
        size_t j = i;
        while (j < n && !is_space(cps[j])) ++j;
        out.push_back(encode(std::vector<char32_t>(cps.begin() + i, cps.begin() + j)));
        i = j;
    }
    return out;
}

std::vector<std::string> rsplit(std::string_view s, const std::optional<std::string>& sep, int64_t maxsplit) {
    if (maxsplit < 0) return split(s, sep, maxsplit);
    std::vector<std::string> out;
    if (sep) {
        if (sep->empty()) eval_fail(ErrorKind::BadInput, "rsplit: empty separator");
        size_t end = s.size();
        while (static_cast<int64_t>(out.size()) < maxsplit) {
            if (end < sep->size()) break;
            size_t at = s.rfind(*sep, end - sep->size());
            if (at == std::string_view::npos) break;
            out.emplace_back(s.substr(at + sep->size(), end - at - sep->size()));
            end = at;
        }
        out.emplace_back(s.substr(0, end));
        std::reverse(out.begin(), out.end());
        return out;
    }
    std::vector<char32_t> cps = decode(s);
    size_t e = cps.size();
    while (true) {
        while (e > 0 && is_space(cps[e - 1])) --e;
        if (e == 0) break;
        if (static_cast<int64_t>(out.size()) == maxsplit) {
            size_t b = 0;
            while (b < e && is_space(cps[b])) ++b;
            out.push_back(encode(std::vector<char32_t>(cps.begin() + b, cps.begin() + e)));
            break;
        }
        size_t b = e;
        while (b > 0 && !is_space(cps[b - 1])) --b;
        out.push_back(encode(std::vector<char32_t>(cps.begin() + b, cps.begin() + e)));
        e = b;
    }
    std::reverse(out.begin(), out.end());
    return out;
}

std::vector<std::string> splitlines(std::string_view s) {
    std::vector<char32_t> cps = decode(s);
    std::vector<std::string> out;
    size_t b = 0, i = 0;
    while (i < cps.size()) {
        char32_t c = cps[i];
        bool brk = c == '\n' || c == '\r' || c == 0x0B || c == 0x0C || c == 0x1C || c == 0x1D || c == 0x1E ||
                   c == 0x85 || c == 0x2028 || c == 0x2029;
        if (!brk) { ++i; continue; }
        out.push_back(encode(std::vector<char32_t>(cps.begin() + b, cps.begin() + i)));
        i += (c == '\r' && i + 1 < cps.size() && cps[i + 1] == '\n') ? 2 : 1;
        b = i;
    }
    if (b < cps.size()) out.push_back(encode(std::vector<char32_t>(cps.begin() + b, cps.end())));
    return out;
}

std::string replace(std::string_view s, std::string_view from, std::string_view to, int64_t count) {
    std::string out;
    if (from.empty()) {  // Python inserts `to` between code points and at both ends
        std::vector<char32_t> cps = decode(s);
        int64_t done = 0;
        for (char32_t cp : cps) {
            if (count < 0 || done < count) { out += to; ++done; }
            append_utf8(out, cp);
        }
        if (count < 0 || done < count) out += to;
        return out;
    }
    size_t pos = 0;
    int64_t done = 0;
    while (count < 0 || done < count) {
        size_t at = s.find(from, pos);
        if (at == std::string_view::npos) break;
        out.append(s.substr(pos, at - pos));
        out.append(to);
        pos = at + from.size();
        ++done;
    }
    out.append(s.substr(pos));
    return out;
}

int64_t count(std::string_view s, std::string_view sub) {
    if (sub.empty()) return static_cast<int64_t>(length(s)) + 1;
    int64_t n = 0;
    for (size_t at = s.find(sub); at != std::string_view::npos; at = s.find(sub, at + sub.size())) ++n;
    return n;
}

int64_t find(std::string_view s, std::string_view sub) {
    size_t at = s.find(sub);
    return at == std::string_view::npos ? -1 : static_cast<int64_t>(length(s.substr(0, at)));
}

namespace {

[[noreturn]] void uncased(char32_t cp) {
    eval_fail(ErrorKind::BadInput, "case conversion of U+{:04X} is not supported", static_cast<uint32_t>(cp));
}

// Blocks with cased letters whose mappings we do not carry: converting them fails loudly.
bool in_unmapped_cased_block(char32_t c) {
    return (c >= 0x0180 && c <= 0x02AF) || c == 0x0345 || (c >= 0x0370 && c <= 0x0385) || c == 0x0390 ||
           c == 0x03B0 || (c >= 0x03CF && c <= 0x03FF) || (c >= 0x0530 && c <= 0x058F) ||
           (c >= 0x10A0 && c <= 0x10FF) || (c >= 0x13A0 && c <= 0x13FF) || (c >= 0x1C80 && c <= 0x1CBF) ||
           (c >= 0x1D00 && c <= 0x1DBF) || (c >= 0x1E96 && c <= 0x1E9D) || (c >= 0x1F00 && c <= 0x1FFF) ||
           (c >= 0x2100 && c <= 0x218F) || (c >= 0x24B6 && c <= 0x24E9) || (c >= 0x2C00 && c <= 0x2D2F) ||
           (c >= 0xA640 && c <= 0xA69F) || (c >= 0xA720 && c <= 0xA7FF) || (c >= 0xAB30 && c <= 0xABBF) ||
           (c >= 0xFB00 && c <= 0xFB17) || (c >= 0x10400 && c <= 0x104FF) || (c >= 0x10570 && c <= 0x105BF) ||
           (c >= 0x10C80 && c <= 0x10CFF) || (c >= 0x118A0 && c <= 0x118FF) || (c >= 0x16E40 && c <= 0x16E9F) ||
           (c >= 0x1E900 && c <= 0x1E95F);
}

// Pairs laid out as (upper, lower) alternating from an even or odd start.
bool in_pairs(char32_t c, char32_t first, char32_t last) { return c >= first && c <= last; }

void append_lower(std::string& out, char32_t c) {
    if (c < 0x80) { out += static_cast<char>(c >= 'A' && c <= 'Z' ? c + 32 : c); return; }
    char32_t r = c;
    if ((c >= 0xC0 && c <= 0xDE && c != 0xD7)) r = c + 0x20;
    else if (in_pairs(c, 0x100, 0x137) || in_pairs(c, 0x14A, 0x177) || in_pairs(c, 0x1E00, 0x1E95) ||
             in_pairs(c, 0x1EA0, 0x1EFF) || in_pairs(c, 0x460, 0x481) || in_pairs(c, 0x48A, 0x4BF) ||
             in_pairs(c, 0x4D0, 0x52F)) r = (c % 2 == 0) ? c + 1 : c;
    else if (in_pairs(c, 0x139, 0x148) || in_pairs(c, 0x179, 0x17E) || in_pairs(c, 0x4C1, 0x4CE)) r = (c % 2 == 1) ? c + 1 : c;
    else if (c == 0x130) { out += "i\xCC\x87"; return; }
    else if (c == 0x178) r = 0xFF;
    else if (c == 0x1E9E) r = 0xDF;
    else if (c == 0x3A3) uncased(c);  // final-sigma rule depends on context
    else if (c >= 0x391 && c <= 0x3AB) r = c + 0x20;
    else if (c == 0x386) r = 0x3AC;
    else if (c >= 0x388 && c <= 0x38A) r = c + 0x25;
    else if (c == 0x38C) r = 0x3CC;
    else if (c == 0x38E || c == 0x38F) r = c + 0x3F;
    else if (c >= 0x410 && c <= 0x42F) r = c + 0x20;
    else if (c >= 0x400 && c <= 0x40F) r = c + 0x50;
    else if (c == 0x4C0) r = 0x4CF;
    else if (c >= 0xFF21 && c <= 0xFF3A) r = c + 0x20;
    else if (in_unmapped_cased_block(c)) uncased(c);
    append_utf8(out, r);
}

void append_upper(std::string& out, char32_t c) {
    if (c < 0x80) { out += static_cast<char>(c >= 'a' && c <= 'z' ? c - 32 : c); return; }
    char32_t r = c;
    if (c >= 0xE0 && c <= 0xFE && c != 0xF7) r = c - 0x20;
    else if (c == 0xDF) { out += "SS"; return; }
    else if (c == 0xFF) r = 0x178;
    else if (c == 0xB5) r = 0x39C;
    else if (c == 0x131) r = 'I';
    else if (c == 0x17F) r = 'S';
    else if (c == 0x149) { out += "\xCA\xBCN"; return; }
    else if (in_pairs(c, 0x100, 0x137) || in_pairs(c, 0x14A, 0x177) || in_pairs(c, 0x1E00, 0x1E95) ||
             in_pairs(c, 0x1EA0, 0x1EFF) || in_pairs(c, 0x460, 0x481) || in_pairs(c, 0x48A, 0x4BF) ||
             in_pairs(c, 0x4D0, 0x52F)) r = (c % 2 == 1) ? c - 1 : c;
    else if (in_pairs(c, 0x139, 0x148) || in_pairs(c, 0x179, 0x17E) || in_pairs(c, 0x4C1, 0x4CE)) r = (c % 2 == 0) ? c - 1 : c;
    else if (c == 0x3C2) r = 0x3A3;
    else if (c >= 0x3B1 && c <= 0x3CB) r = c - 0x20;
    else if (c == 0x3AC) r = 0x386;
    else if (c >= 0x3AD && c <= 0x3AF) r = c - 0x25;
    else if (c == 0x3CC) r = 0x38C;
    else if (c == 0x3CD || c == 0x3CE) r = c - 0x3F;
    else if (c >= 0x430 && c <= 0x44F) r = c - 0x20;
    else if (c >= 0x450 && c <= 0x45F) r = c - 0x50;
    else if (c == 0x4CF) r = 0x4C0;
    else if (c >= 0xFF41 && c <= 0xFF5A) r = c - 0x20;
    else if (in_unmapped_cased_block(c)) uncased(c);
    append_utf8(out, r);
}

}  // namespace

std::string upper(std::string_view s) {
    std::string out;
    out.reserve(s.size());
    for (char32_t c : decode(s)) append_upper(out, c);
    return out;
}

std::string lower(std::string_view s) {
    std::string out;
    out.reserve(s.size());
    for (char32_t c : decode(s)) append_lower(out, c);
    return out;
}

std::string capitalize(std::string_view s) {
    std::vector<char32_t> cps = decode(s);
    std::string out;
    for (size_t i = 0; i < cps.size(); ++i) {
        if (i > 0) append_lower(out, cps[i]);
        else if (cps[i] == 0xDF) out += "Ss";  // title case, not upper case, since Python 3.8
        else append_upper(out, cps[i]);
    }
    return out;
}

std::string title(std::string_view s) {
    // Jinja splits on runs of [-\s({\[<]; each piece gets piece[0].upper() + piece[1:].lower().
    std::vector<char32_t> cps = decode(s);
    auto is_sep = [](char32_t c) { return c == '-' || c == '(' || c == '{' || c == '[' || c == '<' || is_space(c); };
    std::string out;
    size_t i = 0;
    while (i < cps.size()) {
        size_t j = i;
        bool sep = is_sep(cps[i]);
        while (j < cps.size() && is_sep(cps[j]) == sep) ++j;
        for (size_t k = i; k < j; ++k) {
            if (k == i) append_upper(out, cps[k]);
            else append_lower(out, cps[k]);
        }
        i = j;
    }
    return out;
}

std::string slice(std::string_view s, std::optional<int64_t> start, std::optional<int64_t> stop, int64_t step) {
    std::vector<char32_t> cps = decode(s);
    auto n = static_cast<int64_t>(cps.size());
    std::vector<char32_t> out;
    // Python's slice.indices()
    auto clamp = [&](std::optional<int64_t> v, int64_t dflt, int64_t lo, int64_t hi) {
        if (!v) return dflt;
        int64_t x = *v < 0 ? *v + n : *v;
        return std::clamp(x, lo, hi);
    };
    if (step > 0) {
        int64_t b = clamp(start, 0, 0, n), e = clamp(stop, n, 0, n);
        for (int64_t i = b; i < e; i += step) out.push_back(cps[i]);
    } else {
        int64_t b = clamp(start, n - 1, -1, n - 1), e = clamp(stop, -1, -1, n - 1);
        for (int64_t i = b; i > e; i += step) out.push_back(cps[i]);
    }
    return encode(out);
}

}  // namespace flashmoe::jinja::pystr
