// Builds a Tokenizer from tokenizer.json. Every unsupported construct is rejected by name rather than
// approximated, so a tokenizer that loads is one that encodes exactly like HF.
#include "text/tokenizer_impl.h"
#include "text/unicode_nfc.h"
#include "text/utf8.h"
#include "util/error.h"

#include <nlohmann/json.hpp>

#include <atomic>
#include <cctype>
#include <cerrno>
#include <cstring>
#include <fstream>
#include <limits>
#include <iterator>

namespace flashmoe {

using nlohmann::json;

namespace {

// The pattern HF's ByteLevel pre-tokenizer applies when use_regex is true (GPT-2's).
constexpr std::string_view kGpt2Pattern =
    "'s|'t|'re|'ve|'m|'ll|'d| ?\\p{L}+| ?\\p{N}+| ?[^\\s\\p{L}\\p{N}]+|\\s+(?!\\S)|\\s+";

class Reader {
public:
    explicit Reader(const std::string& source) : source_(source) {}

    [[noreturn]] void bad(std::string_view path, std::string_view what) const {
        fail(ErrorKind::BadModel, "{}: {}: {}", source_, path, what);
    }
    const json& get(const json& obj, std::string_view path, const char* key) const {
        if (!obj.is_object()) bad(path, fmt::format("expected an object, found {}", obj.type_name()));
        auto it = obj.find(key);
        if (it == obj.end()) bad(fmt::format("{}.{}", path, key), "missing field");
        return *it;
    }
    // A present, non-null field or nullptr.
    const json* find(const json& obj, const char* key) const {
        auto it = obj.find(key);
        return it == obj.end() || it->is_null() ? nullptr : &*it;
    }
    bool get_bool(const json& obj, std::string_view path, const char* key, bool fallback) const {
        const json* v = find(obj, key);
        if (!v) return fallback;
        if (!v->is_boolean()) bad(fmt::format("{}.{}", path, key), fmt::format("expected a boolean, found {}", v->type_name()));
        return v->get<bool>();
    }
    const std::string& get_string(const json& obj, std::string_view path, const char* key) const {
        const json& v = get(obj, path, key);
        if (!v.is_string()) bad(fmt::format("{}.{}", path, key), fmt::format("expected a string, found {}", v.type_name()));
        return v.get_ref<const std::string&>();
    }
    TokenId get_id(const json& v, std::string_view path) const {
        if (!v.is_number_integer()) bad(path, fmt::format("expected a token id, found {}", v.type_name()));
        const int64_t id = v.get<int64_t>();
        if (id < 0 || id >= std::numeric_limits<TokenId>::max()) bad(path, fmt::format("token id {} is out of range", id));
        return TokenId(id);
    }
    const std::string& source() const { return source_; }

private:
    const std::string& source_;
};

void load_normalizer(const Reader& r, const json& node, std::string_view path, Tokenizer::Impl& impl) {
    const std::string& type = r.get_string(node, path, "type");
    if (type == "NFC") {
        impl.nfc = true;
    } else if (type == "Sequence") {
        const json& list = r.get(node, path, "normalizers");
        if (!list.is_array()) r.bad(fmt::format("{}.normalizers", path), "expected an array");
        for (size_t i = 0; i < list.size(); ++i) {
            load_normalizer(r, list[i], fmt::format("{}.normalizers[{}]", path, i), impl);
        }
    } else {
        r.bad(path, fmt::format("unsupported normalizer type '{}' (supported: NFC, Sequence)", type));
    }
}

void load_pre_tokenizer(const Reader& r, const json& node, std::string_view path, Tokenizer::Impl& impl,
                        bool& byte_level_seen) {
    const std::string& type = r.get_string(node, path, "type");
    if (type == "Sequence") {
        const json& list = r.get(node, path, "pretokenizers");
        if (!list.is_array()) r.bad(fmt::format("{}.pretokenizers", path), "expected an array");
        for (size_t i = 0; i < list.size(); ++i) {
            load_pre_tokenizer(r, list[i], fmt::format("{}.pretokenizers[{}]", path, i), impl, byte_level_seen);
        }
        return;
    }
    if (byte_level_seen) r.bad(path, fmt::format("unsupported: a '{}' pre-tokenizer after ByteLevel", type));
    if (type == "Split") {
        const json& pattern = r.get(node, path, "pattern");
        std::string regex;
        if (const json* re = r.find(pattern, "Regex")) {
            if (!re->is_string()) r.bad(fmt::format("{}.pattern.Regex", path), "expected a string");
            regex = text::translate_onig_pattern(re->get_ref<const std::string&>());
        } else if (const json* lit = r.find(pattern, "String")) {
            if (!lit->is_string()) r.bad(fmt::format("{}.pattern.String", path), "expected a string");
            for (char c : lit->get_ref<const std::string&>()) {
                if (static_cast<unsigned char>(c) < 0x80 && !std::isalnum(static_cast<unsigned char>(c))) regex.push_back('\\');
                regex.push_back(c);
            }
        } else {
            r.bad(fmt::format("{}.pattern", path), "expected a 'Regex' or 'String' pattern");
        }
        const std::string& behavior = r.get_string(node, path, "behavior");
        if (behavior != "Isolated") {
            r.bad(fmt::format("{}.behavior", path), fmt::format("unsupported Split behavior '{}' (supported: Isolated)", behavior));
        }
        if (r.get_bool(node, path, "invert", false)) r.bad(fmt::format("{}.invert", path), "unsupported: invert = true");
        impl.splits.emplace_back(regex, fmt::format("{}: {}.pattern", r.source(), path));
    } else if (type == "ByteLevel") {
        if (r.get_bool(node, path, "add_prefix_space", true)) {
            r.bad(fmt::format("{}.add_prefix_space", path), "unsupported: add_prefix_space = true");
        }
        if (r.get_bool(node, path, "use_regex", true)) {
            impl.splits.emplace_back(text::translate_onig_pattern(kGpt2Pattern),
                                     fmt::format("{}: {} (ByteLevel regex)", r.source(), path));
        }
        byte_level_seen = true;
    } else {
        r.bad(path, fmt::format("unsupported pre_tokenizer type '{}' (supported: Sequence, Split, ByteLevel)", type));
    }
}

// Post-processors and decoders: only the byte-level ones (which add no tokens / undo the alphabet).
void require_byte_level(const Reader& r, const json& node, std::string_view path, const char* list_key,
                        bool allow_null) {
    if (node.is_null()) {
        if (allow_null) return;
        r.bad(path, "missing: a ByteLevel decoder is required");
    }
    const std::string& type = r.get_string(node, path, "type");
    if (type == "ByteLevel") return;
    if (type == "Sequence") {
        const json& list = r.get(node, path, list_key);
        if (!list.is_array()) r.bad(fmt::format("{}.{}", path, list_key), "expected an array");
        for (size_t i = 0; i < list.size(); ++i) {
            require_byte_level(r, list[i], fmt::format("{}.{}[{}]", path, list_key, i), list_key, false);
        }
        return;
    }
    r.bad(path, fmt::format("unsupported {} type '{}' (supported: ByteLevel)", path, type));
}

void load_added_tokens(const Reader& r, const json& list, Tokenizer::Impl& impl) {
    if (!list.is_array()) r.bad("added_tokens", "expected an array");
    for (size_t i = 0; i < list.size(); ++i) {
        const std::string path = fmt::format("added_tokens[{}]", i);
        const json& t = list[i];
        AddedToken token;
        token.id = r.get_id(r.get(t, path, "id"), path + ".id");
        token.content = r.get_string(t, path, "content");
        if (token.content.empty()) r.bad(path + ".content", "empty added token");
        if (text::utf8_first_invalid(token.content) != text::kUtf8Valid) r.bad(path + ".content", "not valid UTF-8");
        token.special = r.get_bool(t, path, "special", false);
        token.single_word = r.get_bool(t, path, "single_word", false);
        token.lstrip = r.get_bool(t, path, "lstrip", false);
        token.rstrip = r.get_bool(t, path, "rstrip", false);
        token.normalized = r.get_bool(t, path, "normalized", !token.special);
        // HF gives an added token that is already in the vocabulary the vocabulary's id, whatever
        // the file says (it only warns), so encodings follow that id.
        if (const TokenId* id = impl.vocab.find(token.content)) token.id = *id;
        impl.added.push_back(std::move(token));
    }
}

void load_bpe(const Reader& r, const json& model, Tokenizer::Impl& impl) {
    const std::string& type = r.get_string(model, "model", "type");
    if (type != "BPE") r.bad("model.type", fmt::format("unsupported model type '{}' (supported: BPE)", type));
    for (const char* key : {"continuing_subword_prefix", "end_of_word_suffix"}) {
        const json* v = r.find(model, key);
        if (v && !(v->is_string() && v->get_ref<const std::string&>().empty())) {
            r.bad(fmt::format("model.{}", key), "unsupported: must be empty or null");
        }
    }
    if (r.get_bool(model, "model", "byte_fallback", false)) r.bad("model.byte_fallback", "unsupported: true");
    if (const json* d = r.find(model, "dropout"); d && !(d->is_number() && d->get<double>() == 0.0)) {
        r.bad("model.dropout", "unsupported: BPE dropout makes encoding random");
    }
    impl.ignore_merges = r.get_bool(model, "model", "ignore_merges", false);
    const bool fuse_unk = r.get_bool(model, "model", "fuse_unk", false);

    const json& vocab = r.get(model, "model", "vocab");
    if (!vocab.is_object()) r.bad("model.vocab", fmt::format("expected an object, found {}", vocab.type_name()));
    impl.vocab.reserve(vocab.size());
    for (const auto& [piece, id_json] : vocab.items()) {
        const TokenId id = r.get_id(id_json, fmt::format("model.vocab[\"{}\"]", piece));
        impl.vocab.insert(piece, id);  // JSON object keys are unique
    }
    auto vocab_id = [&](std::string_view piece, std::string_view path) {
        const TokenId* id = impl.vocab.find(piece);
        if (!id) r.bad(path, fmt::format("token '{}' is not in model.vocab", piece));
        return *id;
    };

    TokenId unk_id = -1;
    if (const json* unk = r.find(model, "unk_token")) {
        if (!unk->is_string()) r.bad("model.unk_token", "expected a string");
        unk_id = vocab_id(unk->get<std::string>(), "model.unk_token");
    }

    const json& merges_json = r.get(model, "model", "merges");
    if (!merges_json.is_array()) r.bad("model.merges", "expected an array");
    std::vector<text::BpeMerge> merges;
    std::vector<TokenId> merged_ids;
    merges.reserve(merges_json.size());
    merged_ids.reserve(merges_json.size());
    std::string both;
    for (size_t i = 0; i < merges_json.size(); ++i) {
        const json& m = merges_json[i];
        auto path = [&] { return fmt::format("model.merges[{}]", i); };  // only built for errors
        std::string_view left, right;
        if (m.is_string()) {
            const std::string_view line = m.get_ref<const std::string&>();
            const size_t space = line.find(' ');
            if (space == std::string::npos || line.find(' ', space + 1) != std::string::npos) {
                r.bad(path(), fmt::format("expected \"left right\", found \"{}\"", line));
            }
            left = line.substr(0, space);
            right = line.substr(space + 1);
        } else if (m.is_array() && m.size() == 2 && m[0].is_string() && m[1].is_string()) {
            left = m[0].get_ref<const std::string&>();
            right = m[1].get_ref<const std::string&>();
        } else {
            r.bad(path(), "expected \"left right\" or [left, right]");
        }
        const TokenId* l = impl.vocab.find(left);
        const TokenId* rt = impl.vocab.find(right);
        both.assign(left).append(right);
        const TokenId* lr = impl.vocab.find(both);
        if (!l || !rt || !lr) vocab_id(!l ? left : !rt ? right : std::string_view(both), path());
        merges.push_back({*l, *rt});
        merged_ids.push_back(*lr);
    }

    TokenId byte_ids[256];
    const auto& map = text::byte_level_map();
    for (int b = 0; b < 256; ++b) {
        std::string piece;
        text::utf8_append(piece, map.byte_to_char[b]);
        const TokenId* id = impl.vocab.find(piece);
        byte_ids[b] = id ? *id : -1;
    }
    impl.bpe = std::make_unique<text::BpeModel>(std::span<const TokenId, 256>(byte_ids), merges, merged_ids, unk_id,
                                                fuse_unk);
    if (impl.ignore_merges) {
        std::string bytes;
        impl.vocab.for_each([&](std::string_view piece, TokenId id) {
            bytes.clear();
            if (map.decode(piece, bytes)) impl.bytes_to_id.insert(bytes, id);
        });
    }
}

// Id-indexed tables: pieces, decoded bytes, flags; and the added-token matchers.
void build_tables(const Reader& r, Tokenizer::Impl& impl) {
    size_t size = 0;
    impl.vocab.for_each([&](std::string_view, TokenId id) { size = std::max(size, size_t(id) + 1); });
    for (const auto& t : impl.added) size = std::max(size, size_t(t.id) + 1);
    std::vector<std::string_view> piece_of(size);
    impl.flags.assign(size, 0);
    impl.vocab.for_each([&](std::string_view piece, TokenId id) {
        if (impl.flags[id] & Tokenizer::Impl::kPresent) r.bad("model.vocab", fmt::format("id {} is used twice", id));
        piece_of[id] = piece;
        impl.flags[id] = Tokenizer::Impl::kPresent;
    });
    for (const auto& t : impl.added) {
        piece_of[t.id] = t.content;  // HF looks added tokens up first
        impl.flags[t.id] = Tokenizer::Impl::kPresent | Tokenizer::Impl::kAdded | (t.special ? Tokenizer::Impl::kSpecial : 0);
        impl.added_by_content.assign(t.content, t.id);
    }
    const auto& map = text::byte_level_map();
    impl.piece_offsets.assign(size + 1, 0);
    impl.bytes_offsets.assign(size + 1, 0);
    for (size_t id = 0; id < size; ++id) {
        impl.piece_offsets[id] = uint32_t(impl.pieces.size());
        impl.bytes_offsets[id] = uint32_t(impl.token_bytes.size());
        impl.pieces.append(piece_of[id]);
        // The byte-level decoder maps every character back to its byte; a piece with a character
        // outside the alphabet (an added token such as "héllo wörld") is emitted as its own UTF-8.
        if (!map.decode(piece_of[id], impl.token_bytes)) impl.token_bytes.append(piece_of[id]);
    }
    impl.piece_offsets[size] = uint32_t(impl.pieces.size());
    impl.bytes_offsets[size] = uint32_t(impl.token_bytes.size());

    std::vector<const AddedToken*> raw, normalized;
    std::vector<std::string> raw_patterns, normalized_patterns;
    for (const auto& t : impl.added) {
        if (t.normalized && impl.nfc) {
            normalized.push_back(&t);
            normalized_patterns.push_back(text::nfc_normalize(t.content));
        } else if (t.normalized) {
            normalized.push_back(&t);
            normalized_patterns.push_back(t.content);
        } else {
            raw.push_back(&t);
            raw_patterns.push_back(t.content);
        }
    }
    impl.raw_matcher = text::AddedTokenMatcher(std::move(raw), std::move(raw_patterns));
    impl.normalized_matcher = text::AddedTokenMatcher(std::move(normalized), std::move(normalized_patterns));
}

}  // namespace

Tokenizer Tokenizer::from_json(const json& root, const std::string& source) {
    static std::atomic<uint64_t> next_serial{1};
    auto impl = std::make_unique<Impl>();
    impl->source = source;
    impl->serial = next_serial++;
    Reader r(impl->source);
    if (!root.is_object()) r.bad("(top level)", fmt::format("expected an object, found {}", root.type_name()));

    load_bpe(r, r.get(root, "(top level)", "model"), *impl);
    if (const json* n = r.find(root, "normalizer")) load_normalizer(r, *n, "normalizer", *impl);
    bool byte_level = false;
    if (const json* p = r.find(root, "pre_tokenizer")) load_pre_tokenizer(r, *p, "pre_tokenizer", *impl, byte_level);
    if (!byte_level) r.bad("pre_tokenizer", "unsupported: no ByteLevel pre-tokenizer (only byte-level BPE is supported)");
    auto it = root.find("post_processor");
    require_byte_level(r, it == root.end() ? json() : *it, "post_processor", "processors", true);
    it = root.find("decoder");
    require_byte_level(r, it == root.end() ? json() : *it, "decoder", "decoders", false);
    if (const json* a = r.find(root, "added_tokens")) load_added_tokens(r, *a, *impl);
    build_tables(r, *impl);
    return Tokenizer(std::move(impl));
}

Tokenizer Tokenizer::load(const std::filesystem::path& path) {
    std::error_code ec;
    std::filesystem::path file = path;
    if (std::filesystem::is_directory(path, ec)) file = path / "tokenizer.json";
    const std::string name = file.string();
    if (!std::filesystem::exists(file, ec)) {
        fail(ErrorKind::BadModel, "{}: tokenizer file not found", name);
    }
    std::ifstream in(file, std::ios::binary);
    std::string content((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
    if (!in && !in.eof()) fail(ErrorKind::Io, "{}: cannot read: {}", name, std::strerror(errno));
    json root;
    try {
        root = json::parse(content);
    } catch (const json::exception& e) {
        fail(ErrorKind::BadModel, "{}: not valid JSON: {}", name, e.what());
    }
    return from_json(root, name);
}

}  // namespace flashmoe
