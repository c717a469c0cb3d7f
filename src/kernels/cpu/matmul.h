// Matrix products of a weight matrix with fp32 activations on the CPU: the hot path of every
// forward. Thread-safe (no shared mutable state); inputs are never modified.
//
//   y[t, r] = sum_c W[r, c] * x[t, c]     t in [0, n), r in [0, W.rows), c in [0, W.cols)
//
// x is [n, W.cols] and y is [n, W.rows], both fp32 row-major, not aliased. n == 1 is a
// matrix-vector product. Accumulation is fp32. The scalar kernels are the reference; each SIMD
// kernel is tested against them. Which instruction set runs is decided once per process
// (FLASHMOE_ISA=scalar|avx2|avx512 overrides the detected best).
#pragma once

#include "ops/tensor.h"

#include <cstdint>
#include <string_view>

namespace flashmoe {

class ThreadPool;

enum class Isa { Scalar, Avx2, Avx512 };

Isa detected_isa();                 // best the CPU supports
Isa active_isa();                   // what matmul uses (detected, or FLASHMOE_ISA)
std::string_view isa_name(Isa isa);

// Rows [row_begin, row_end) of y, single-threaded, with the given instruction set.
void matmul_rows(Isa isa, const Matrix& w, const float* x, int64_t n, float* y, int64_t row_begin,
                 int64_t row_end);

// All rows, split across the pool (nullptr: run on the calling thread).
void matmul(const Matrix& w, const float* x, int64_t n, float* y, ThreadPool* pool);

// Dequantises/converts row `row` of w into fp32 `out` [w.cols] (reference semantics for every format).
void dequantize_row(const Matrix& w, int64_t row, float* out);

}  // namespace flashmoe
