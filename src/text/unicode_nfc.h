// Unicode Normalization Form C (canonical decomposition, canonical ordering, canonical composition)
// over UTF-8, with data generated from Python's unicodedata (unicode_nfc_tables.h says which version).
// Text that is already NFC (all ASCII, most text in any script) is detected by a quick check and
// copied through; only the spans around characters that might change are normalised.
// Pure functions: thread-safe, never throw; the input must be valid UTF-8 (check it first).
#pragma once

#include <string>
#include <string_view>

namespace flashmoe::text {

// Appends NFC(`in`) to `out`. Returns false (and appends nothing) when `in` is already NFC, so the
// caller can keep using `in` without a copy.
bool nfc_normalize_into(std::string_view in, std::string& out);

// NFC(`in`) as a new string.
std::string nfc_normalize(std::string_view in);

// The Unicode version of the normalisation data.
const char* nfc_unicode_version();

}  // namespace flashmoe::text
