#include "ops/tensor.h"

namespace flashmoe {

size_t dtype_size(DType dtype) {
    switch (dtype) {
        case DType::F64: case DType::I64: case DType::U64: return 8;
        case DType::F32: case DType::I32: case DType::U32: return 4;
        case DType::F16: case DType::BF16: case DType::I16: return 2;
        case DType::I8: case DType::U8: case DType::Bool: return 1;
    }
    return 0;
}

std::string_view dtype_name(DType dtype) {
    switch (dtype) {
        case DType::F32: return "f32";
        case DType::F16: return "f16";
        case DType::BF16: return "bf16";
        case DType::F64: return "f64";
        case DType::I8: return "i8";
        case DType::U8: return "u8";
        case DType::I16: return "i16";
        case DType::I32: return "i32";
        case DType::U32: return "u32";
        case DType::I64: return "i64";
        case DType::U64: return "u64";
        case DType::Bool: return "bool";
    }
    return "?";
}

bool parse_safetensors_dtype(std::string_view name, DType* out) {
    struct Entry { std::string_view name; DType dtype; };
    static constexpr Entry table[] = {
        {"F32", DType::F32}, {"F16", DType::F16}, {"BF16", DType::BF16}, {"F64", DType::F64},
        {"I8", DType::I8},   {"U8", DType::U8},   {"I16", DType::I16},   {"I32", DType::I32},
        {"U32", DType::U32}, {"I64", DType::I64}, {"U64", DType::U64},   {"BOOL", DType::Bool},
    };
    for (const auto& e : table) {
        if (e.name == name) {
            *out = e.dtype;
            return true;
        }
    }
    return false;
}

std::string_view weight_format_name(WeightFormat format) {
    switch (format) {
        case WeightFormat::F32: return "f32";
        case WeightFormat::F16: return "f16";
        case WeightFormat::BF16: return "bf16";
        case WeightFormat::Affine: return "affine";
    }
    return "?";
}

size_t Matrix::row_bytes() const {
    switch (format) {
        case WeightFormat::F32: return size_t(cols) * 4;
        case WeightFormat::F16: case WeightFormat::BF16: return size_t(cols) * 2;
        case WeightFormat::Affine: return size_t(cols) * size_t(bits) / 8;
    }
    return 0;
}

size_t Matrix::scale_bytes() const {
    if (format != WeightFormat::Affine || group_size == 0) return 0;
    return size_t(rows) * size_t(cols / group_size) * dtype_size(scale_dtype);
}

}  // namespace flashmoe
