#include "text/unicode_nfc.h"

#include "text/unicode_nfc_tables.h"
#include "text/utf8.h"

#include <algorithm>
#include <cstdint>
#include <vector>

namespace flashmoe::text {
namespace {

using nfc_tables::props_of;

// Hangul syllables decompose and compose algorithmically (Unicode section 3.12).
constexpr uint32_t kSBase = 0xAC00, kLBase = 0x1100, kVBase = 0x1161, kTBase = 0x11A7;
constexpr uint32_t kLCount = 19, kVCount = 21, kTCount = 28, kNCount = kVCount * kTCount,
                   kSCount = kLCount * kNCount;

void decompose_into(uint32_t cp, std::vector<uint32_t>& buf) {
    if (cp >= kSBase && cp < kSBase + kSCount) {
        const uint32_t s = cp - kSBase;
        buf.push_back(kLBase + s / kNCount);
        buf.push_back(kVBase + (s % kNCount) / kTCount);
        if (s % kTCount != 0) buf.push_back(kTBase + s % kTCount);
        return;
    }
    const auto* begin = nfc_tables::kDecomps;
    const auto* end = begin + nfc_tables::kNumDecomps;
    const auto* it = std::lower_bound(begin, end, cp, [](const auto& e, uint32_t c) { return e.cp < c; });
    if (it != end && it->cp == cp) {
        buf.insert(buf.end(), nfc_tables::kDecompPool + it->offset,
                   nfc_tables::kDecompPool + it->offset + it->length);
    } else {
        buf.push_back(cp);
    }
}

// The primary composite of (a, b), or 0 when there is none.
uint32_t compose_pair(uint32_t a, uint32_t b) {
    if (a >= kLBase && a < kLBase + kLCount && b >= kVBase && b < kVBase + kVCount) {
        return kSBase + ((a - kLBase) * kVCount + (b - kVBase)) * kTCount;
    }
    if (a >= kSBase && a < kSBase + kSCount && (a - kSBase) % kTCount == 0 && b > kTBase &&
        b < kTBase + kTCount) {
        return a + (b - kTBase);
    }
    const uint64_t key = (uint64_t(a) << 21) | b;
    const auto* begin = nfc_tables::kComps;
    const auto* end = begin + nfc_tables::kNumComps;
    const auto* it = std::lower_bound(begin, end, key, [](const auto& e, uint64_t k) { return e.key < k; });
    return it != end && it->key == key ? it->composite : 0;
}

// Normalises one segment (which starts at a safe starter or at the text start) and appends it.
void normalize_segment(std::string_view seg, std::string& out) {
    std::vector<uint32_t> buf;
    buf.reserve(seg.size() + 8);
    for (size_t i = 0; i < seg.size();) {
        size_t len = 0;
        decompose_into(utf8_decode_valid(seg.data() + i, len), buf);
        i += len;
    }
    // Canonical ordering: stable insertion sort by combining class inside runs of non-starters.
    for (size_t i = 1; i < buf.size(); ++i) {
        const uint8_t c = props_of(buf[i]).ccc;
        if (c == 0) continue;
        size_t j = i;
        while (j > 0 && props_of(buf[j - 1]).ccc > c) {
            std::swap(buf[j], buf[j - 1]);
            --j;
        }
    }
    // Canonical composition (UAX #15): a character joins the last starter unless blocked.
    size_t starter = 0;
    int last_class = props_of(buf[0]).ccc == 0 ? 0 : 256;
    size_t kept = 1;
    for (size_t i = 1; i < buf.size(); ++i) {
        const uint32_t ch = buf[i];
        const int cls = props_of(ch).ccc;
        const uint32_t composite = last_class == 256 ? 0 : compose_pair(buf[starter], ch);
        if (composite != 0 && (last_class < cls || last_class == 0)) {
            buf[starter] = composite;
            continue;
        }
        if (cls == 0) {
            starter = kept;
        }
        last_class = cls;
        buf[kept++] = ch;
    }
    for (size_t i = 0; i < kept; ++i) utf8_append(out, buf[i]);
}

}  // namespace

bool nfc_normalize_into(std::string_view in, std::string& out) {
    const size_t n = in.size();
    size_t copied = 0;     // bytes of `in` already emitted
    size_t last_safe = 0;  // offset of the last safe starter seen (a restart point)
    bool changed = false;
    size_t i = 0;
    const size_t out_start = out.size();
    while (i < n) {
        if (static_cast<unsigned char>(in[i]) < 0x80) {
            last_safe = i++;
            continue;
        }
        size_t len = 0;
        const uint32_t cp = utf8_decode_valid(in.data() + i, len);
        if (props_of(cp).safe) {
            last_safe = i;
            i += len;
            continue;
        }
        // A character that may change or reorder: normalise from the last restart point up to the
        // next one.
        size_t end = i + len;
        while (end < n) {
            size_t l2 = 0;
            const uint32_t c2 = utf8_decode_valid(in.data() + end, l2);
            if (props_of(c2).safe) break;
            end += l2;
        }
        const size_t seg_start = std::max(last_safe, copied);
        out.append(in.substr(copied, seg_start - copied));
        const size_t before = out.size();
        normalize_segment(in.substr(seg_start, end - seg_start), out);
        if (!changed) {
            changed = out.size() - before != end - seg_start ||
                      out.compare(before, end - seg_start, in.data() + seg_start, end - seg_start) != 0;
        }
        copied = end;
        last_safe = end;
        i = end;
    }
    if (!changed) {
        out.resize(out_start);
        return false;
    }
    out.append(in.substr(copied));
    return true;
}

std::string nfc_normalize(std::string_view in) {
    std::string out;
    if (!nfc_normalize_into(in, out)) out.assign(in);
    return out;
}

const char* nfc_unicode_version() { return nfc_tables::kUnicodeVersion; }

}  // namespace flashmoe::text
