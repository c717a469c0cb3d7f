// Reading safetensors checkpoints: one file, or shards listed by model.safetensors.index.json.
// Files are memory-mapped; TensorRef views point into the maps and live as long as the
// SafetensorsSet. Opening validates every header (offsets inside the file, sizes matching dtype and
// shape, no overlap with the header) and fails with flashmoe::Error (kind BadModel or Io) naming the
// file and tensor. Read-only after opening, so safe to share between threads.
#pragma once

#include "ops/tensor.h"
#include "util/mapped_file.h"

#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <vector>

namespace flashmoe {

struct TensorRef {
    std::string name;
    DType dtype = DType::F32;
    std::vector<int64_t> shape;
    const uint8_t* data = nullptr;
    size_t bytes = 0;
    const std::string* file = nullptr;  // path of the file holding it

    int64_t numel() const;
    std::string shape_string() const;  // "[2048, 4096]"
};

class SafetensorsSet {
public:
    // `dir` holds model.safetensors, or model.safetensors.index.json and its shards, or (failing both)
    // any *.safetensors files, all of which are read.
    static SafetensorsSet open_dir(const std::string& dir);
    // One file.
    static SafetensorsSet open_file(const std::string& path);

    const TensorRef* find(const std::string& name) const;
    const TensorRef& get(const std::string& name) const;  // fails naming the missing tensor
    const std::map<std::string, TensorRef>& tensors() const { return tensors_; }
    const std::vector<std::string>& files() const { return paths_; }

private:
    void add_file(const std::string& path);

    std::vector<std::unique_ptr<MappedFile>> maps_;
    std::vector<std::string> paths_;
    std::map<std::string, TensorRef> tensors_;
};

// Parses one safetensors header from a whole-file buffer (exposed for tests and fuzzing).
std::vector<TensorRef> parse_safetensors(const uint8_t* data, size_t size, const std::string& path);

}  // namespace flashmoe
