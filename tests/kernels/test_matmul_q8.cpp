// The opt-in int8-activation decode kernel (FLASHMOE_MATMUL_ACT=int8, AVX-512) against the exact
// product, held to its documented error budget: activation rounding (half a quantisation step per
// column, d_b / 2 with d_b = max|x| / 127 over each 32-column block, times the centred weight
// s (q - 7.5)) plus fp32 rounding.
#include "kernel_test_util.h"

#include "kernels/cpu/kernels_internal.h"
#include "kernels/cpu/matmul.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <vector>

using namespace flashmoe;
using namespace flashmoe::test;

namespace {

// Runs one kernel set directly (not through matmul, which follows FLASHMOE_MATMUL_ACT).
std::vector<float> run_kernels(const cpu::IsaKernels& k, const Matrix& w, const float* x, int64_t n) {
    std::vector<float> prep(k.prep_floats(w, n)), y(size_t(n * w.rows), std::nanf(""));
    if (!prep.empty()) k.prepare(w, x, n, prep.data());
    cpu::KernelArgs args{&w, x, n, y.data(), prep.empty() ? nullptr : prep.data()};
    k.rows(args, 0, w.rows);
    return y;
}

std::vector<float> run_q8(const Matrix& w, const float* x, int64_t n) {
    return run_kernels(cpu::avx512_q8_kernels(), w, x, n);
}

void check_q8(const RandomMatrix& m, const std::vector<float>& x) {
    const int64_t rows = m.spec.rows, cols = m.spec.cols;
    const std::vector<float> y = run_q8(m.view, x.data(), 1);
    // Quantisation step of each column's 32-column block.
    std::vector<double> half_step(static_cast<size_t>(cols));
    for (int64_t b = 0; b < cols / 32; ++b) {
        float amax = 0.0f;
        for (int64_t c = b * 32; c < b * 32 + 32; ++c) amax = std::max(amax, std::fabs(x[size_t(c)]));
        for (int64_t c = b * 32; c < b * 32 + 32; ++c) half_step[size_t(c)] = double(amax) / 127.0 / 2.0;
    }
    std::vector<float> w(static_cast<size_t>(cols));
    int failures = 0;
    for (int64_t r = 0; r < rows && failures < 3; ++r) {
        dequantize_row(m.view, r, w.data());
        double exact = 0, quant = 0, abs_terms = 0;
        for (int64_t c = 0; c < cols; ++c) {
            const auto [s, b] = m.group_params(r, c);
            const double wc = w[size_t(c)], xc = x[size_t(c)];
            exact += wc * xc;
            // what multiplies the rounded activation: s (q - 7.5) = w - b - 7.5 s
            quant += std::fabs(wc - b - 7.5 * s) * half_step[size_t(c)];
            abs_terms += (std::fabs(wc) + std::fabs(wc - b) + std::fabs(b) + 7.5 * std::fabs(s)) * std::fabs(xc);
        }
        // fp32: chunk sums chained over cols/128 chunks, group sums of x over <= 128 columns,
        // reductions; (cols/8 + 160) covers them with room to spare.
        const double bound = quant * (1 + 1e-5) + fp32_bound(double(cols) / 8 + 160, abs_terms, 0);
        const double err = std::fabs(double(y[size_t(r)]) - exact);
        if (!(err <= bound)) {
            ++failures;
            ADD_FAILURE() << m.spec.name() << " row " << r << ": got " << y[size_t(r)] << ", exact " << exact
                          << ", error " << err << " > budget " << bound << " (seed " << test_seed() << ")";
        }
    }
}

bool have_avx512() { return detected_isa() == Isa::Avx512; }

TEST(CpuMatmulQ8, Affine4DecodeStaysWithinItsErrorBudget) {
    if (!have_avx512()) GTEST_SKIP() << "needs AVX-512";
    std::mt19937_64 rng(test_seed());
    size_t index = 0;
    for (int group : {32, 64, 128})
        for (DType sd : {DType::BF16, DType::F16, DType::F32})
            // Column counts with a partial last 128-column chunk (32, 96, 160 where the group allows).
            for (int64_t cols : {int64_t(group), int64_t(3 * group), int64_t(5 * group), int64_t(2048)})
                for (int64_t rows : {1, 6, 13}) {
                    MatrixSpec spec{WeightFormat::Affine, rows, cols, 4, group, sd, index++ % 4};
                    RandomMatrix m(spec, rng);
                    std::normal_distribution<float> normal(0.0f, 1.0f);
                    std::vector<float> x(static_cast<size_t>(cols));
                    for (float& v : x) v = normal(rng);
                    x[size_t(index % cols)] *= 40.0f;  // an outlier, as real activations have
                    if (cols >= 64)
                        for (int64_t c = 32; c < 64; ++c) x[size_t(c)] = 0.0f;  // an all-zero block
                    check_q8(m, x);
                }
}

// The budget is not vacuous: on typical data the error is far below it but well above fp32
// rounding (so this kernel really is the quantised one), and far below |y| itself.
TEST(CpuMatmulQ8, ErrorIsSmallRelativeToTheOutput) {
    if (!have_avx512()) GTEST_SKIP() << "needs AVX-512";
    std::mt19937_64 rng(test_seed());
    MatrixSpec spec{WeightFormat::Affine, 256, 2048, 4, 64, DType::BF16, 0};
    RandomMatrix m(spec, rng);
    std::normal_distribution<float> normal(0.0f, 1.0f);
    std::vector<float> x(2048);
    for (float& v : x) v = normal(rng);
    const std::vector<float> y = run_q8(m.view, x.data(), 1);
    const std::vector<float> ref = run_kernels(cpu::avx512_kernels(), m.view, x.data(), 1);
    double err2 = 0, ref2 = 0;
    for (size_t i = 0; i < 256; ++i) {
        err2 += (double(y[i]) - ref[i]) * (double(y[i]) - ref[i]);
        ref2 += double(ref[i]) * ref[i];
    }
    const double rel = std::sqrt(err2 / ref2);
    // Uniform random codes are a hard case (real weights crowd the middle codes): 0.34% measured;
    // without centring the codes at 7.5 it is ~1%, so this also protects the centring.
    EXPECT_LT(rel, 6e-3) << "int8 activations should cost well under 1% (rms, relative)";
    EXPECT_GT(rel, 1e-6) << "suspiciously exact: is the quantised kernel running at all?";
}

// Everything except decode on 4-bit goes to the exact AVX-512 kernels, bit for bit.
TEST(CpuMatmulQ8, OtherFormatsAndPrefillUseTheExactKernels) {
    if (!have_avx512()) GTEST_SKIP() << "needs AVX-512";
    std::mt19937_64 rng(test_seed());
    const MatrixSpec specs[] = {
        {WeightFormat::Affine, 9, 256, 8, 64, DType::BF16, 0},
        {WeightFormat::BF16, 9, 100, 0, 0, DType::BF16, 0},
        {WeightFormat::Affine, 9, 256, 4, 64, DType::BF16, 0},  // with n > 1 below
    };
    for (const MatrixSpec& spec : specs)
        for (int64_t n : {1, 3}) {
            if (spec.bits == 4 && n == 1) continue;
            RandomMatrix m(spec, rng);
            Activations act(n, spec.cols, rng);
            const std::vector<float> y = run_q8(m.view, act.x, n);
            const std::vector<float> ref = run_kernels(cpu::avx512_kernels(), m.view, act.x, n);
            for (size_t i = 0; i < ref.size(); ++i) ASSERT_EQ(y[i], ref[i]) << spec.name() << " n " << n;
        }
}

}  // namespace
