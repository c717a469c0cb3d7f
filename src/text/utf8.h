// UTF-8 helpers shared by the tokenizer and the streaming decoder: strict validation (no overlongs,
// no surrogates, nothing above U+10FFFF), code point decoding and encoding, and lossy repair that
// replaces each maximal invalid subpart with U+FFFD (the Unicode "best practice", which is also what
// Rust's String::from_utf8_lossy and therefore HF tokenizers' decode do).
// Pure functions: thread-safe, no allocation except into the caller's string, never throw.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

namespace flashmoe::text {

inline constexpr uint32_t kReplacementChar = 0xFFFD;
inline constexpr size_t kUtf8Valid = std::string_view::npos;

// One step of UTF-8 decoding at the start of `bytes`.
struct Utf8Step {
    enum class Kind : uint8_t {
        Valid,       // `length` bytes form `code_point`
        Invalid,     // the first `length` bytes are a maximal invalid subpart (replace with one U+FFFD)
        Incomplete,  // all `length` bytes (the whole input) are a valid prefix of a longer character
    };
    Kind kind;
    uint8_t length;
    uint32_t code_point;  // only for Valid
};
Utf8Step utf8_step(std::string_view bytes);

// Byte offset of the first byte that does not start a valid character, or kUtf8Valid.
size_t utf8_first_invalid(std::string_view bytes);

// Decodes the character at `p`; the caller guarantees valid UTF-8. Sets `length` to its byte count.
inline uint32_t utf8_decode_valid(const char* p, size_t& length) {
    const auto* u = reinterpret_cast<const unsigned char*>(p);
    if (u[0] < 0x80) {
        length = 1;
        return u[0];
    }
    if (u[0] < 0xE0) {
        length = 2;
        return (uint32_t(u[0] & 0x1F) << 6) | (u[1] & 0x3F);
    }
    if (u[0] < 0xF0) {
        length = 3;
        return (uint32_t(u[0] & 0x0F) << 12) | (uint32_t(u[1] & 0x3F) << 6) | (u[2] & 0x3F);
    }
    length = 4;
    return (uint32_t(u[0] & 0x07) << 18) | (uint32_t(u[1] & 0x3F) << 12) | (uint32_t(u[2] & 0x3F) << 6) |
           (u[3] & 0x3F);
}

// Appends the UTF-8 encoding of a scalar value (the caller guarantees cp <= 0x10FFFF, no surrogate).
void utf8_append(std::string& out, uint32_t cp);

// Appends `bytes` to `out`, replacing every maximal invalid subpart (and a trailing incomplete
// character) with U+FFFD.
void utf8_append_lossy(std::string& out, std::string_view bytes);

// Length of the trailing bytes of `bytes` that form an incomplete but so far valid character
// (0 to 3): what a streaming decoder must hold back until more bytes arrive.
size_t utf8_incomplete_tail(std::string_view bytes);

}  // namespace flashmoe::text
