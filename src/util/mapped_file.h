// A read-only memory map of a whole file (RAII). Thread-safe to read; the mapping lives as long as
// the object. Opening fails with flashmoe::Error (kind Io) naming the path and the OS reason.
#pragma once

#include <cstddef>
#include <cstdint>
#include <span>
#include <string>

namespace flashmoe {

class MappedFile {
public:
    static MappedFile open_or_throw(const std::string& path);

    MappedFile() = default;
    MappedFile(MappedFile&& other) noexcept;
    MappedFile& operator=(MappedFile&& other) noexcept;
    MappedFile(const MappedFile&) = delete;
    MappedFile& operator=(const MappedFile&) = delete;
    ~MappedFile();

    const uint8_t* data() const { return data_; }
    size_t size() const { return size_; }
    std::span<const uint8_t> bytes() const { return {data_, size_}; }
    const std::string& path() const { return path_; }

private:
    std::string path_;
    const uint8_t* data_ = nullptr;
    size_t size_ = 0;
};

// Reads a whole (small) text file; fails with Error (kind Io) naming the path.
std::string read_text_file(const std::string& path);

}  // namespace flashmoe
