#include "text/tokenizer_bpe.h"

#include "text/utf8.h"

#include <algorithm>
#include <cstring>
#include <functional>
#include <limits>
#include <queue>

namespace flashmoe::text {

// ---- byte-level alphabet ----

ByteLevelMap::ByteLevelMap() {
    // Printable Latin-1 bytes stand for themselves; the other 68 bytes take U+0100 onwards in order.
    std::fill(std::begin(char_to_byte), std::end(char_to_byte), int16_t(-1));
    uint32_t next = 256;
    for (uint32_t b = 0; b < 256; ++b) {
        const bool printable = (b >= '!' && b <= '~') || (b >= 0xA1 && b <= 0xAC) || (b >= 0xAE && b <= 0xFF);
        byte_to_char[b] = printable ? b : next++;
        char_to_byte[byte_to_char[b]] = int16_t(b);
    }
}

bool ByteLevelMap::decode(std::string_view piece, std::string& bytes) const {
    const size_t start = bytes.size();
    for (size_t i = 0; i < piece.size();) {
        const Utf8Step step = utf8_step(piece.substr(i));
        if (step.kind != Utf8Step::Kind::Valid || step.code_point >= 512 || char_to_byte[step.code_point] < 0) {
            bytes.resize(start);
            return false;
        }
        bytes.push_back(char(char_to_byte[step.code_point]));
        i += step.length;
    }
    return true;
}

const ByteLevelMap& byte_level_map() {
    static const ByteLevelMap map;
    return map;
}

uint64_t hash_bytes(std::string_view bytes) {
    constexpr uint64_t kMul = 0x9E3779B97F4A7C15ull;
    uint64_t h = bytes.size() * kMul;
    size_t i = 0;
    for (; i + 8 <= bytes.size(); i += 8) {
        uint64_t w;
        std::memcpy(&w, bytes.data() + i, 8);
        h = (h ^ w) * kMul;
        h ^= h >> 32;
    }
    if (i < bytes.size()) {
        uint64_t w = 0;
        std::memcpy(&w, bytes.data() + i, bytes.size() - i);
        h = (h ^ w) * kMul;
        h ^= h >> 32;
    }
    h *= kMul;
    h ^= h >> 29;
    return h | 1;  // never 0, the empty-slot marker
}

// ---- string index ----

void StringIndex::reserve(size_t n) {
    size_t slots = 16;
    while (slots < n * 2) slots *= 2;
    if (slots > slots_.size()) rehash(slots);
}

void StringIndex::rehash(size_t slots) {
    std::vector<Slot> old = std::move(slots_);
    slots_.assign(slots, Slot{});
    const size_t mask = slots - 1;
    for (const Slot& s : old) {
        if (!s.hash) continue;
        size_t i = s.hash & mask;
        while (slots_[i].hash) i = (i + 1) & mask;
        slots_[i] = s;
    }
}

StringIndex::Slot* StringIndex::locate(std::string_view key, uint64_t hash) {
    const size_t mask = slots_.size() - 1;
    for (size_t i = hash & mask;; i = (i + 1) & mask) {
        Slot& s = slots_[i];
        if (!s.hash || (s.hash == hash && s.length == key.size() &&
                        std::memcmp(arena_.data() + s.offset, key.data(), key.size()) == 0)) {
            return &s;
        }
    }
}

bool StringIndex::insert(std::string_view key, TokenId id) {
    if ((count_ + 1) * 2 > slots_.size()) rehash(std::max<size_t>(16, slots_.size() * 2));
    const uint64_t h = hash_bytes(key);
    Slot* s = locate(key, h);
    if (s->hash) return false;
    *s = Slot{h, uint32_t(arena_.size()), uint32_t(key.size()), id};
    arena_.append(key);
    ++count_;
    return true;
}

void StringIndex::assign(std::string_view key, TokenId id) {
    if (!insert(key, id)) locate(key, hash_bytes(key))->id = id;
}

const TokenId* StringIndex::find(std::string_view key) const {
    if (slots_.empty()) return nullptr;
    const uint64_t h = hash_bytes(key);
    const size_t mask = slots_.size() - 1;
    for (size_t i = h & mask;; i = (i + 1) & mask) {
        const Slot& s = slots_[i];
        if (!s.hash) return nullptr;
        if (s.hash == h && s.length == key.size() && std::memcmp(arena_.data() + s.offset, key.data(), key.size()) == 0) {
            return &s.id;
        }
    }
}

// ---- word cache ----

WordCache::WordCache(size_t max_entries) : max_entries_(max_entries) {
    size_t slots = 16;
    while (slots < max_entries * 2) slots *= 2;
    slots_.resize(slots);
}

std::span<const TokenId> WordCache::find(std::string_view word, uint64_t hash) const {
    const size_t mask = slots_.size() - 1;
    for (size_t i = hash & mask;; i = (i + 1) & mask) {
        const Slot& s = slots_[i];
        if (s.hash == 0) return {};
        if (s.hash == hash && s.key_length == word.size() &&
            std::memcmp(keys_.data() + s.key_offset, word.data(), word.size()) == 0) {
            return {values_.data() + s.value_offset, s.value_length};
        }
    }
}

void WordCache::insert(std::string_view word, uint64_t hash, std::span<const TokenId> ids) {
    if (used_ >= max_entries_ || keys_.size() + word.size() > std::numeric_limits<uint32_t>::max() / 2) {
        clear();
    }
    const size_t mask = slots_.size() - 1;
    size_t i = hash & mask;
    while (slots_[i].hash != 0) i = (i + 1) & mask;
    slots_[i] = Slot{hash, uint32_t(keys_.size()), uint32_t(word.size()), uint32_t(values_.size()),
                     uint32_t(ids.size())};
    keys_.append(word);
    values_.insert(values_.end(), ids.begin(), ids.end());
    ++used_;
}

void WordCache::clear() {
    std::fill(slots_.begin(), slots_.end(), Slot{});
    keys_.clear();
    values_.clear();
    used_ = 0;
}

// ---- BPE ----

namespace {
constexpr uint32_t kNoRank = std::numeric_limits<uint32_t>::max();
inline uint64_t pair_key(TokenId left, TokenId right) {
    return (uint64_t(uint32_t(left) + 1) << 32) | uint64_t(uint32_t(right) + 1);
}
inline uint64_t slot_of(uint64_t key) { return (key * 0x9E3779B97F4A7C15ull) >> 20; }
// Words up to this many bytes use the array merge loop (quadratic but tiny constants, no heap);
// longer ones (CJK runs, long whitespace) use the priority queue over a linked list.
constexpr size_t kSmallWord = 64;
}  // namespace

BpeModel::BpeModel(std::span<const TokenId, 256> byte_ids, std::span<const BpeMerge> merges,
                   std::span<const TokenId> merged_ids, TokenId unk_id, bool fuse_unk)
    : unk_id_(unk_id), fuse_unk_(fuse_unk) {
    std::copy(byte_ids.begin(), byte_ids.end(), byte_ids_);
    size_t slots = 16;
    while (slots < merges.size() * 2) slots *= 2;
    table_.assign(slots, Entry{0, 0, 0});
    mask_ = slots - 1;
    for (size_t rank = 0; rank < merges.size(); ++rank) {
        const uint64_t key = pair_key(merges[rank].left, merges[rank].right);
        size_t i = slot_of(key) & mask_;
        while (table_[i].key != 0 && table_[i].key != key) i = (i + 1) & mask_;
        // A repeated pair keeps its last rank, as HF's map construction does.
        table_[i] = Entry{key, uint32_t(rank), merged_ids[rank]};
    }
}

const BpeModel::Entry* BpeModel::find(TokenId left, TokenId right) const {
    const uint64_t key = pair_key(left, right);
    for (size_t i = slot_of(key) & mask_;; i = (i + 1) & mask_) {
        const Entry& e = table_[i];
        if (e.key == key) return &e;
        if (e.key == 0) return nullptr;
    }
}

void BpeModel::encode_word(std::string_view word, std::vector<TokenId>& out, std::vector<TokenId>& symbols) const {
    symbols.clear();
    for (unsigned char b : word) {
        TokenId id = byte_ids_[b];
        if (id < 0) {
            if (unk_id_ < 0) continue;
            if (fuse_unk_ && !symbols.empty() && symbols.back() == unk_id_) continue;
            id = unk_id_;
        }
        symbols.push_back(id);
    }
    if (symbols.size() > 1) {
        if (symbols.size() <= kSmallWord) {
            merge_small(symbols);
        } else {
            merge_large(symbols);
        }
    }
    out.insert(out.end(), symbols.begin(), symbols.end());
}

void BpeModel::merge_small(std::vector<TokenId>& symbols) const {
    // rank[i] / merged[i] describe the pair (symbols[i], symbols[i + 1]).
    uint32_t rank[kSmallWord];
    TokenId merged[kSmallWord];
    size_t n = symbols.size();
    auto fill = [&](size_t i) {
        const Entry* e = find(symbols[i], symbols[i + 1]);
        rank[i] = e ? e->rank : kNoRank;
        merged[i] = e ? e->merged : -1;
    };
    for (size_t i = 0; i + 1 < n; ++i) fill(i);
    while (n > 1) {
        size_t best = 0;
        for (size_t i = 1; i + 1 < n; ++i) {
            if (rank[i] < rank[best]) best = i;  // strict: the leftmost of equal ranks wins
        }
        if (rank[best] == kNoRank) break;
        symbols[best] = merged[best];
        symbols.erase(symbols.begin() + best + 1);
        std::memmove(rank + best, rank + best + 1, (n - 2 - best) * sizeof(uint32_t));
        std::memmove(merged + best, merged + best + 1, (n - 2 - best) * sizeof(TokenId));
        --n;
        if (best > 0) fill(best - 1);
        if (best + 1 < n) fill(best);
    }
}

void BpeModel::merge_large(std::vector<TokenId>& symbols) const {
    struct Node {
        TokenId id;
        int32_t prev, next;  // -1: none
    };
    struct Candidate {
        uint32_t rank;
        int32_t pos;  // left symbol, an index that never moves, so order = position in the word
        TokenId left, right, merged;
        bool operator>(const Candidate& o) const { return rank != o.rank ? rank > o.rank : pos > o.pos; }
    };
    const int32_t n = int32_t(symbols.size());
    std::vector<Node> nodes(n);
    for (int32_t i = 0; i < n; ++i) nodes[i] = Node{symbols[i], i - 1, i + 1 < n ? i + 1 : -1};
    std::priority_queue<Candidate, std::vector<Candidate>, std::greater<>> queue;
    auto push = [&](int32_t pos) {
        const int32_t next = nodes[pos].next;
        if (next < 0) return;
        if (const Entry* e = find(nodes[pos].id, nodes[next].id)) {
            queue.push(Candidate{e->rank, pos, nodes[pos].id, nodes[next].id, e->merged});
        }
    };
    for (int32_t i = 0; i + 1 < n; ++i) push(i);
    while (!queue.empty()) {
        const Candidate c = queue.top();
        queue.pop();
        Node& left = nodes[c.pos];
        // Stale if either side has merged since (a merge changes the left id, kills the right one).
        if (left.id != c.left || left.next < 0 || nodes[left.next].id != c.right) continue;
        const int32_t dead = left.next;
        left.id = c.merged;
        left.next = nodes[dead].next;
        if (left.next >= 0) nodes[left.next].prev = c.pos;
        nodes[dead].id = -1;
        if (left.prev >= 0) push(left.prev);
        push(c.pos);
    }
    symbols.clear();
    for (int32_t i = 0; i >= 0; i = nodes[i].next) symbols.push_back(nodes[i].id);
}

}  // namespace flashmoe::text
