// Byte-level BPE tokenizer loaded from a Hugging Face tokenizer.json (the Qwen3 / Qwen3.5 family):
// added tokens are matched first and never split, the rest is NFC-normalised, split by the file's
// regex (PCRE2) and byte-level BPE-encoded. Output is id-for-id what HF `tokenizers` produces; the
// tests hold fixtures generated with it (tools/tokenizer_fixtures/make_fixtures.py).
//
// Ownership: a Tokenizer owns all of its tables; it is movable, not copyable.
// Thread-safety: every const member may be called from many threads at once. encode() keeps a cache
// of recently encoded words per thread (thread_local, at most 64k words, a few MB), so threads
// never contend.
// Unicode data: NFC tables come from Python 3.11's unicodedata and the split regex runs on PCRE2
// 10.42, both Unicode 14.0; characters assigned in later Unicode versions could split or normalise
// differently from an HF build with newer tables.
// Failure: loading throws flashmoe::Error(BadModel) naming the file and the field or construct that
// is missing or unsupported (Io when an existing file cannot be read). encode() throws BadInput for
// text that is not valid UTF-8, naming the byte offset. Decoding an id that has no token throws
// BadInput. Nothing else throws except std::bad_alloc.
#pragma once

#include <nlohmann/json_fwd.hpp>

#include <cstdint>
#include <filesystem>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

namespace flashmoe {

using TokenId = int32_t;

// One entry of tokenizer.json's "added_tokens" (its flags mean what they mean in HF tokenizers).
struct AddedToken {
    TokenId id = -1;
    std::string content;
    bool special = false;      // skipped by decode with skip_special; not matched if !parse_special
    bool single_word = false;  // only matched when not inside a word
    bool lstrip = false;       // swallows the whitespace on its left
    bool rstrip = false;       // swallows the whitespace on its right
    bool normalized = false;   // matched against the normalised text instead of the raw text
};

struct EncodeOptions {
    // Match special added tokens written in the text (HF's default). False treats them as plain
    // text, like HF's `encode_special_tokens = True`: for user text that must not inject control
    // tokens. Non-special added tokens (e.g. <think>) are matched either way, as in HF.
    bool parse_special = true;
};

struct DecodeOptions {
    bool skip_special = false;  // drop special added tokens (HF skip_special_tokens)
};

class Tokenizer {
public:
    // `path` is a tokenizer.json file or a directory that contains one (a model directory).
    static Tokenizer load(const std::filesystem::path& path);
    // From parsed JSON; `source` names it in error messages.
    static Tokenizer from_json(const nlohmann::json& json, const std::string& source);

    Tokenizer(Tokenizer&&) noexcept;
    Tokenizer& operator=(Tokenizer&&) noexcept;
    ~Tokenizer();

    // Token ids of `text`. The post-processor of the Qwen files (ByteLevel) adds no tokens, so there
    // is nothing like "add BOS" here: the chat template writes every special token explicitly.
    std::vector<TokenId> encode(std::string_view text, const EncodeOptions& options = {}) const;

    // Text of `ids` as valid UTF-8: bytes that do not form characters become U+FFFD, as in HF.
    std::string decode(std::span<const TokenId> ids, const DecodeOptions& options = {}) const;
    // The raw bytes of `ids` (may end inside a character or hold invalid UTF-8).
    std::string decode_bytes(std::span<const TokenId> ids, const DecodeOptions& options = {}) const;
    // Appends the bytes one id stands for.
    void append_token_bytes(TokenId id, std::string& out) const;

    // The vocabulary string of an id (byte-level form, e.g. "Ġthe"), or an added token's content.
    std::string_view id_to_piece(TokenId id) const;
    // Inverse of id_to_piece (added tokens first, as HF does).
    std::optional<TokenId> token_to_id(std::string_view piece) const;
    // The id of an added token by content (e.g. "<|im_end|>"); nullopt if there is none.
    std::optional<TokenId> added_token_id(std::string_view content) const;
    bool is_special(TokenId id) const;
    bool is_added(TokenId id) const;
    const std::vector<AddedToken>& added_tokens() const;

    // One past the largest id (vocabulary and added tokens together).
    size_t vocab_size() const;
    // Where this tokenizer was loaded from (for messages).
    const std::string& source() const;

    struct Impl;

private:
    explicit Tokenizer(std::unique_ptr<Impl> impl);
    std::unique_ptr<Impl> impl_;
};

// Turns ids, one at a time, into text that is always whole UTF-8 characters: bytes of a character
// split across tokens are held back until it completes. The concatenation of everything push() and
// flush() return equals tokenizer.decode(all ids).
// Holds a reference to the tokenizer, which must outlive it. Not thread-safe (one per stream).
// push() throws BadInput for an id that has no token.
class StreamDecoder {
public:
    explicit StreamDecoder(const Tokenizer& tokenizer, DecodeOptions options = {});

    // Text completed by this id (often empty while a multi-byte character is pending).
    std::string push(TokenId id);
    // Everything still held, with an unfinished character shown as U+FFFD; then starts afresh.
    std::string flush();
    // Drops anything held without emitting it.
    void reset() { pending_.clear(); }
    // Bytes currently held back (0 to 3).
    size_t pending_bytes() const { return pending_.size(); }

private:
    const Tokenizer* tokenizer_;
    DecodeOptions options_;
    std::string pending_;
};

}  // namespace flashmoe
