// Writes a packed model directory (store/packed_format.h). Everything goes into a temporary
// directory next to the destination, renamed into place by finish(); a writer destroyed before
// finish() (an error, an interrupt) removes its temporary directory, so no half model ever carries
// the final name. Not thread-safe. Errors: Error (Io) naming the file.
#pragma once

#include "model/config.h"
#include "ops/tensor.h"
#include "store/packed_format.h"

#include <cstdint>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

namespace flashmoe {

struct DenseTensorSpec {
    std::string name;
    DType dtype = DType::F32;
    std::vector<int64_t> shape;
    size_t bytes() const;
};

class PackedWriter {
public:
    // `overwrite`: replace an existing destination at finish(); otherwise its existence is an error now.
    PackedWriter(std::string out_dir, bool overwrite);
    ~PackedWriter();
    PackedWriter(const PackedWriter&) = delete;
    PackedWriter& operator=(const PackedWriter&) = delete;

    // Dense tensors: declare all of them once, then write each, in the declared order.
    void declare_dense(const std::vector<DenseTensorSpec>& specs);
    void write_dense(const std::string& name, const void* data, size_t bytes);

    // Expert files: set the layout once, then write every (layer, expert) record (any order).
    void set_experts(int64_t num_layers, int64_t num_experts, const ExpertRecordLayout& layout);
    void write_expert(int64_t layer, int64_t expert, const uint8_t* record);  // layout.record_bytes bytes

    // Copies a side file (tokenizer.json, chat template, ...) into the model directory.
    void copy_file(const std::string& source_path, const std::string& name);

    // Writes model.json (config, layout, `info`) and renames the directory into place.
    void finish(const ModelConfig& config, const nlohmann::json& info);

    const std::string& temp_dir() const { return tmp_dir_; }
    uint64_t bytes_written() const { return bytes_written_; }

private:
    std::string out_dir_, tmp_dir_;
    bool overwrite_ = false, finished_ = false;
    int dense_fd_ = -1;
    std::vector<DenseTensorSpec> dense_specs_;
    std::vector<uint64_t> dense_offsets_;
    size_t dense_next_ = 0;
    uint64_t dense_data_start_ = 0;
    std::vector<int> expert_fds_;
    int64_t num_experts_ = 0;
    ExpertRecordLayout layout_;
    std::vector<std::string> side_files_;
    uint64_t bytes_written_ = 0;
};

// Opening a packed model's model.json: checks magic and version (Error BadModel otherwise).
nlohmann::json read_packed_manifest(const std::string& dir);
bool is_packed_model(const std::string& dir);

}  // namespace flashmoe
