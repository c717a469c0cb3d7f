// Splitting steps of the tokenizer that run before BPE:
//  - RegexSplitter: a `Split` pre-tokenizer (behavior Isolated) whose pattern is compiled by PCRE2 in
//    UTF + UCP mode with JIT. Patterns in tokenizer.json are written for Oniguruma (what HF tokenizers
//    uses); translate_onig_pattern() rewrites the few constructs whose meaning differs.
//  - AddedTokenMatcher: finds added tokens in text, leftmost-longest, honouring each token's
//    single_word / lstrip / rstrip flags as HF's AddedVocabulary does.
// Both are immutable after construction and thread-safe; matching state (PCRE2 match data) lives in a
// RegexScratch that each thread owns. Construction failures are flashmoe::Error(BadModel) naming the
// pattern; matching throws only on a PCRE2 resource failure (Error Internal).
#pragma once

#include "text/tokenizer.h"
#include "text/tokenizer_bpe.h"

#include <algorithm>
#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

struct pcre2_real_code_8;
struct pcre2_real_match_data_8;
struct pcre2_real_match_context_8;
struct pcre2_real_jit_stack_8;

namespace flashmoe::text {

// Oniguruma -> PCRE2. Oniguruma's `\s` is [\t-\r\x{85}\p{Z}] while PCRE2's (UCP) also matches
// U+180E, and Oniguruma's `\h` is a hex digit, PCRE2's horizontal space; both are spelled out.
// (`\S` inside a bracket class cannot be spelled out and keeps PCRE2's meaning.)
std::string translate_onig_pattern(std::string_view pattern);

class RegexScratch;

class RegexSplitter {
public:
    // `pattern` is in PCRE2 syntax already (see translate_onig_pattern); `what` names it in errors.
    RegexSplitter(const std::string& pattern, std::string_view what);
    ~RegexSplitter();
    RegexSplitter(RegexSplitter&&) noexcept;
    RegexSplitter& operator=(RegexSplitter&&) noexcept;

    // Calls `piece(begin, end)` for every match and every gap between matches, in order, covering
    // all of `text` (which must be valid UTF-8). Empty matches are skipped.
    template <typename F>
    void split(std::string_view text, RegexScratch& scratch, F&& piece) const;

    // One match at or after `from`: sets [begin, end) and returns true, or returns false.
    bool next_match(std::string_view text, size_t from, RegexScratch& scratch, size_t& begin,
                    size_t& end) const;

private:
    pcre2_real_code_8* code_ = nullptr;
    bool jit_ = false;
};

// Per-thread PCRE2 matching state.
class RegexScratch {
public:
    RegexScratch();
    ~RegexScratch();
    RegexScratch(const RegexScratch&) = delete;
    RegexScratch& operator=(const RegexScratch&) = delete;

private:
    friend class RegexSplitter;
    void release();
    pcre2_real_match_data_8* match_data_ = nullptr;
    pcre2_real_match_context_8* context_ = nullptr;
    pcre2_real_jit_stack_8* jit_stack_ = nullptr;
};

template <typename F>
void RegexSplitter::split(std::string_view text, RegexScratch& scratch, F&& piece) const {
    size_t pos = 0, gap = 0;
    size_t begin = 0, end = 0;
    while (pos < text.size() && next_match(text, pos, scratch, begin, end)) {
        if (end == begin) {
            // Empty match: step over one character, which stays part of the gap.
            size_t len = 1;
            while (begin + len < text.size() && (static_cast<unsigned char>(text[begin + len]) & 0xC0) == 0x80) ++len;
            pos = begin + len;
            continue;
        }
        if (begin > gap) piece(gap, begin);
        piece(begin, end);
        pos = gap = end;
    }
    if (gap < text.size()) piece(gap, text.size());
}

using flashmoe::AddedToken;

class AddedTokenMatcher {
public:
    AddedTokenMatcher() = default;
    // `patterns[i]` is what to look for (the content, normalised when the token is `normalized`)
    // for `tokens[i]`.
    AddedTokenMatcher(std::vector<const AddedToken*> tokens, std::vector<std::string> patterns);

    bool empty() const { return tokens_.empty(); }

    // Calls `on_text(begin, end)` for text between tokens and `on_token(token)` for each match, in
    // order, covering `text`. Special tokens are left as text when `match_special` is false.
    template <typename OnText, typename OnToken>
    void split(std::string_view text, bool match_special, OnText&& on_text, OnToken&& on_token) const;

private:
    struct Found {
        size_t begin, end;
        const AddedToken* token;
    };
    // The leftmost-longest occurrence of any pattern at or after `from`.
    bool find(std::string_view text, size_t from, Found& found) const;
    // Applies single_word / lstrip / rstrip; false when single_word rejects the match.
    static bool adjust(std::string_view text, size_t floor, Found& found);

    std::vector<const AddedToken*> tokens_;
    std::vector<std::string> patterns_;
    std::vector<std::vector<uint32_t>> by_first_byte_;  // pattern indices, longest first
    bool first_byte_[256] = {};
};

template <typename OnText, typename OnToken>
void AddedTokenMatcher::split(std::string_view text, bool match_special, OnText&& on_text,
                              OnToken&& on_token) const {
    size_t search = 0, emitted = 0;
    Found f;
    while (search < text.size() && find(text, search, f)) {
        search = f.end;  // like an Aho-Corasick iterator: a rejected match is not searched again
        if (!match_special && f.token->special) continue;
        if (!adjust(text, emitted, f)) continue;
        if (f.begin < emitted) continue;  // overlaps what a previous rstrip consumed
        if (f.begin > emitted) on_text(emitted, f.begin);
        on_token(*f.token);
        emitted = f.end;
        search = std::max(search, f.end);
    }
    if (emitted < text.size()) on_text(emitted, text.size());
}

}  // namespace flashmoe::text
