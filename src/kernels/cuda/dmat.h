// A weight matrix resident in device memory, as the CUDA kernels see it: the same storage as
// ops/tensor.h's Matrix (rows = outputs, cols = inputs; affine rows are little-endian bit streams of
// `bits`-bit codes with [rows, cols/group] scales and biases), but with device pointers. A plain
// value type shared by host and device code; it borrows the memory it points to.
#pragma once

#include <cstdint>

namespace flashmoe::cuda {

enum DFormat : int32_t { kF32 = 0, kF16 = 1, kBF16 = 2, kAffine = 3 };

struct DMat {
    int32_t format = kF32;
    int32_t bits = 0;
    int32_t group = 0;
    int32_t scale_dtype = kBF16;  // kF32, kF16 or kBF16 (affine only)
    int64_t rows = 0;
    int64_t cols = 0;
    int64_t row_bytes = 0;  // bytes of `data` per row
    const void* data = nullptr;
    const void* scales = nullptr;
    const void* biases = nullptr;
};

}  // namespace flashmoe::cuda
