// Exactness against HF tokenizers: every fixture string must encode to the very ids HF produced
// (tests/data/tokenizer/encode.jsonl, made by tools/tokenizer_fixtures/make_fixtures.py), decode must
// reproduce HF's text (lossy U+FFFD included), and streaming decode must agree with full decode.
#include "text/tokenizer.h"
#include "text/unicode_nfc.h"
#include "text/utf8.h"
#include "tokenizer_test_util.h"

#include <gtest/gtest.h>

#include <fmt/ranges.h>

using namespace flashmoe;
using flashmoe::test::escaped;

namespace {

const std::vector<nlohmann::json>& encode_rows() {
    static const auto rows = test::read_jsonl(test::data_path("encode.jsonl"));
    return rows;
}

// Compares one variant on every fixture row; `key` names the expected ids (falls back to qwen3's).
void expect_matches_hf(const std::string& variant, const std::string& key, const EncodeOptions& options) {
    const Tokenizer& tok = test::variant(variant);
    size_t checked = 0, mismatches = 0;
    for (const auto& row : encode_rows()) {
        const std::string& text = row["text"].get_ref<const std::string&>();
        const auto expected = row.value(key, row["qwen3"]).get<std::vector<TokenId>>();
        const auto got = tok.encode(text, options);
        ++checked;
        if (got != expected && ++mismatches <= 10) {
            ADD_FAILURE() << variant << " mismatch for \"" << escaped(text) << "\"\n  HF:   "
                          << fmt::format("{}", fmt::join(expected, ",")) << "\n  ours: "
                          << fmt::format("{}", fmt::join(got, ","));
        }
    }
    EXPECT_EQ(mismatches, 0u) << "of " << checked;
    EXPECT_GE(checked, 2000u);
}

}  // namespace

TEST(TokenizerFixtures, Qwen3EncodesLikeHf) { expect_matches_hf("qwen3", "qwen3", {}); }
TEST(TokenizerFixtures, Qwen35RegexEncodesLikeHf) { expect_matches_hf("qwen35", "qwen35", {}); }
TEST(TokenizerFixtures, AddedTokenFlagsEncodeLikeHf) { expect_matches_hf("qwen3_flags", "qwen3_flags", {}); }
TEST(TokenizerFixtures, UnparsedSpecialTokensEncodeLikeHf) {
    expect_matches_hf("qwen3", "qwen3_nospecial", EncodeOptions{.parse_special = false});
}

TEST(TokenizerFixtures, FixturesExerciseEveryVariant) {
    // Guards against fixtures in which the variants never differ (then their tests prove little).
    size_t qwen35 = 0, flags = 0, nospecial = 0;
    for (const auto& row : encode_rows()) {
        qwen35 += row.contains("qwen35");
        flags += row.contains("qwen3_flags");
        nospecial += row.contains("qwen3_nospecial");
    }
    EXPECT_GE(qwen35, 50u);
    EXPECT_GE(flags, 50u);
    EXPECT_GE(nospecial, 20u);
}

TEST(TokenizerFixtures, DecodeMatchesHfIncludingBrokenUtf8) {
    const Tokenizer& tok = test::variant("qwen3");
    const auto rows = test::read_jsonl(test::data_path("decode.jsonl"));
    ASSERT_GE(rows.size(), 500u);
    size_t lossy = 0;
    for (const auto& row : rows) {
        const auto ids = row["ids"].get<std::vector<TokenId>>();
        const std::string& text = row["text"].get_ref<const std::string&>();
        EXPECT_EQ(tok.decode(ids), text) << fmt::format("ids {}", fmt::join(ids, ","));
        EXPECT_EQ(tok.decode(ids, DecodeOptions{.skip_special = true}), row["text_skip"].get<std::string>());
        lossy += text.find("\xEF\xBF\xBD") != std::string::npos;
    }
    EXPECT_GE(lossy, 30u) << "the fixture should hold many ids that cut characters";
}

TEST(TokenizerFixtures, DecodeOfEncodeGivesBackTheNormalizedText) {
    const Tokenizer& tok = test::variant("qwen3");
    size_t already_nfc = 0;
    for (const auto& row : encode_rows()) {
        const std::string& text = row["text"].get_ref<const std::string&>();
        const std::string nfc = text::nfc_normalize(text);
        const std::string back = tok.decode(tok.encode(text));
        EXPECT_EQ(back, nfc) << escaped(text);
        if (nfc == text) {
            ++already_nfc;
            EXPECT_EQ(back, text);
        }
    }
    EXPECT_GE(already_nfc, 2000u);
}

namespace {
void expect_stream_equals_full(const Tokenizer& tok, const std::vector<TokenId>& ids, DecodeOptions options) {
    StreamDecoder stream(tok, options);
    std::string joined;
    for (TokenId id : ids) {
        const std::string chunk = stream.push(id);
        ASSERT_EQ(text::utf8_first_invalid(chunk), text::kUtf8Valid) << escaped(chunk);
        EXPECT_LE(stream.pending_bytes(), 3u);
        joined += chunk;
    }
    const std::string tail = stream.flush();
    ASSERT_EQ(text::utf8_first_invalid(tail), text::kUtf8Valid);
    joined += tail;
    EXPECT_EQ(joined, tok.decode(ids, options)) << fmt::format("ids {}", fmt::join(ids, ","));
}
}  // namespace

TEST(TokenizerFixtures, StreamingDecodeEqualsFullDecodeAndEmitsOnlyWholeCharacters) {
    const Tokenizer& tok = test::variant("qwen3");
    for (const auto& row : encode_rows()) {
        expect_stream_equals_full(tok, row["qwen3"].get<std::vector<TokenId>>(), {});
    }
    for (const auto& row : test::read_jsonl(test::data_path("decode.jsonl"))) {
        const auto ids = row["ids"].get<std::vector<TokenId>>();
        expect_stream_equals_full(tok, ids, {});
        expect_stream_equals_full(tok, ids, DecodeOptions{.skip_special = true});
    }
}

TEST(TokenizerFixtures, StreamingHoldsBackSplitCharacters) {
    const Tokenizer& tok = test::variant("qwen3");
    // "🧑" is F0 9F A7 91: feed it one single-byte token at a time.
    std::vector<TokenId> byte_tokens;
    for (unsigned char b : std::string("\xF0\x9F\xA7\x91!")) {
        std::string bytes;
        TokenId found = -1;
        for (TokenId id = 0; id < TokenId(tok.vocab_size()) && found < 0; ++id) {
            bytes.clear();
            tok.append_token_bytes(id, bytes);
            if (bytes.size() == 1 && static_cast<unsigned char>(bytes[0]) == b) found = id;
        }
        ASSERT_GE(found, 0);
        byte_tokens.push_back(found);
    }
    StreamDecoder stream(tok);
    EXPECT_EQ(stream.push(byte_tokens[0]), "");
    EXPECT_EQ(stream.pending_bytes(), 1u);
    EXPECT_EQ(stream.push(byte_tokens[1]), "");
    EXPECT_EQ(stream.push(byte_tokens[2]), "");
    EXPECT_EQ(stream.push(byte_tokens[3]), "\xF0\x9F\xA7\x91");
    EXPECT_EQ(stream.push(byte_tokens[4]), "!");
    EXPECT_EQ(stream.flush(), "");
    // An unfinished character at the end is flushed as one U+FFFD.
    stream.push(byte_tokens[0]);
    stream.push(byte_tokens[1]);
    EXPECT_EQ(stream.flush(), "\xEF\xBF\xBD");
    EXPECT_EQ(stream.pending_bytes(), 0u);
}

TEST(Nfc, MatchesPythonUnicodedata) {
    const auto rows = test::read_jsonl(test::data_path("nfc.jsonl"));
    ASSERT_GE(rows.size(), 5000u);
    size_t failures = 0;
    for (const auto& row : rows) {
        const std::string& in = row["in"].get_ref<const std::string&>();
        const std::string& want = row["nfc"].get_ref<const std::string&>();
        const std::string got = text::nfc_normalize(in);
        if (got != want && ++failures <= 20) {
            ADD_FAILURE() << "NFC(\"" << escaped(in) << "\") = \"" << escaped(got) << "\", want \"" << escaped(want)
                          << "\"";
        }
    }
    EXPECT_EQ(failures, 0u);
}
