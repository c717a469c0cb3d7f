// Small facts about sizes and the running process.
#pragma once

#include <cstdint>
#include <string>

namespace flashmoe {

// "6GiB", "512MiB", "2G", "1.5GB", "4096" -> bytes. K/M/G/T and KiB/MiB/GiB/TiB are powers of 1024,
// KB/MB/GB/TB powers of 1000. Fails (BadInput) naming `what` and the text.
uint64_t parse_size(const std::string& text, const std::string& what);

uint64_t peak_rss_bytes();     // high-water mark of resident memory
uint64_t current_rss_bytes();  // resident memory now

}  // namespace flashmoe
