// Unit tests of the tokenizer that need no HF fixtures: the BPE merge loop against a naive reference
// on a small synthetic vocabulary, the public lookups, input validation and every load error.
#include "text/tokenizer.h"
#include "text/tokenizer_bpe.h"
#include "text/unicode_nfc.h"
#include "text/utf8.h"
#include "tokenizer_test_util.h"
#include "util/error.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <filesystem>
#include <limits>
#include <map>
#include <random>
#include <thread>

using namespace flashmoe;
using nlohmann::json;

namespace {

std::string byte_level(std::string_view bytes) {
    std::string out;
    for (unsigned char b : bytes) text::utf8_append(out, text::byte_level_map().byte_to_char[b]);
    return out;
}

// A small byte-level BPE: ids 0-255 are the bytes, then random merges over "abc" (and " ").
struct TinyBpe {
    json j;
    std::vector<std::pair<std::string, std::string>> merges;  // raw bytes, rank order
    std::map<std::string, TokenId> ids;                        // raw bytes -> id

    explicit TinyBpe(uint32_t seed, bool pair_form) {
        std::mt19937 rng(seed);
        json vocab = json::object();
        for (int b = 0; b < 256; ++b) {
            ids[std::string(1, char(b))] = b;
            vocab[byte_level(std::string(1, char(b)))] = b;
        }
        std::vector<std::string> tokens = {"a", "b", "c", " "};
        json merges_json = json::array();
        while (merges.size() < 60) {
            const std::string& l = tokens[rng() % tokens.size()];
            const std::string& r = tokens[rng() % tokens.size()];
            const std::string m = l + r;
            if (ids.count(m) || m.size() > 12) continue;
            merges.emplace_back(l, r);
            ids[m] = TokenId(ids.size());
            vocab[byte_level(m)] = ids[m];
            if (pair_form) {
                merges_json.push_back({byte_level(l), byte_level(r)});
            } else {
                merges_json.push_back(byte_level(l) + " " + byte_level(r));
            }
            tokens.push_back(m);
        }
        j = {{"version", "1.0"},
             {"added_tokens", json::array()},
             {"normalizer", {{"type", "NFC"}}},
             {"pre_tokenizer",
              {{"type", "Sequence"},
               {"pretokenizers",
                json::array({{{"type", "Split"},
                              {"pattern", {{"Regex", "[abc]+|[^abc]+"}}},
                              {"behavior", "Isolated"},
                              {"invert", false}},
                             {{"type", "ByteLevel"}, {"add_prefix_space", false}, {"use_regex", false}}})}}},
             {"post_processor", {{"type", "ByteLevel"}}},
             {"decoder", {{"type", "ByteLevel"}}},
             {"model", {{"type", "BPE"}, {"vocab", vocab}, {"merges", merges_json}}}};
    }

    // Textbook BPE: repeatedly merge the lowest-ranked adjacent pair, leftmost first.
    std::vector<TokenId> reference(const std::string& word) const {
        std::vector<std::string> sym;
        for (char c : word) sym.emplace_back(1, c);
        while (sym.size() > 1) {
            size_t best = sym.size(), best_rank = std::numeric_limits<size_t>::max();
            for (size_t i = 0; i + 1 < sym.size(); ++i) {
                for (size_t r = 0; r < std::min(best_rank, merges.size()); ++r) {
                    if (merges[r].first == sym[i] && merges[r].second == sym[i + 1]) {
                        best = i;
                        best_rank = r;
                        break;
                    }
                }
            }
            if (best == sym.size()) break;
            sym[best] += sym[best + 1];
            sym.erase(sym.begin() + best + 1);
        }
        std::vector<TokenId> out;
        for (const auto& s : sym) out.push_back(ids.at(s));
        return out;
    }
};

template <typename F>
void expect_error(F&& f, ErrorKind kind, std::vector<std::string> fragments) {
    try {
        f();
        ADD_FAILURE() << "no error thrown; expected one mentioning " << fragments.front();
    } catch (const Error& e) {
        EXPECT_EQ(e.kind(), kind) << e.what();
        for (const auto& frag : fragments) EXPECT_NE(std::string(e.what()).find(frag), std::string::npos) << e.what();
    }
}

}  // namespace

TEST(Bpe, MergeLoopMatchesTextbookBpeOnShortAndLongWords) {
    for (bool pair_form : {false, true}) {
        TinyBpe tiny(pair_form ? 7 : 11, pair_form);
        const Tokenizer tok = Tokenizer::from_json(tiny.j, "tiny");
        std::mt19937 rng(3);
        for (int trial = 0; trial < 400; ++trial) {
            // Lengths on both sides of the short-word/long-word switch in the merge loop.
            const size_t len = 1 + rng() % (trial % 2 ? 300 : 70);
            std::string word;
            for (size_t i = 0; i < len; ++i) word.push_back("abc"[rng() % (trial % 3 ? 3 : 1)]);
            ASSERT_EQ(tok.encode(word), tiny.reference(word)) << word;
            ASSERT_EQ(tok.decode(tok.encode(word)), word);
        }
    }
}

TEST(Bpe, StringAndPairMergeFormsAreEquivalent) {
    TinyBpe a(5, false), b(5, true);
    const Tokenizer ta = Tokenizer::from_json(a.j, "string form"), tb = Tokenizer::from_json(b.j, "pair form");
    for (const char* s : {"abcabcabc", "aaaaaaaaaaaaaaaa", "cab bac  acb", "ccccbbbbaaaa"}) {
        EXPECT_EQ(ta.encode(s), tb.encode(s)) << s;
    }
}

TEST(Tokenizer, LookupsOnQwen3) {
    const Tokenizer& tok = test::variant("qwen3");
    EXPECT_EQ(tok.vocab_size(), 151669u);
    EXPECT_EQ(tok.added_token_id("<|im_end|>"), 151645);
    EXPECT_EQ(tok.added_token_id("<|endoftext|>"), 151643);
    EXPECT_EQ(tok.added_token_id("<think>"), 151667);
    EXPECT_EQ(tok.added_token_id("hello"), std::nullopt);
    EXPECT_TRUE(tok.is_special(151645));
    EXPECT_FALSE(tok.is_special(151667));  // <think> is added but not special in Qwen3
    EXPECT_TRUE(tok.is_added(151667));
    EXPECT_FALSE(tok.is_special(9707));
    EXPECT_EQ(tok.id_to_piece(9707), "Hello");
    EXPECT_EQ(tok.id_to_piece(1879), "\xC4\xA0world");  // "Ġworld"
    EXPECT_EQ(tok.token_to_id("\xC4\xA0world"), 1879);
    EXPECT_EQ(tok.token_to_id("<|im_start|>"), 151644);
    EXPECT_EQ(tok.token_to_id("no such piece"), std::nullopt);
    EXPECT_EQ(tok.added_tokens().size(), 26u);
    EXPECT_EQ(tok.encode("Hello world"), (std::vector<TokenId>{9707, 1879}));
    EXPECT_EQ(tok.encode(""), std::vector<TokenId>{});
}

TEST(Tokenizer, DecodeOfAnUnknownIdIsAClearError) {
    const Tokenizer& tok = test::variant("qwen3");
    expect_error([&] { tok.decode(std::vector<TokenId>{9707, 151669}); }, ErrorKind::BadInput,
                 {"token id 151669", "out of range"});
    expect_error([&] { tok.decode(std::vector<TokenId>{-1}); }, ErrorKind::BadInput, {"token id -1"});
    expect_error([&] { (void)tok.id_to_piece(1 << 30); }, ErrorKind::BadInput, {"token id 1073741824"});
    StreamDecoder stream(tok);
    expect_error([&] { stream.push(200000); }, ErrorKind::BadInput, {"token id 200000"});
}

TEST(Tokenizer, InvalidUtf8IsRejectedWithItsByteOffset) {
    const Tokenizer& tok = test::variant("qwen3");
    const std::vector<std::pair<std::string, size_t>> cases = {
        {"\xFF", 0},                    // never valid
        {"abc\x80", 3},                 // lone continuation byte
        {"hello \xC3", 6},              // truncated 2-byte character
        {"\xE2\x82", 0},                // truncated 3-byte character
        {"ok \xED\xA0\x80", 3},         // UTF-16 surrogate
        {"\xC0\xAF", 0},                // overlong '/'
        {"12345678\xF4\x90\x80\x80", 8},  // above U+10FFFF, after an ASCII fast-path block
        {std::string("a\0b\xFE", 4), 3},  // NUL is valid; 0xFE is not
    };
    for (const auto& [input, offset] : cases) {
        expect_error([&] { tok.encode(input); }, ErrorKind::BadInput,
                     {"not valid UTF-8", fmt::format("byte offset {}", offset)});
    }
}

TEST(Tokenizer, VeryLongRunsEncodeAndRoundTrip) {
    const Tokenizer& tok = test::variant("qwen3");
    for (const std::string& s : {std::string(1 << 20, ' '), std::string(200000, 'a'), std::string(100000, '\n'),
                                 [] {
                                     std::string cjk;
                                     for (int i = 0; i < 30000; ++i) cjk += "\xE4\xBD\xA0\xE5\xA5\xBD";  // 你好
                                     return cjk;
                                 }()}) {
        const auto ids = tok.encode(s);
        EXPECT_LT(ids.size(), s.size());
        EXPECT_EQ(tok.decode(ids), s);
    }
}

TEST(Tokenizer, ConcurrentEncodesAgree) {
    const Tokenizer& tok = test::variant("qwen3");
    const auto rows = test::read_jsonl(test::data_path("encode.jsonl"));
    std::vector<std::thread> threads;
    std::vector<size_t> mismatches(4, 0);
    for (size_t t = 0; t < mismatches.size(); ++t) {
        threads.emplace_back([&, t] {
            for (size_t i = t; i < rows.size(); i += 2) {
                const auto want = rows[i]["qwen3"].get<std::vector<TokenId>>();
                mismatches[t] += tok.encode(rows[i]["text"].get<std::string>()) != want;
            }
        });
    }
    for (auto& th : threads) th.join();
    for (size_t m : mismatches) EXPECT_EQ(m, 0u);
}

TEST(Utf8, StreamingHelpersAgreeWithLossyDecode) {
    std::string out;
    text::utf8_append_lossy(out, "a\xF0\x9F\x98");
    EXPECT_EQ(out, "a\xEF\xBF\xBD");
    EXPECT_EQ(text::utf8_incomplete_tail("a\xF0\x9F\x98"), 3u);
    EXPECT_EQ(text::utf8_incomplete_tail("a\xF0\x9F\x98\x80"), 0u);
    EXPECT_EQ(text::utf8_incomplete_tail("\xE2\x28"), 0u);  // already invalid: nothing to wait for
    EXPECT_EQ(text::utf8_incomplete_tail("\x80\x80"), 0u);
    out.clear();
    text::utf8_append_lossy(out, "\xE2\x28\xA1");  // maximal subparts: E2 | ( | A1
    EXPECT_EQ(out, "\xEF\xBF\xBD(\xEF\xBF\xBD");
}

// ---- load errors ----

TEST(TokenizerLoad, MissingFileAndDirectory) {
    expect_error([] { Tokenizer::load("/nonexistent/flashmoe/tokenizer.json"); }, ErrorKind::BadModel,
                 {"/nonexistent/flashmoe/tokenizer.json", "not found"});
    const auto dir = std::filesystem::temp_directory_path() / "flashmoe_tok_empty_dir";
    std::filesystem::create_directories(dir);
    expect_error([&] { Tokenizer::load(dir); }, ErrorKind::BadModel, {"tokenizer.json", "not found"});
    std::ofstream(dir / "tokenizer.json") << "{ \"model\": ";
    expect_error([&] { Tokenizer::load(dir); }, ErrorKind::BadModel, {"tokenizer.json", "not valid JSON"});
    std::filesystem::remove_all(dir);
}

TEST(TokenizerLoad, LoadsAModelDirectory) {
    const Tokenizer tok = Tokenizer::load(test::data_path("qwen3"));
    EXPECT_EQ(tok.encode("Hello world"), (std::vector<TokenId>{9707, 1879}));
}

TEST(TokenizerLoad, BadFieldsAreNamed) {
    const TinyBpe tiny(1, false);
    auto expect_bad = [&](auto mutate, std::vector<std::string> fragments) {
        json j = tiny.j;
        mutate(j);
        fragments.insert(fragments.begin(), "tiny.json");
        expect_error([&] { Tokenizer::from_json(j, "tiny.json"); }, ErrorKind::BadModel, fragments);
    };
    expect_bad([](json& j) { j.erase("model"); }, {"model", "missing field"});
    expect_bad([](json& j) { j["model"].erase("vocab"); }, {"model.vocab", "missing field"});
    expect_bad([](json& j) { j["model"].erase("merges"); }, {"model.merges", "missing field"});
    expect_bad([](json& j) { j["model"]["type"] = "WordPiece"; }, {"model.type", "unsupported model type 'WordPiece'"});
    expect_bad([](json& j) { j["model"]["type"] = "Unigram"; }, {"unsupported model type 'Unigram'"});
    expect_bad([](json& j) { j["model"]["vocab"] = json::array(); }, {"model.vocab", "expected an object"});
    expect_bad([](json& j) { j["model"]["vocab"]["zz"] = "seven"; }, {"model.vocab[\"zz\"]", "expected a token id"});
    expect_bad([](json& j) { j["model"]["merges"].push_back("a"); }, {"model.merges[60]", "expected \"left right\""});
    expect_bad([](json& j) { j["model"]["merges"].push_back("a q"); }, {"model.merges[60]", "'aq' is not in model.vocab"});
    expect_bad([](json& j) { j["model"]["merges"].push_back(json::array({"a", 3})); }, {"model.merges[60]"});
    expect_bad([](json& j) { j["model"]["byte_fallback"] = true; }, {"model.byte_fallback"});
    expect_bad([](json& j) { j["model"]["continuing_subword_prefix"] = "##"; }, {"model.continuing_subword_prefix"});
    expect_bad([](json& j) { j["model"]["dropout"] = 0.1; }, {"model.dropout"});
    expect_bad([](json& j) { j["normalizer"] = {{"type", "Lowercase"}}; }, {"normalizer", "unsupported normalizer type 'Lowercase'"});
    expect_bad([](json& j) { j["normalizer"] = {{"type", "Sequence"}, {"normalizers", {{{"type", "NFKC"}}}}}; },
               {"normalizer.normalizers[0]", "'NFKC'"});
    expect_bad([](json& j) { j["pre_tokenizer"] = {{"type", "Metaspace"}}; }, {"pre_tokenizer", "unsupported pre_tokenizer type 'Metaspace'"});
    expect_bad([](json& j) { j["pre_tokenizer"] = nullptr; }, {"pre_tokenizer", "no ByteLevel"});
    expect_bad([](json& j) { j["pre_tokenizer"]["pretokenizers"][0]["behavior"] = "Removed"; },
               {"pre_tokenizer.pretokenizers[0].behavior", "unsupported Split behavior 'Removed'"});
    expect_bad([](json& j) { j["pre_tokenizer"]["pretokenizers"][0]["invert"] = true; }, {"invert"});
    expect_bad([](json& j) { j["pre_tokenizer"]["pretokenizers"][0]["pattern"] = {{"Regex", "(unclosed"}}; },
               {"pre_tokenizer.pretokenizers[0].pattern", "does not compile"});
    expect_bad([](json& j) { j["pre_tokenizer"]["pretokenizers"][1]["add_prefix_space"] = true; }, {"add_prefix_space"});
    expect_bad([](json& j) { j["decoder"] = {{"type", "WordPiece"}}; }, {"decoder", "'WordPiece'"});
    expect_bad([](json& j) { j["decoder"] = nullptr; }, {"decoder", "ByteLevel decoder is required"});
    expect_bad([](json& j) { j["post_processor"] = {{"type", "TemplateProcessing"}}; }, {"post_processor", "'TemplateProcessing'"});
    expect_bad([](json& j) { j["added_tokens"] = {{{"id", 5}}}; }, {"added_tokens[0].content", "missing field"});
    expect_bad([](json& j) { j["added_tokens"] = {{{"id", -3}, {"content", "<x>"}}}; }, {"added_tokens[0].id", "out of range"});
    expect_bad([](json& j) { j["model"]["unk_token"] = "<unk>"; }, {"model.unk_token", "'<unk>' is not in model.vocab"});
}

TEST(TokenizerLoad, SplitWithALiteralStringPattern) {
    TinyBpe tiny(2, false);
    tiny.j["pre_tokenizer"]["pretokenizers"][0]["pattern"] = {{"String", "a.b"}};
    const Tokenizer tok = Tokenizer::from_json(tiny.j, "literal");
    // "a.b" is matched literally (the '.' is no wildcard): "ca.bc" is three words, "caxbc" one.
    std::vector<TokenId> want = tiny.reference("c");
    for (const char* w : {"a.b", "c"}) {
        const auto ids = tiny.reference(w);
        want.insert(want.end(), ids.begin(), ids.end());
    }
    EXPECT_EQ(tok.encode("ca.bc"), want);
    EXPECT_EQ(tok.encode("caxbc"), tiny.reference("caxbc"));
}

TEST(Tokenizer, RandomBytesEitherEncodeAndRoundTripOrFailAsBadInput) {
    const Tokenizer& tok = test::variant("qwen35");
    std::mt19937 rng(17);
    const std::vector<std::string> atoms = {"a", " ", "\n", "<|im_end|>", "\xC3\xA9", "e\xCC\x81", "\xE4\xBD\xA0",
                                            "\xF0\x9F\x98\x80", "'s", "1", "\xC3", "\x80", "\xF0\x9F", "\xFF", "\t"};
    size_t valid = 0;
    for (int trial = 0; trial < 3000; ++trial) {
        std::string s;
        const int n = int(rng() % 24);
        for (int i = 0; i < n; ++i) {
            if (rng() % 4 == 0) {
                s.push_back(char(rng() & 0xFF));
            } else {
                s += atoms[rng() % atoms.size()];
            }
        }
        if (text::utf8_first_invalid(s) == text::kUtf8Valid) {
            ++valid;
            const auto ids = tok.encode(s);
            EXPECT_EQ(tok.decode(ids), text::nfc_normalize(s)) << test::escaped(s);
        } else {
            EXPECT_THROW(tok.encode(s), Error) << test::escaped(s);
        }
    }
    EXPECT_GT(valid, 300u);
}
