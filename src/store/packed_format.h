// The packed model (a ".fmoe" directory), flashmoe's own format:
//
//   model.json               magic, format version, the text config, the expert record layout, the
//                            quantisation, and the list of tokenizer/template files carried along
//   dense.safetensors        every non-expert tensor, in the HF CausalLM naming ("model.layers.N...")
//                            with quantised matrices as MLX does (u32 .weight + .scales + .biases),
//                            zero-centred norms stored as w (not 1 + w), each tensor 64-byte aligned
//   experts/layer_NNN.bin    one record per expert: gate, up, down (weights, scales, biases)
//                            contiguous, each record starting at a multiple of 4 KiB, so one expert is
//                            one read and O_DIRECT works
//   tokenizer.json, ...      copied from the source snapshot when present
//
// Readers refuse other magics and versions with an Error naming what they found.
#pragma once

#include "ops/tensor.h"

#include <nlohmann/json.hpp>

#include <array>
#include <cstdint>
#include <string>

namespace flashmoe {

inline constexpr const char* kPackedMagic = "flashmoe-packed";
inline constexpr int kPackedVersion = 1;
inline constexpr size_t kExpertAlignment = 4096;

// Where one matrix of an expert sits inside its record.
struct RecordMatrix {
    WeightFormat format = WeightFormat::BF16;
    int64_t rows = 0, cols = 0;
    int bits = 0, group_size = 0;
    DType scale_dtype = DType::BF16;
    size_t data_offset = 0, scales_offset = 0, biases_offset = 0;

    size_t data_bytes() const;
    size_t scale_bytes() const;  // of scales, and again of biases; 0 for dense formats
    Matrix view(const uint8_t* record) const;
};

// The same layout serves every expert of every layer.
struct ExpertRecordLayout {
    std::array<RecordMatrix, 3> matrices;  // gate, up, down
    size_t record_bytes = 0;               // payload
    size_t record_stride = 0;              // record_bytes rounded up to kExpertAlignment

    // How one matrix is stored (rows/cols/offsets are filled in by make()).
    struct Storage {
        WeightFormat format = WeightFormat::BF16;
        int bits = 0, group_size = 0;
        DType scale_dtype = DType::BF16;
    };
    // Lays gate [I, H], up [I, H], down [H, I] out back to back, each stored as given.
    static ExpertRecordLayout make(int64_t hidden, int64_t intermediate, const std::array<Storage, 3>& storage);
    nlohmann::json to_json() const;
    static ExpertRecordLayout from_json(const nlohmann::json& j, const std::string& source);
};

std::string expert_file_name(int64_t layer);  // "experts/layer_007.bin"

}  // namespace flashmoe
