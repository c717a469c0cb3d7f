// Unicode data for NFC normalisation, generated into unicode_nfc_tables.cpp by
// tools/tokenizer_fixtures/gen_nfc_tables.py from Python's unicodedata. Read-only constants:
// thread-safe, no failure modes. Only unicode_nfc.cpp should need these.
#pragma once

#include <cstddef>
#include <cstdint>

namespace flashmoe::text::nfc_tables {

struct NfcProps {
    uint8_t ccc;   // canonical combining class
    uint8_t safe;  // 1: starter with NFC_QC=Yes (normalisation never looks back past it)
};
struct DecompEntry {
    uint32_t cp;      // character with a canonical decomposition (Hangul syllables excluded)
    uint32_t offset;  // into kDecompPool
    uint32_t length;  // full (recursive) decomposition, canonically ordered
};
struct CompEntry {
    uint64_t key;  // (first << 21) | second, sorted ascending
    uint32_t composite;
};

extern const char* const kUnicodeVersion;
extern const NfcProps kProps[];
extern const uint16_t kStage1[];  // code point >> 8 -> block number
extern const uint8_t kStage2[];   // block * 256 + (code point & 255) -> index into kProps
extern const uint32_t kDecompPool[];
extern const DecompEntry kDecomps[];
extern const CompEntry kComps[];
extern const size_t kNumDecomps;
extern const size_t kNumComps;

inline const NfcProps& props_of(uint32_t cp) {
    return kProps[kStage2[size_t(kStage1[cp >> 8]) * 256 + (cp & 255)]];
}

}  // namespace flashmoe::text::nfc_tables
