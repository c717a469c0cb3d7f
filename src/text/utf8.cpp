#include "text/utf8.h"

#include <cstring>

namespace flashmoe::text {

Utf8Step utf8_step(std::string_view bytes) {
    const auto* u = reinterpret_cast<const unsigned char*>(bytes.data());
    const size_t avail = bytes.size();
    const unsigned char b0 = u[0];
    if (b0 < 0x80) return {Utf8Step::Kind::Valid, 1, b0};

    // Expected length and the allowed range of the second byte (the ranges exclude overlongs,
    // surrogates and code points above U+10FFFF; see Unicode Table 3-7).
    size_t need;
    unsigned char lo = 0x80, hi = 0xBF;
    if (b0 >= 0xC2 && b0 <= 0xDF) {
        need = 2;
    } else if (b0 >= 0xE0 && b0 <= 0xEF) {
        need = 3;
        if (b0 == 0xE0) lo = 0xA0;
        if (b0 == 0xED) hi = 0x9F;
    } else if (b0 >= 0xF0 && b0 <= 0xF4) {
        need = 4;
        if (b0 == 0xF0) lo = 0x90;
        if (b0 == 0xF4) hi = 0x8F;
    } else {
        return {Utf8Step::Kind::Invalid, 1, 0};
    }
    size_t i = 1;
    for (; i < need; ++i) {
        if (i >= avail) return {Utf8Step::Kind::Incomplete, uint8_t(i), 0};
        const unsigned char b = u[i];
        const bool ok = i == 1 ? (b >= lo && b <= hi) : (b >= 0x80 && b <= 0xBF);
        if (!ok) return {Utf8Step::Kind::Invalid, uint8_t(i), 0};
    }
    size_t length = 0;
    const uint32_t cp = utf8_decode_valid(bytes.data(), length);
    return {Utf8Step::Kind::Valid, uint8_t(need), cp};
}

size_t utf8_first_invalid(std::string_view bytes) {
    size_t i = 0;
    const size_t n = bytes.size();
    while (i < n) {
        // Skip ASCII eight bytes at a time: most prompts are mostly ASCII.
        while (i + 8 <= n) {
            uint64_t word;
            std::memcpy(&word, bytes.data() + i, 8);
            if (word & 0x8080808080808080ull) break;
            i += 8;
        }
        if (i >= n) break;
        if (static_cast<unsigned char>(bytes[i]) < 0x80) {
            ++i;
            continue;
        }
        const Utf8Step step = utf8_step(bytes.substr(i));
        if (step.kind != Utf8Step::Kind::Valid) return i;
        i += step.length;
    }
    return kUtf8Valid;
}

void utf8_append(std::string& out, uint32_t cp) {
    if (cp < 0x80) {
        out.push_back(char(cp));
    } else if (cp < 0x800) {
        out.push_back(char(0xC0 | (cp >> 6)));
        out.push_back(char(0x80 | (cp & 0x3F)));
    } else if (cp < 0x10000) {
        out.push_back(char(0xE0 | (cp >> 12)));
        out.push_back(char(0x80 | ((cp >> 6) & 0x3F)));
        out.push_back(char(0x80 | (cp & 0x3F)));
    } else {
        out.push_back(char(0xF0 | (cp >> 18)));
        out.push_back(char(0x80 | ((cp >> 12) & 0x3F)));
        out.push_back(char(0x80 | ((cp >> 6) & 0x3F)));
        out.push_back(char(0x80 | (cp & 0x3F)));
    }
}

void utf8_append_lossy(std::string& out, std::string_view bytes) {
    size_t i = 0;
    size_t clean_from = 0;  // start of the run of valid bytes not yet copied
    while (i < bytes.size()) {
        if (static_cast<unsigned char>(bytes[i]) < 0x80) {
            ++i;
            continue;
        }
        const Utf8Step step = utf8_step(bytes.substr(i));
        if (step.kind == Utf8Step::Kind::Valid) {
            i += step.length;
            continue;
        }
        out.append(bytes.substr(clean_from, i - clean_from));
        utf8_append(out, kReplacementChar);
        i += step.length;
        clean_from = i;
    }
    out.append(bytes.substr(clean_from));
}

size_t utf8_incomplete_tail(std::string_view bytes) {
    // A character is at most 4 bytes, so only a lead byte in the last 3 can start an incomplete one.
    const size_t n = bytes.size();
    for (size_t back = 1; back <= 3 && back <= n; ++back) {
        const auto b = static_cast<unsigned char>(bytes[n - back]);
        if (b < 0x80) return 0;
        if (b >= 0xC0) {
            const Utf8Step step = utf8_step(bytes.substr(n - back));
            return step.kind == Utf8Step::Kind::Incomplete ? back : 0;
        }
    }
    return 0;
}

}  // namespace flashmoe::text
