#include "text/tokenizer_split.h"

#include "text/utf8.h"
#include "util/error.h"

#define PCRE2_CODE_UNIT_WIDTH 8
#include <pcre2.h>

#include <algorithm>

namespace flashmoe::text {

// ---- Oniguruma pattern translation ----

std::string translate_onig_pattern(std::string_view pattern) {
    static constexpr std::string_view kSpace = "\\t-\\r\\x{85}\\p{Z}";
    static constexpr std::string_view kHex = "0-9a-fA-F";
    std::string out;
    out.reserve(pattern.size() + 32);
    int class_depth = 0;
    for (size_t i = 0; i < pattern.size(); ++i) {
        const char c = pattern[i];
        if (c == '\\' && i + 1 < pattern.size()) {
            const char e = pattern[++i];
            const bool in_class = class_depth > 0;
            if (e == 's' || e == 'h') {
                const std::string_view set = e == 's' ? kSpace : kHex;
                if (in_class) {
                    out.append(set);
                } else {
                    out.append("[").append(set).append("]");
                }
            } else if ((e == 'S' || e == 'H') && !in_class) {
                out.append("[^").append(e == 'S' ? kSpace : kHex).append("]");
            } else if (e == 'H' && in_class) {
                out.append("\\x{0}-/:-@G-`g-\\x{10FFFF}");  // everything but 0-9, A-F, a-f
            } else {
                out.push_back('\\');
                out.push_back(e);
            }
            continue;
        }
        if (c == '[') {
            ++class_depth;
            out.push_back(c);
            // A ']' right after '[' or '[^' is a literal member, not the end of the class.
            if (i + 1 < pattern.size() && pattern[i + 1] == '^') out.push_back(pattern[++i]);
            if (i + 1 < pattern.size() && pattern[i + 1] == ']') out.push_back(pattern[++i]);
            continue;
        }
        if (c == ']' && class_depth > 0) --class_depth;
        out.push_back(c);
    }
    return out;
}

// ---- PCRE2 regex ----

namespace {
std::string pcre2_message(int code) {
    PCRE2_UCHAR buffer[256];
    pcre2_get_error_message(code, buffer, sizeof(buffer));
    return reinterpret_cast<const char*>(buffer);
}
}  // namespace

RegexSplitter::RegexSplitter(const std::string& pattern, std::string_view what) {
    int error = 0;
    PCRE2_SIZE offset = 0;
    code_ = pcre2_compile(reinterpret_cast<PCRE2_SPTR>(pattern.data()), pattern.size(), PCRE2_UTF | PCRE2_UCP,
                          &error, &offset, nullptr);
    if (!code_) {
        fail(ErrorKind::BadModel, "{}: the regex does not compile (PCRE2: {} at offset {}): {}", what,
             pcre2_message(error), offset, pattern);
    }
    // Without JIT (some platforms) the interpreter gives the same matches, only slower.
    jit_ = pcre2_jit_compile(code_, PCRE2_JIT_COMPLETE) == 0;
}

RegexSplitter::~RegexSplitter() {
    if (code_) pcre2_code_free(code_);
}

RegexSplitter::RegexSplitter(RegexSplitter&& other) noexcept
    : code_(std::exchange(other.code_, nullptr)), jit_(other.jit_) {}

RegexSplitter& RegexSplitter::operator=(RegexSplitter&& other) noexcept {
    if (this != &other) {
        if (code_) pcre2_code_free(code_);
        code_ = std::exchange(other.code_, nullptr);
        jit_ = other.jit_;
    }
    return *this;
}

bool RegexSplitter::next_match(std::string_view text, size_t from, RegexScratch& scratch, size_t& begin,
                               size_t& end) const {
    const auto* subject = reinterpret_cast<PCRE2_SPTR>(text.data());
    // The text was validated as UTF-8 on entry to encode(), so PCRE2 need not check it again.
    const int rc = jit_ ? pcre2_jit_match(code_, subject, text.size(), from, 0, scratch.match_data_,
                                          scratch.context_)
                        : pcre2_match(code_, subject, text.size(), from, PCRE2_NO_UTF_CHECK,
                                      scratch.match_data_, scratch.context_);
    if (rc == PCRE2_ERROR_NOMATCH) return false;
    if (rc < 0) {
        fail(ErrorKind::Internal, "pre-tokenizer regex failed on a {}-byte text: {}", text.size(),
             pcre2_message(rc));
    }
    const PCRE2_SIZE* ovector = pcre2_get_ovector_pointer(scratch.match_data_);
    begin = ovector[0];
    end = ovector[1];
    return true;
}

RegexScratch::RegexScratch() {
    match_data_ = pcre2_match_data_create(1, nullptr);
    context_ = pcre2_match_context_create(nullptr);
    // Long whitespace runs backtrack deeply; a growable JIT stack keeps them from failing.
    jit_stack_ = pcre2_jit_stack_create(32 * 1024, 8 * 1024 * 1024, nullptr);
    if (!match_data_ || !context_ || !jit_stack_) {
        release();
        throw std::bad_alloc();
    }
    pcre2_jit_stack_assign(context_, nullptr, jit_stack_);
}

RegexScratch::~RegexScratch() { release(); }

void RegexScratch::release() {
    if (jit_stack_) pcre2_jit_stack_free(jit_stack_);
    if (context_) pcre2_match_context_free(context_);
    if (match_data_) pcre2_match_data_free(match_data_);
    jit_stack_ = nullptr;
    context_ = nullptr;
    match_data_ = nullptr;
}

// ---- added tokens ----

AddedTokenMatcher::AddedTokenMatcher(std::vector<const AddedToken*> tokens, std::vector<std::string> patterns)
    : tokens_(std::move(tokens)), patterns_(std::move(patterns)), by_first_byte_(256) {
    for (uint32_t i = 0; i < patterns_.size(); ++i) {
        if (patterns_[i].empty()) continue;
        const auto b = static_cast<unsigned char>(patterns_[i][0]);
        first_byte_[b] = true;
        by_first_byte_[b].push_back(i);
    }
    for (auto& list : by_first_byte_) {
        // Longest first so that the first hit at a position is the longest; ties keep file order.
        std::stable_sort(list.begin(), list.end(),
                         [&](uint32_t a, uint32_t b) { return patterns_[a].size() > patterns_[b].size(); });
    }
}

bool AddedTokenMatcher::find(std::string_view text, size_t from, Found& found) const {
    for (size_t p = from; p < text.size(); ++p) {
        const auto b = static_cast<unsigned char>(text[p]);
        if (!first_byte_[b]) continue;
        for (uint32_t index : by_first_byte_[b]) {
            const std::string& pat = patterns_[index];
            if (text.compare(p, pat.size(), pat) == 0) {
                found = Found{p, p + pat.size(), tokens_[index]};
                return true;
            }
        }
    }
    return false;
}

namespace {

// Unicode White_Space (what `\s` means to the regex crate HF uses for these flags).
bool is_white_space(uint32_t cp) {
    return (cp >= 0x09 && cp <= 0x0D) || cp == 0x20 || cp == 0x85 || cp == 0xA0 || cp == 0x1680 ||
           (cp >= 0x2000 && cp <= 0x200A) || cp == 0x2028 || cp == 0x2029 || cp == 0x202F || cp == 0x205F ||
           cp == 0x3000;
}

// Unicode `\w` of the regex crate: Alphabetic, marks, decimal digits, connector punctuation, joiners.
bool is_word_char(std::string_view ch) {
    static const RegexSplitter word("^[\\p{Alphabetic}\\p{M}\\p{Nd}\\p{Pc}\\x{200C}\\x{200D}]", "word class");
    thread_local RegexScratch scratch;
    size_t b = 0, e = 0;
    return word.next_match(ch, 0, scratch, b, e);
}

size_t char_start_before(std::string_view text, size_t pos) {
    size_t p = pos - 1;
    while (p > 0 && (static_cast<unsigned char>(text[p]) & 0xC0) == 0x80) --p;
    return p;
}

}  // namespace

bool AddedTokenMatcher::adjust(std::string_view text, size_t floor, Found& f) {
    const AddedToken& t = *f.token;
    if (t.single_word) {
        if (f.begin > 0) {
            const size_t s = char_start_before(text, f.begin);
            if (is_word_char(text.substr(s, f.begin - s))) return false;
        }
        if (f.end < text.size()) {
            size_t len = 0;
            utf8_decode_valid(text.data() + f.end, len);
            if (is_word_char(text.substr(f.end, len))) return false;
        }
    }
    if (t.lstrip) {
        size_t start = f.begin;
        while (start > 0) {
            const size_t s = char_start_before(text, start);
            size_t len = 0;
            if (!is_white_space(utf8_decode_valid(text.data() + s, len))) break;
            start = s;
        }
        f.begin = std::max(start, floor);
    }
    if (t.rstrip) {
        while (f.end < text.size()) {
            size_t len = 0;
            if (!is_white_space(utf8_decode_valid(text.data() + f.end, len))) break;
            f.end += len;
        }
    }
    return true;
}

}  // namespace flashmoe::text
