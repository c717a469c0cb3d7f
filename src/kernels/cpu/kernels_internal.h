// Internal seam between the matmul front end (matmul.cpp) and the per-instruction-set kernels
// (matmul_scalar.cpp, matmul_avx2.cpp, matmul_avx512.cpp). Not part of the public interface.
//
// Everything declared here has external linkage and is defined once, in a TU compiled for the
// baseline ISA or for the ISA its name says. Inline helpers shared by SIMD TUs live in
// simd_driver.h inside an anonymous namespace, never here: an inline function compiled with
// -mavx512f in one TU and without it in another would let the linker pick the AVX-512 copy for
// everyone (an ODR violation that crashes on older CPUs).
//
// Thread-safety: all functions are pure over their arguments. Failure: check_matrix throws
// flashmoe::Error (BadModel); the kernels assume a checked matrix and never throw, except for
// std::bad_alloc from scratch buffers.
#pragma once

#include "ops/tensor.h"

#include <cstddef>
#include <cstdint>
#include <memory>

namespace flashmoe::cpu {

// Throws Error(BadModel) naming what is wrong (format, bits, group size, scale dtype, shape,
// missing pointers). Called once per public entry point.
void check_matrix(const Matrix& w);

// One matmul call as the kernels see it. `xprep` is the ISA's re-laid-out copy of x (see
// IsaKernels::prepare) or nullptr when prep_floats returned 0.
struct KernelArgs {
    const Matrix* w = nullptr;
    const float* x = nullptr;  // [n, w->cols]
    int64_t n = 0;
    float* y = nullptr;  // [n, w->rows]
    const float* xprep = nullptr;
};

// The kernels of one instruction set. `prepare` runs once per matmul call (on the calling
// thread) so that each row chunk can share its result.
struct IsaKernels {
    size_t (*prep_floats)(const Matrix& w, int64_t n);  // floats of xprep; 0 = none needed
    void (*prepare)(const Matrix& w, const float* x, int64_t n, float* xprep);
    void (*rows)(const KernelArgs& args, int64_t row_begin, int64_t row_end);
};

const IsaKernels& scalar_kernels();
const IsaKernels& avx2_kernels();    // only callable when the CPU has AVX2+FMA+F16C
const IsaKernels& avx512_kernels();  // only callable when the CPU has AVX-512 F/BW/VL/DQ
// The int8-activation semantics of matmul.h (MatmulActivations::Int8) on affine 4- and 8-bit
// weights; every other format goes to the same ISA's exact kernels. scalar_q8_kernels is the
// reference (matmul_scalar.cpp); avx512_q8_kernels needs AVX-512 VNNI (matmul_q8_avx512.cpp).
const IsaKernels& scalar_q8_kernels();
const IsaKernels& avx512_q8_kernels();
bool uses_int8_activations(const Matrix& w);  // affine 4- or 8-bit

// Zero-initialised heap scratch of floats for the SIMD TUs. Its members are defined in matmul.cpp
// (baseline ISA) so that SIMD TUs never instantiate std::vector<float> or similar templates,
// whose out-of-line copies the linker could otherwise take from an AVX-512 TU.
class ScratchFloats {
public:
    explicit ScratchFloats(size_t count);
    ~ScratchFloats();
    ScratchFloats(const ScratchFloats&) = delete;
    ScratchFloats& operator=(const ScratchFloats&) = delete;
    float* data() const { return data_.get(); }

private:
    std::unique_ptr<float[]> data_;
};

// Reference dequantisation of columns [0, w.cols) of one row (the scalar semantics every other
// kernel is tested against): w = scale * q + bias for Affine, exact conversion for dense formats.
void dequantize_row_ref(const Matrix& w, int64_t row, float* out);

}  // namespace flashmoe::cpu
