// Element types and borrowed views of weight matrices. Views never own memory: the weight file
// (mmap) or the expert cache that produced them must outlive every use.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

namespace flashmoe {

enum class DType : uint8_t { F32, F16, BF16, F64, I8, U8, I16, I32, U32, I64, U64, Bool };

size_t dtype_size(DType dtype);
std::string_view dtype_name(DType dtype);   // "f32", "bf16", ... (lower case, as printed in errors)
bool parse_safetensors_dtype(std::string_view name, DType* out);  // "F32", "BF16", ...

// How a 2-D weight matrix is stored. Rows are outputs, columns are inputs: y = W x.
enum class WeightFormat : uint8_t {
    F32,
    F16,
    BF16,
    Affine,  // MLX affine quantisation: w = scale * q + bias per group of `group_size` columns
};

std::string_view weight_format_name(WeightFormat format);

// A borrowed weight matrix [rows, cols].
// Dense formats: `data` holds rows*cols elements, row-major.
// Affine: `data` holds each row as a little-endian bit stream of `bits`-bit codes (column c of a row at
// bit c*bits of that row; each row is cols*bits/8 bytes, a whole number of uint32 words), `scales` and
// `biases` hold [rows, cols/group_size] values of `scale_dtype` (bf16, f16 or f32).
struct Matrix {
    WeightFormat format = WeightFormat::F32;
    int64_t rows = 0;
    int64_t cols = 0;
    const void* data = nullptr;
    int bits = 0;
    int group_size = 0;
    const void* scales = nullptr;
    const void* biases = nullptr;
    DType scale_dtype = DType::BF16;

    size_t row_bytes() const;  // bytes of `data` per row
    size_t data_bytes() const { return row_bytes() * size_t(rows); }
    size_t scale_bytes() const;  // bytes of `scales` (and of `biases`) in all; 0 for dense formats
};

}  // namespace flashmoe
