#include "text/tokenizer.h"

#include "text/tokenizer_impl.h"
#include "text/unicode_nfc.h"
#include "text/utf8.h"
#include "util/error.h"

namespace flashmoe {

namespace {

// Words longer than this are encoded without caching (rare, and they would crowd the cache).
constexpr size_t kMaxCachedWord = 256;

// What one thread needs to encode: matching state and the word cache of the tokenizer it last used.
struct EncodeScratch {
    uint64_t serial = 0;
    text::WordCache cache;
    text::RegexScratch regex;
    std::vector<TokenId> symbols;
};

EncodeScratch& scratch_for(uint64_t serial) {
    thread_local EncodeScratch scratch;
    if (scratch.serial != serial) {
        scratch.cache.clear();
        scratch.serial = serial;
    }
    return scratch;
}

class Encoder {
public:
    Encoder(const Tokenizer::Impl& impl, EncodeScratch& scratch, std::vector<TokenId>& out)
        : impl_(impl), s_(scratch), out_(out) {}

    // Text that holds no added token: normalised, then pre-tokenized and BPE-encoded.
    void encode_normalized(std::string_view text, bool parse_special) {
        if (impl_.normalized_matcher.empty()) {
            split(0, text);
            return;
        }
        impl_.normalized_matcher.split(
            text, parse_special, [&](size_t b, size_t e) { split(0, text.substr(b, e - b)); },
            [&](const AddedToken& t) { out_.push_back(t.id); });
    }

    void encode_raw(std::string_view text, bool parse_special) {
        if (!impl_.nfc) {
            encode_normalized(text, parse_special);
            return;
        }
        std::string normalized;
        if (text::nfc_normalize_into(text, normalized)) {
            encode_normalized(normalized, parse_special);
        } else {
            encode_normalized(text, parse_special);
        }
    }

private:
    void split(size_t stage, std::string_view text) {
        if (text.empty()) return;
        if (stage == impl_.splits.size()) {
            word(text);
            return;
        }
        impl_.splits[stage].split(text, s_.regex,
                                  [&](size_t b, size_t e) { split(stage + 1, text.substr(b, e - b)); });
    }

    void word(std::string_view w) {
        if (impl_.ignore_merges) {
            if (const TokenId* id = impl_.bytes_to_id.find(w)) {
                out_.push_back(*id);
                return;
            }
        }
        if (w.size() > kMaxCachedWord) {
            impl_.bpe->encode_word(w, out_, s_.symbols);
            return;
        }
        const uint64_t h = text::hash_bytes(w);
        auto hit = s_.cache.find(w, h);
        if (!hit.empty()) {
            out_.insert(out_.end(), hit.begin(), hit.end());
            return;
        }
        const size_t before = out_.size();
        impl_.bpe->encode_word(w, out_, s_.symbols);
        if (out_.size() > before) {
            s_.cache.insert(w, h, std::span<const TokenId>(out_.data() + before, out_.size() - before));
        }
    }

    const Tokenizer::Impl& impl_;
    EncodeScratch& s_;
    std::vector<TokenId>& out_;
};

}  // namespace

Tokenizer::Tokenizer(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
Tokenizer::Tokenizer(Tokenizer&&) noexcept = default;
Tokenizer& Tokenizer::operator=(Tokenizer&&) noexcept = default;
Tokenizer::~Tokenizer() = default;

std::vector<TokenId> Tokenizer::encode(std::string_view text, const EncodeOptions& options) const {
    const size_t bad = text::utf8_first_invalid(text);
    if (bad != text::kUtf8Valid) {
        fail(ErrorKind::BadInput, "text to tokenize is not valid UTF-8: invalid byte 0x{:02X} at byte offset {}",
             static_cast<unsigned char>(text[bad]), bad);
    }
    std::vector<TokenId> out;
    out.reserve(text.size() / 3 + 4);
    EncodeScratch& scratch = scratch_for(impl_->serial);
    Encoder encoder(*impl_, scratch, out);
    const bool special = options.parse_special;
    if (impl_->raw_matcher.empty()) {
        encoder.encode_raw(text, special);
    } else {
        impl_->raw_matcher.split(
            text, special, [&](size_t b, size_t e) { encoder.encode_raw(text.substr(b, e - b), special); },
            [&](const AddedToken& t) { out.push_back(t.id); });
    }
    return out;
}

void Tokenizer::append_token_bytes(TokenId id, std::string& out) const {
    if (!impl_->valid_id(id)) {
        if (id < 0 || size_t(id) >= impl_->flags.size()) {
            fail(ErrorKind::BadInput, "token id {} is out of range: {} has ids 0 to {}", id, impl_->source,
                 impl_->flags.size() - 1);
        }
        fail(ErrorKind::BadInput, "token id {} has no token in {}", id, impl_->source);
    }
    out.append(impl_->bytes(id));
}

std::string Tokenizer::decode_bytes(std::span<const TokenId> ids, const DecodeOptions& options) const {
    std::string out;
    for (TokenId id : ids) {
        if (options.skip_special && is_special(id)) continue;
        append_token_bytes(id, out);
    }
    return out;
}

std::string Tokenizer::decode(std::span<const TokenId> ids, const DecodeOptions& options) const {
    const std::string bytes = decode_bytes(ids, options);
    if (text::utf8_first_invalid(bytes) == text::kUtf8Valid) return bytes;
    std::string out;
    text::utf8_append_lossy(out, bytes);
    return out;
}

std::string_view Tokenizer::id_to_piece(TokenId id) const {
    if (!impl_->valid_id(id)) {
        fail(ErrorKind::BadInput, "token id {} has no token in {} (ids 0 to {})", id, impl_->source,
             impl_->flags.size() - 1);
    }
    return impl_->piece(id);
}

std::optional<TokenId> Tokenizer::token_to_id(std::string_view piece) const {
    if (const TokenId* id = impl_->added_by_content.find(piece)) return *id;
    if (const TokenId* id = impl_->vocab.find(piece)) return *id;
    return std::nullopt;
}

std::optional<TokenId> Tokenizer::added_token_id(std::string_view content) const {
    if (const TokenId* id = impl_->added_by_content.find(content)) return *id;
    return std::nullopt;
}

bool Tokenizer::is_special(TokenId id) const {
    return impl_->valid_id(id) && (impl_->flags[size_t(id)] & Impl::kSpecial);
}

bool Tokenizer::is_added(TokenId id) const {
    return impl_->valid_id(id) && (impl_->flags[size_t(id)] & Impl::kAdded);
}

const std::vector<AddedToken>& Tokenizer::added_tokens() const { return impl_->added; }
size_t Tokenizer::vocab_size() const { return impl_->flags.size(); }
const std::string& Tokenizer::source() const { return impl_->source; }

// ---- streaming decode ----

StreamDecoder::StreamDecoder(const Tokenizer& tokenizer, DecodeOptions options)
    : tokenizer_(&tokenizer), options_(options) {}

std::string StreamDecoder::push(TokenId id) {
    if (options_.skip_special && tokenizer_->is_special(id)) return {};
    tokenizer_->append_token_bytes(id, pending_);
    // Emit everything except a trailing character that is still incomplete. Cutting there gives
    // the same U+FFFD replacements as decoding all bytes at once: an invalid subpart never spans
    // the cut, because the held tail begins at a lead byte.
    const size_t hold = text::utf8_incomplete_tail(pending_);
    const std::string_view ready = std::string_view(pending_).substr(0, pending_.size() - hold);
    std::string out;
    if (text::utf8_first_invalid(ready) == text::kUtf8Valid) {
        out.assign(ready);
    } else {
        text::utf8_append_lossy(out, ready);
    }
    pending_.erase(0, pending_.size() - hold);
    return out;
}

std::string StreamDecoder::flush() {
    std::string out;
    text::utf8_append_lossy(out, pending_);
    pending_.clear();
    return out;
}

}  // namespace flashmoe
