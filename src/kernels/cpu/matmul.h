// Matrix products of a weight matrix with fp32 activations on the CPU: the hot path of every
// forward. Thread-safe (no shared mutable state); inputs are never modified.
//
//   y[t, r] = sum_c W[r, c] * x[t, c]     t in [0, n), r in [0, W.rows), c in [0, W.cols)
//
// x is [n, W.cols] and y is [n, W.rows], both fp32 row-major, not aliased. n == 1 is a
// matrix-vector product. Accumulation is fp32. The scalar kernels are the reference; each SIMD
// kernel is tested against them. Which instruction set runs is decided once per process
// (FLASHMOE_ISA=scalar|avx2|avx512 overrides the detected best).
//
// Activations on MLX affine 4- and 8-bit weights: two semantics, chosen per process and changeable
// at any time (set_matmul_activations, or FLASHMOE_MATMUL_ACT=f32|int8 read once at start-up):
//   F32:  the exact product above (the reference every dense test holds to).
//   Int8: each token's activations are quantised per weight group of G columns,
//           d = max|x| / 127,  xq = round_half_even(x * (127 / max|x|)) in [-127, 127],
//         and the product is that of the dequantised weights with the dequantised activations,
//           y = sum_g  s_g d_g sum_{c in g} q_c xq_c  +  b_g d_g sum_{c in g} xq_c
//         with exact integer dot products (AVX-512 VNNI) and fp32 elsewhere. The error against F32
//         is sum_c w_c (x_c - d xq_c), at most half a quantisation step per column: 0.5 to 0.7% rms
//         of y on random weights and Gaussian activations (tests/kernels/test_matmul_q8.cpp).
// Int8 is the default where the CPU has AVX-512 VNNI (every other format, and CPUs without VNNI,
// run the exact kernels whatever the mode says).
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

enum class MatmulActivations { F32, Int8 };

// Whether this CPU has the int8 kernels (AVX-512 VNNI, with AVX-512 active).
bool int8_activations_available();
// The mode matmul uses now: FLASHMOE_MATMUL_ACT if set, else Int8 when available, else F32.
MatmulActivations matmul_activations();
// The mode for a backend that has (or lacks) int8 kernels of its own, such as the CUDA one: the
// mode chosen by FLASHMOE_MATMUL_ACT or set_matmul_activations, else Int8 where it has them.
MatmulActivations matmul_activations_for(bool backend_has_int8);
// Thread-safe; takes effect from the next matmul call. Int8 on a CPU without the int8 kernels
// (int8_activations_available() == false) runs the exact kernels, except under FLASHMOE_ISA=scalar,
// which runs the scalar int8 reference.
void set_matmul_activations(MatmulActivations mode);
std::string_view matmul_activations_name(MatmulActivations mode);            // "f32", "int8"
bool parse_matmul_activations(std::string_view name, MatmulActivations* out);  // false: unknown name

// Rows [row_begin, row_end) of y, single-threaded, with the given instruction set and activation
// semantics (F32 by default, whatever the process-wide mode: the exact reference for tests).
void matmul_rows(Isa isa, const Matrix& w, const float* x, int64_t n, float* y, int64_t row_begin,
                 int64_t row_end, MatmulActivations act = MatmulActivations::F32);

// All rows, split across the pool (nullptr: run on the calling thread).
void matmul(const Matrix& w, const float* x, int64_t n, float* y, ThreadPool* pool);

// ya = A x and yb = B x over the same activations (an FFN's gate and up projections) as one
// parallel loop, preparing (quantising) x once when A and B share format, bits, group size and
// columns; otherwise two matmul calls. Results are bit-identical to two matmul calls.
void matmul_pair(const Matrix& a, const Matrix& b, const float* x, int64_t n, float* ya, float* yb,
                 ThreadPool* pool);

// Dequantises/converts row `row` of w into fp32 `out` [w.cols] (reference semantics for every format).
void dequantize_row(const Matrix& w, int64_t row, float* out);

}  // namespace flashmoe
