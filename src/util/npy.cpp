#include "util/npy.h"

#include "util/error.h"
#include "util/mapped_file.h"

#include <fmt/format.h>

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <regex>

namespace flashmoe {

void write_npy_f32(const std::string& path, const std::vector<int64_t>& shape, const float* data) {
    std::string dims;
    int64_t count = 1;
    for (int64_t d : shape) {
        dims += fmt::format("{}, ", d);
        count *= d;
    }
    if (shape.size() > 1) dims.resize(dims.size() - 2);
    std::string header = fmt::format("{{'descr': '<f4', 'fortran_order': False, 'shape': ({}), }}", dims);
    size_t total = 10 + header.size() + 1;
    header.append((64 - total % 64) % 64, ' ');
    header.push_back('\n');

    std::string tmp = path + ".tmp";
    FILE* f = std::fopen(tmp.c_str(), "wb");
    if (!f) fail(ErrorKind::Io, "cannot create {}: {}", tmp, std::strerror(errno));
    const unsigned char magic[8] = {0x93, 'N', 'U', 'M', 'P', 'Y', 1, 0};
    uint16_t len = uint16_t(header.size());
    unsigned char len_le[2] = {uint8_t(len & 0xff), uint8_t(len >> 8)};
    bool ok = std::fwrite(magic, 1, 8, f) == 8 && std::fwrite(len_le, 1, 2, f) == 2 &&
              std::fwrite(header.data(), 1, header.size(), f) == header.size() &&
              std::fwrite(data, sizeof(float), size_t(count), f) == size_t(count);
    ok = (std::fclose(f) == 0) && ok;
    if (!ok) {
        std::remove(tmp.c_str());
        fail(ErrorKind::Io, "cannot write {}: {}", path, std::strerror(errno));
    }
    if (std::rename(tmp.c_str(), path.c_str()) != 0) {
        int err = errno;
        std::remove(tmp.c_str());
        fail(ErrorKind::Io, "cannot rename {} to {}: {}", tmp, path, std::strerror(err));
    }
}

NpyArray read_npy_f32(const std::string& path) {
    MappedFile file = MappedFile::open_or_throw(path);
    const uint8_t* p = file.data();
    if (file.size() < 10 || std::memcmp(p, "\x93NUMPY", 6) != 0) fail(ErrorKind::BadInput, "{}: not a .npy file", path);
    size_t header_len, offset;
    if (p[6] == 1) {
        header_len = size_t(p[8]) | (size_t(p[9]) << 8);
        offset = 10;
    } else {
        if (file.size() < 12) fail(ErrorKind::BadInput, "{}: truncated .npy header", path);
        header_len = size_t(p[8]) | (size_t(p[9]) << 8) | (size_t(p[10]) << 16) | (size_t(p[11]) << 24);
        offset = 12;
    }
    if (offset + header_len > file.size()) fail(ErrorKind::BadInput, "{}: truncated .npy header", path);
    std::string header(reinterpret_cast<const char*>(p + offset), header_len);
    if (header.find("'<f4'") == std::string::npos || header.find("'fortran_order': False") == std::string::npos) {
        fail(ErrorKind::BadInput, "{}: only little-endian float32 C-order arrays are supported", path);
    }
    std::smatch m;
    if (!std::regex_search(header, m, std::regex("'shape': \\(([0-9, ]*)\\)"))) {
        fail(ErrorKind::BadInput, "{}: .npy header has no shape", path);
    }
    NpyArray out;
    std::string dims = m[1];
    int64_t count = 1;
    const std::regex number("[0-9]+");
    for (auto it = std::sregex_iterator(dims.begin(), dims.end(), number); it != std::sregex_iterator(); ++it) {
        out.shape.push_back(std::stoll(it->str()));
        count *= out.shape.back();
    }
    size_t bytes = size_t(count) * 4;
    if (offset + header_len + bytes > file.size()) fail(ErrorKind::BadInput, "{}: data is truncated", path);
    out.data.resize(static_cast<size_t>(count));
    std::memcpy(out.data.data(), p + offset + header_len, bytes);
    return out;
}

}  // namespace flashmoe
