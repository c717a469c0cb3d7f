// Byte-level BPE internals of the tokenizer: the GPT-2 byte <-> character map, the merge table, the
// merge loop and a per-thread cache of already-encoded words.
// BpeModel is immutable after construction and safe to share between threads; WordCache is not
// thread-safe (each thread owns one). Construction errors are flashmoe::Error(BadModel) that name
// the file and field; encoding never throws.
#pragma once

#include <cstdint>
#include <span>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace flashmoe::text {

using TokenId = int32_t;

// The GPT-2 byte-level alphabet: every byte maps to one printable character (so that vocabulary
// entries are valid strings) and back.
struct ByteLevelMap {
    ByteLevelMap();
    uint32_t byte_to_char[256];
    int16_t char_to_byte[512];  // -1: not a byte-level character (all of them are below U+0200)
    // The bytes a vocabulary string stands for; false when it holds a character outside the alphabet.
    bool decode(std::string_view piece, std::string& bytes) const;
};
const ByteLevelMap& byte_level_map();

// Fast 64-bit hash for short byte strings (words, cache keys).
uint64_t hash_bytes(std::string_view bytes);

// Map from strings to ids with the strings packed in one arena (the 150k-entry vocabularies load
// faster and smaller than with a node-based map). Not thread-safe to build; lookups are.
class StringIndex {
public:
    // Returns false (and changes nothing) when `key` is already present.
    bool insert(std::string_view key, TokenId id);
    // Sets the id of `key`, inserting it if needed.
    void assign(std::string_view key, TokenId id);
    const TokenId* find(std::string_view key) const;
    size_t size() const { return count_; }
    void reserve(size_t n);
    // Calls f(key, id) for every entry, in no particular order.
    template <typename F>
    void for_each(F&& f) const {
        for (const Slot& s : slots_) {
            if (s.hash) f(std::string_view(arena_).substr(s.offset, s.length), s.id);
        }
    }

private:
    struct Slot {
        uint64_t hash = 0;  // 0: empty
        uint32_t offset = 0, length = 0;
        TokenId id = 0;
    };
    Slot* locate(std::string_view key, uint64_t hash);
    void rehash(size_t slots);
    std::string arena_;
    std::vector<Slot> slots_;
    size_t count_ = 0;
};

// Cache from word bytes to its token ids, bounded by an entry count (cleared when full: words repeat
// a lot locally, so a cold restart costs little and memory stays bounded).
class WordCache {
public:
    explicit WordCache(size_t max_entries = 1 << 16);
    // Returns the cached ids or an empty span (no word encodes to zero ids except the empty word,
    // which is never cached).
    std::span<const TokenId> find(std::string_view word, uint64_t hash) const;
    void insert(std::string_view word, uint64_t hash, std::span<const TokenId> ids);
    void clear();

private:
    struct Slot {
        uint64_t hash = 0;  // 0: empty (real hashes are forced non-zero)
        uint32_t key_offset = 0, key_length = 0, value_offset = 0, value_length = 0;
    };
    size_t max_entries_;
    size_t used_ = 0;
    std::vector<Slot> slots_;
    std::string keys_;
    std::vector<TokenId> values_;
};

struct BpeMerge {
    TokenId left, right;
};

// The BPE model: initial ids of the 256 bytes and (left, right) -> (rank, merged id).
class BpeModel {
public:
    // `byte_ids[b]` is the vocabulary id of byte b (-1: not in the vocabulary, dropped like HF does
    // without an unk token). `merges` are in rank order; `merged_ids[i]` is the id of their result.
    BpeModel(std::span<const TokenId, 256> byte_ids, std::span<const BpeMerge> merges,
             std::span<const TokenId> merged_ids, TokenId unk_id, bool fuse_unk);

    // Appends the ids of one pre-tokenized word (raw bytes) to `out`; `scratch` is working memory
    // the caller keeps between calls to save allocations.
    void encode_word(std::string_view word, std::vector<TokenId>& out, std::vector<TokenId>& scratch) const;

private:
    struct Entry {
        uint64_t key;  // ((left + 1) << 32) | (right + 1); 0 = empty
        uint32_t rank;
        TokenId merged;
    };
    const Entry* find(TokenId left, TokenId right) const;
    void merge_small(std::vector<TokenId>& symbols) const;
    void merge_large(std::vector<TokenId>& symbols) const;

    TokenId byte_ids_[256];
    TokenId unk_id_;
    bool fuse_unk_;
    std::vector<Entry> table_;
    uint64_t mask_ = 0;
};

}  // namespace flashmoe::text
