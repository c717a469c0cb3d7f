// Every CPU matmul kernel (scalar, AVX2, AVX-512 where the CPU has them) on random data in every
// weight format, against the exact (double) product of the reference weights and against the
// scalar twin, with error bounds derived from fp32 rounding and the reduction length.
#include "kernel_test_util.h"

#include "kernels/cpu/matmul.h"
#include "util/thread_pool.h"

#include <gtest/gtest.h>

#include <cmath>
#include <limits>
#include <string>
#include <vector>

using namespace flashmoe;
using namespace flashmoe::test;

namespace {

std::vector<Isa> cpu_isas() {
    std::vector<Isa> isas{Isa::Scalar};
    if (int(detected_isa()) >= int(Isa::Avx2)) isas.push_back(Isa::Avx2);
    if (int(detected_isa()) >= int(Isa::Avx512)) isas.push_back(Isa::Avx512);
    return isas;
}

// Longest chain of dependent fp32 additions in a kernel, per output. The scalar reference sums
// columns in order; the SIMD kernels keep >= 8 lane accumulators (AVX2 has the fewest: 8 lanes x
// 1..2), reduce them in log2 steps and, for n > 1, add 1024-column slices into y.
double chain_length(Isa isa, int64_t cols) {
    if (isa == Isa::Scalar) return double(cols) + 2;
    return double(cols) / 8 + double(cols) / 1024 + 12;
}

struct Truth {
    std::vector<double> exact, abs_wx, abs_mx;  // [n, rows]
};

Truth exact_product(const RandomMatrix& m, const float* x, int64_t n) {
    const int64_t rows = m.spec.rows, cols = m.spec.cols;
    Truth t;
    t.exact.assign(size_t(n * rows), 0.0);
    t.abs_wx = t.abs_mx = t.exact;
    std::vector<float> w(static_cast<size_t>(cols));
    for (int64_t r = 0; r < rows; ++r) {
        dequantize_row(m.view, r, w.data());
        const std::vector<float> mag = m.weight_magnitudes(r, w);
        for (int64_t k = 0; k < n; ++k) {
            const float* xk = x + k * cols;
            double s = 0, awx = 0, amx = 0;
            for (int64_t c = 0; c < cols; ++c) {
                s += double(w[size_t(c)]) * double(xk[c]);
                awx += std::fabs(double(w[size_t(c)]) * double(xk[c]));
                amx += double(mag[size_t(c)]) * std::fabs(double(xk[c]));
            }
            t.exact[size_t(k * rows + r)] = s;
            t.abs_wx[size_t(k * rows + r)] = awx;
            t.abs_mx[size_t(k * rows + r)] = amx;
        }
    }
    return t;
}

// Output buffer [n, rows], misaligned by one float, pre-filled with NaN so unwritten outputs fail.
struct Output {
    Buffer buf;
    float* y;
    size_t count;
    explicit Output(size_t n) : count(n) {
        buf.resize(n * 4 + 4, 4);
        y = reinterpret_cast<float*>(buf.data());
        for (size_t i = 0; i < n; ++i) y[i] = std::numeric_limits<float>::quiet_NaN();
    }
};

// Runs every ISA on one matrix and n, checks each against the exact product and the scalar twin.
void check_all_isas(const RandomMatrix& m, int64_t n, std::mt19937_64& rng) {
    const int64_t rows = m.spec.rows, cols = m.spec.cols;
    Activations act(n, cols, rng);
    const Truth truth = exact_product(m, act.x, n);
    Output scalar(size_t(n * rows));
    matmul_rows(Isa::Scalar, m.view, act.x, n, scalar.y, 0, rows);
    for (Isa isa : cpu_isas()) {
        Output out(size_t(n * rows));
        matmul_rows(isa, m.view, act.x, n, out.y, 0, rows);
        int failures = 0;
        for (int64_t i = 0; i < n * rows && failures < 3; ++i) {
            const double y = out.y[i];
            const double bound = fp32_bound(chain_length(isa, cols), truth.abs_wx[size_t(i)], truth.abs_mx[size_t(i)]);
            const double scalar_bound = fp32_bound(chain_length(Isa::Scalar, cols), truth.abs_wx[size_t(i)], 0);
            const bool ok = std::fabs(y - truth.exact[size_t(i)]) <= bound &&
                            std::fabs(y - double(scalar.y[i])) <= bound + scalar_bound;
            if (!ok) {
                ++failures;
                ADD_FAILURE() << isa_name(isa) << " " << m.spec.name() << " n " << n << " token " << i / rows
                              << " row " << i % rows << ": got " << y << ", exact " << truth.exact[size_t(i)]
                              << ", scalar " << scalar.y[i] << ", bound " << bound << " (seed " << test_seed()
                              << ")";
            }
        }
    }
}

const int64_t kTokenCounts[] = {1, 2, 3, 7, 33};

TEST(CpuMatmul, AffineEveryBitsGroupAndScaleTypeMatchesReference) {
    std::mt19937_64 rng(test_seed());
    size_t case_index = 0;
    for (int bits : {2, 3, 4, 5, 6, 8})
        for (int group : {32, 64, 128})
            for (DType sd : {DType::BF16, DType::F16, DType::F32}) {
                // Odd row counts (4-row blocks leave tails), one group, several groups, 384 columns.
                const int64_t shapes[][2] = {{1, group}, {7, 3 * group}, {19, 384}};
                for (const auto& shape : shapes) {
                    MatrixSpec spec{WeightFormat::Affine, shape[0], shape[1], bits, group, sd, 1 + case_index++ % 3};
                    RandomMatrix m(spec, rng);
                    for (int64_t n : kTokenCounts) check_all_isas(m, n, rng);
                }
            }
}

TEST(CpuMatmul, DenseFormatsWithRaggedTailsMatchReference) {
    std::mt19937_64 rng(test_seed());
    size_t case_index = 0;
    for (WeightFormat f : {WeightFormat::F32, WeightFormat::F16, WeightFormat::BF16})
        for (int64_t cols : {1, 7, 8, 15, 16, 17, 33, 100, 257})
            for (int64_t rows : {1, 3, 5, 17}) {
                MatrixSpec spec{f, rows, cols, 0, 0, DType::BF16, case_index++ % 4};
                RandomMatrix m(spec, rng);
                for (int64_t n : kTokenCounts) check_all_isas(m, n, rng);
            }
}

// Reductions as long as the model's (hidden 2048, o_proj 4096) with the decode and prefill paths.
TEST(CpuMatmul, ModelLengthReductionsMatchReference) {
    std::mt19937_64 rng(test_seed());
    const MatrixSpec specs[] = {
        {WeightFormat::Affine, 37, 2048, 4, 64, DType::BF16, 1},
        {WeightFormat::Affine, 9, 4096, 4, 64, DType::BF16, 0},
        {WeightFormat::Affine, 21, 2048, 8, 64, DType::BF16, 3},
        {WeightFormat::Affine, 13, 2048, 3, 64, DType::BF16, 2},
        {WeightFormat::BF16, 19, 2048 + 5, 0, 0, DType::BF16, 2},
        {WeightFormat::F32, 11, 4096, 0, 0, DType::BF16, 0},
    };
    for (const MatrixSpec& spec : specs) {
        RandomMatrix m(spec, rng);
        for (int64_t n : {1, 5}) check_all_isas(m, n, rng);
    }
}

// Splitting rows across threads must not change a single bit: each row is computed by the same
// code in the same order whichever chunk it falls in.
TEST(CpuMatmul, ThreadedMatchesSingleThreadBitwise) {
    std::mt19937_64 rng(test_seed());
    const MatrixSpec specs[] = {
        {WeightFormat::Affine, 1001, 2048, 4, 64, DType::BF16, 0},
        {WeightFormat::Affine, 301, 512, 8, 32, DType::F16, 1},
        {WeightFormat::BF16, 777, 256, 0, 0, DType::BF16, 2},
        {WeightFormat::Affine, 513, 256, 5, 128, DType::F32, 3},
    };
    ThreadPool two(2), three(3);
    for (const MatrixSpec& spec : specs) {
        RandomMatrix m(spec, rng);
        for (int64_t n : {1, 6}) {
            Activations act(n, spec.cols, rng);
            const size_t count = size_t(n * spec.rows);
            Output single(count), pooled2(count), pooled3(count), inline_run(count);
            matmul_rows(active_isa(), m.view, act.x, n, single.y, 0, spec.rows, matmul_activations());
            matmul(m.view, act.x, n, pooled2.y, &two);
            matmul(m.view, act.x, n, pooled3.y, &three);
            matmul(m.view, act.x, n, inline_run.y, nullptr);
            for (size_t i = 0; i < count; ++i) {
                ASSERT_EQ(single.y[i], pooled2.y[i]) << spec.name() << " n " << n << " index " << i;
                ASSERT_EQ(single.y[i], pooled3.y[i]) << spec.name() << " n " << n << " index " << i;
                ASSERT_EQ(single.y[i], inline_run.y[i]) << spec.name() << " n " << n << " index " << i;
            }
        }
    }
}

TEST(CpuMatmul, RowRangeWritesOnlyItsRows) {
    std::mt19937_64 rng(test_seed());
    for (Isa isa : cpu_isas()) {
        for (WeightFormat f : {WeightFormat::Affine, WeightFormat::BF16}) {
            MatrixSpec spec{f, 23, 256, 4, 64, DType::BF16, 0};
            RandomMatrix m(spec, rng);
            for (int64_t n : {1, 3}) {
                Activations act(n, spec.cols, rng);
                Output full(size_t(n * spec.rows)), part(size_t(n * spec.rows));
                matmul_rows(isa, m.view, act.x, n, full.y, 0, spec.rows);
                matmul_rows(isa, m.view, act.x, n, part.y, 5, 18);
                for (int64_t t = 0; t < n; ++t)
                    for (int64_t r = 0; r < spec.rows; ++r) {
                        const float v = part.y[t * spec.rows + r];
                        if (r >= 5 && r < 18)
                            EXPECT_EQ(v, full.y[t * spec.rows + r]) << isa_name(isa) << " row " << r;
                        else
                            EXPECT_TRUE(std::isnan(v)) << isa_name(isa) << " wrote row " << r << " outside its range";
                    }
            }
        }
    }
}

TEST(CpuMatmul, EmptyShapesAreNoOpsOrZeros) {
    std::mt19937_64 rng(test_seed());
    for (Isa isa : cpu_isas()) {
        MatrixSpec spec{WeightFormat::F32, 4, 0, 0, 0, DType::BF16, 0};
        RandomMatrix m(spec, rng);
        float x = 1.0f, y[8];
        for (float& v : y) v = std::numeric_limits<float>::quiet_NaN();
        matmul_rows(isa, m.view, &x, 2, y, 0, 4);
        for (float v : y) EXPECT_EQ(v, 0.0f) << isa_name(isa) << ": zero columns give zero outputs";
        matmul_rows(isa, m.view, &x, 0, y, 0, 4);  // no tokens: nothing to do
    }
}

// matmul_pair (gate and up over one activation) gives exactly what two matmul calls give, in either
// activation mode, whether it shares the prepared activations or falls back to two calls.
TEST(CpuMatmul, PairMatchesTwoCallsBitwise) {
    const MatmulActivations saved = matmul_activations();
    std::mt19937_64 rng(test_seed());
    ThreadPool two(2);
    struct PairSpec {
        MatrixSpec a, b;
    };
    const PairSpec pairs[] = {
        {{WeightFormat::Affine, 512, 2048, 4, 64, DType::BF16, 0}, {WeightFormat::Affine, 512, 2048, 4, 64, DType::BF16, 1}},
        {{WeightFormat::Affine, 37, 256, 8, 32, DType::F16, 0}, {WeightFormat::Affine, 53, 256, 8, 32, DType::F16, 2}},
        {{WeightFormat::Affine, 40, 256, 4, 64, DType::BF16, 0}, {WeightFormat::Affine, 24, 256, 8, 64, DType::BF16, 0}},
    };
    for (MatmulActivations mode : {MatmulActivations::F32, MatmulActivations::Int8}) {
        set_matmul_activations(mode);
        for (const PairSpec& p : pairs) {
            RandomMatrix a(p.a, rng), b(p.b, rng);
            for (int64_t n : {1, 5, 20}) {
                Activations act(n, p.a.cols, rng);
                for (ThreadPool* pool : {static_cast<ThreadPool*>(nullptr), &two}) {
                    Output ya(size_t(n * p.a.rows)), yb(size_t(n * p.b.rows));
                    Output ra(size_t(n * p.a.rows)), rb(size_t(n * p.b.rows));
                    matmul_pair(a.view, b.view, act.x, n, ya.y, yb.y, pool);
                    matmul(a.view, act.x, n, ra.y, pool);
                    matmul(b.view, act.x, n, rb.y, pool);
                    for (size_t i = 0; i < ya.count; ++i) ASSERT_EQ(ya.y[i], ra.y[i]) << p.a.name() << " n " << n;
                    for (size_t i = 0; i < yb.count; ++i) ASSERT_EQ(yb.y[i], rb.y[i]) << p.b.name() << " n " << n;
                }
            }
        }
    }
    set_matmul_activations(saved);
}

}  // namespace
