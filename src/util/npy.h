// NumPy .npy files of float32 arrays (format 1.0, little-endian, C order): written by
// `flashmoe logits`, read by tests. Writes go to a temporary name and are renamed into place, so a
// failed write never leaves a partial file. Errors are flashmoe::Error naming the path.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

namespace flashmoe {

struct NpyArray {
    std::vector<int64_t> shape;
    std::vector<float> data;
};

void write_npy_f32(const std::string& path, const std::vector<int64_t>& shape, const float* data);
NpyArray read_npy_f32(const std::string& path);

}  // namespace flashmoe
