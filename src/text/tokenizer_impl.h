// Private state of flashmoe::Tokenizer, shared by tokenizer_load.cpp (which fills it from
// tokenizer.json) and tokenizer.cpp (which encodes and decodes with it). Immutable once built.
#pragma once

#include "text/tokenizer.h"
#include "text/tokenizer_bpe.h"
#include "text/tokenizer_split.h"

#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

namespace flashmoe {

struct Tokenizer::Impl {
    std::string source;
    uint64_t serial = 0;  // identifies this tokenizer to the per-thread caches

    // Normalizer: NFC or nothing.
    bool nfc = false;
    // Pre-tokenizer: regex Split steps (in order), then the byte-level alphabet.
    std::vector<text::RegexSplitter> splits;
    // Model.
    std::unique_ptr<text::BpeModel> bpe;
    bool ignore_merges = false;
    text::StringIndex bytes_to_id;  // raw bytes -> id, only with ignore_merges

    // Vocabulary, by id (ids without a token have kMissing set).
    enum Flags : uint8_t { kPresent = 1, kAdded = 2, kSpecial = 4 };
    std::vector<uint8_t> flags;
    std::vector<uint32_t> piece_offsets;  // id -> [offsets[id], offsets[id+1]) in pieces
    std::string pieces;
    std::vector<uint32_t> bytes_offsets;  // id -> decoded bytes in token_bytes
    std::string token_bytes;
    text::StringIndex vocab;  // model vocabulary: piece -> id
    text::StringIndex added_by_content;

    std::vector<AddedToken> added;
    text::AddedTokenMatcher raw_matcher;         // tokens with normalized == false
    text::AddedTokenMatcher normalized_matcher;  // tokens with normalized == true

    bool valid_id(TokenId id) const {
        return id >= 0 && size_t(id) < flags.size() && (flags[size_t(id)] & kPresent);
    }
    std::string_view piece(TokenId id) const {
        return std::string_view(pieces).substr(piece_offsets[id], piece_offsets[id + 1] - piece_offsets[id]);
    }
    std::string_view bytes(TokenId id) const {
        return std::string_view(token_bytes).substr(bytes_offsets[id], bytes_offsets[id + 1] - bytes_offsets[id]);
    }
};

}  // namespace flashmoe
