// The int8-activation semantics (MatmulActivations::Int8, matmul.h): the scalar reference against
// a double-precision replica of the definition written here, every SIMD int8 kernel against the
// scalar reference (random data, every group size and scale dtype, odd shapes, n from 1 to > 64),
// the error against the exact product, and the mode switch.
#include "kernel_test_util.h"

#include "kernels/cpu/kernels_internal.h"
#include "kernels/cpu/matmul.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <vector>

using namespace flashmoe;
using namespace flashmoe::test;

namespace {

// Runs one kernel set directly (not through matmul, which follows the process-wide mode).
std::vector<float> run_kernels(const cpu::IsaKernels& k, const Matrix& w, const float* x, int64_t n) {
    std::vector<float> prep(k.prep_floats(w, n)), y(size_t(n * w.rows), std::nanf(""));
    if (!prep.empty()) k.prepare(w, x, n, prep.data());
    cpu::KernelArgs args{&w, x, n, y.data(), prep.empty() ? nullptr : prep.data()};
    k.rows(args, 0, w.rows);
    return y;
}

// The definition: per token and group, d = max|x| / 127, xq = round_half_even(x * (127 / max|x|)).
struct Quantised {
    std::vector<float> xhat;  // d * xq, [n, cols]
    std::vector<double> d;    // [n, groups]
};

Quantised quantise(const float* x, int64_t n, int64_t cols, int64_t group) {
    Quantised q;
    q.xhat.resize(size_t(n * cols));
    for (int64_t t = 0; t < n; ++t)
        for (int64_t g = 0; g < cols / group; ++g) {
            const float* xg = x + t * cols + g * group;
            float amax = 0.0f;
            for (int64_t c = 0; c < group; ++c) amax = std::max(amax, std::fabs(xg[c]));
            const float inv = amax > 0.0f ? 127.0f / amax : 0.0f;
            const float d = amax / 127.0f;
            for (int64_t c = 0; c < group; ++c) {
                const float v = std::clamp(std::nearbyint(xg[c] * inv), -127.0f, 127.0f);
                q.xhat[size_t(t * cols + g * group + c)] = float(double(d) * v);
            }
            q.d.push_back(d);
        }
    return q;
}

// |y - y_ref| budget for two fp32 evaluations of sum_g s d idot + b d isum: per-group terms with a
// few roundings each, summed in chains of at most groups + 32 (reductions included).
double int8_bound(const RandomMatrix& m, const std::vector<float>& w, const Quantised& q, int64_t t, int64_t r) {
    const int64_t cols = m.spec.cols;
    double abs_terms = 0;
    for (int64_t c = 0; c < cols; ++c) {
        const double b = m.group_params(r, c).second;
        const double xh = std::fabs(q.xhat[size_t(t * cols + c)]);
        abs_terms += (std::fabs(w[size_t(c)] - b) + std::fabs(b)) * xh;
    }
    return fp32_bound(2.0 * double(cols / m.spec.group + 32), abs_terms, abs_terms);
}

struct Case {
    int bits, group;
    DType sd;
    int64_t rows, cols, n;
};

std::vector<Case> cases() {
    std::vector<Case> out;
    size_t i = 0;
    const DType dtypes[] = {DType::BF16, DType::F16, DType::F32};
    for (int bits : {4, 8})
        for (int group : {32, 64, 128})
            for (int64_t cols : {int64_t(group), int64_t(3 * group), int64_t(5 * group), int64_t(2048)})
                for (int64_t n : {1, 2, 3, 4, 5, 9, 16, 17, 24, 33, 41, 70}) {
                    const int64_t rows = (i % 3 == 0) ? 1 : (i % 3 == 1) ? 13 : 37;
                    out.push_back({bits, group, dtypes[i % 3], rows, cols, n});
                    ++i;
                }
    return out;
}

// x with an outlier and an all-zero group, as real activations have.
Activations make_x(int64_t n, int64_t cols, int64_t group, std::mt19937_64& rng) {
    Activations a(n, cols, rng);
    for (int64_t t = 0; t < n; ++t) {
        a.x[t * cols + (t * 7) % cols] *= 40.0f;
        if (cols >= 2 * group && t % 2 == 0)
            for (int64_t c = group; c < 2 * group; ++c) a.x[t * cols + c] = 0.0f;
    }
    return a;
}

TEST(CpuMatmulQ8, ScalarReferenceIsTheProductWithQuantisedActivations) {
    std::mt19937_64 rng(test_seed());
    size_t index = 0;
    for (const Case& k : cases()) {
        if (k.n > 17) continue;  // the reference is slow; the definition does not depend on n
        MatrixSpec spec{WeightFormat::Affine, k.rows, k.cols, k.bits, k.group, k.sd, index++ % 4};
        RandomMatrix m(spec, rng);
        Activations act = make_x(k.n, k.cols, k.group, rng);
        const Quantised q = quantise(act.x, k.n, k.cols, k.group);
        const std::vector<float> y = run_kernels(cpu::scalar_q8_kernels(), m.view, act.x, k.n);
        std::vector<float> w(size_t(k.cols));
        for (int64_t r = 0; r < k.rows; ++r) {
            dequantize_row(m.view, r, w.data());
            for (int64_t t = 0; t < k.n; ++t) {
                double exact = 0;
                for (int64_t c = 0; c < k.cols; ++c) exact += double(w[size_t(c)]) * q.xhat[size_t(t * k.cols + c)];
                const double err = std::fabs(double(y[size_t(t * k.rows + r)]) - exact);
                // the replica's weights carry one rounding of s q + b, the reference's none
                const double bound = int8_bound(m, w, q, t, r) + fp32_bound(double(k.cols), 0, 0);
                ASSERT_LE(err, 2 * bound) << spec.name() << " n " << k.n << " row " << r << " token " << t
                                          << " (seed " << test_seed() << ")";
            }
        }
    }
}

void check_against_reference(const cpu::IsaKernels& kernels) {
    std::mt19937_64 rng(test_seed());
    size_t index = 0;
    for (const Case& k : cases()) {
        MatrixSpec spec{WeightFormat::Affine, k.rows, k.cols, k.bits, k.group, k.sd, index++ % 4};
        RandomMatrix m(spec, rng);
        Activations act = make_x(k.n, k.cols, k.group, rng);
        const Quantised q = quantise(act.x, k.n, k.cols, k.group);
        const std::vector<float> y = run_kernels(kernels, m.view, act.x, k.n);
        const std::vector<float> ref = run_kernels(cpu::scalar_q8_kernels(), m.view, act.x, k.n);
        std::vector<float> w(size_t(k.cols));
        for (int64_t r = 0; r < k.rows; ++r) {
            dequantize_row(m.view, r, w.data());
            for (int64_t t = 0; t < k.n; ++t) {
                const size_t i = size_t(t * k.rows + r);
                const double err = std::fabs(double(y[i]) - ref[i]);
                ASSERT_LE(err, 2 * int8_bound(m, w, q, t, r))
                    << spec.name() << " n " << k.n << " row " << r << " token " << t << ": " << y[i] << " vs "
                    << ref[i] << " (seed " << test_seed() << ")";
            }
        }
    }
}

bool have_vnni() { return int8_activations_available(); }

TEST(CpuMatmulQ8, Avx512VnniMatchesTheScalarReference) {
    if (!have_vnni()) GTEST_SKIP() << "needs AVX-512 VNNI";
    check_against_reference(cpu::avx512_q8_kernels());
}

// Row sub-ranges (as the thread pool splits them) give the same rows as the whole call.
TEST(CpuMatmulQ8, RowRangesAgreeWithTheWholeMatrix) {
    if (!have_vnni()) GTEST_SKIP() << "needs AVX-512 VNNI";
    std::mt19937_64 rng(test_seed());
    for (int64_t n : {1, 20}) {
        MatrixSpec spec{WeightFormat::Affine, 53, 512, 4, 64, DType::BF16, 1};
        RandomMatrix m(spec, rng);
        Activations act(n, spec.cols, rng);
        const cpu::IsaKernels& k = cpu::avx512_q8_kernels();
        const std::vector<float> whole = run_kernels(k, m.view, act.x, n);
        std::vector<float> prep(k.prep_floats(m.view, n)), y(size_t(n * spec.rows), std::nanf(""));
        k.prepare(m.view, act.x, n, prep.data());
        cpu::KernelArgs args{&m.view, act.x, n, y.data(), prep.data()};
        for (int64_t r0 = 0; r0 < spec.rows; r0 += 16) k.rows(args, r0, std::min<int64_t>(spec.rows, r0 + 16));
        for (size_t i = 0; i < y.size(); ++i) ASSERT_EQ(y[i], whole[i]) << "n " << n << " index " << i;
    }
}

// Against the exact product: far below |y| (a fraction of a percent, rms) but well above fp32
// rounding, so the quantised kernel really runs.
TEST(CpuMatmulQ8, ErrorIsSmallRelativeToTheExactProduct) {
    std::mt19937_64 rng(test_seed());
    for (int bits : {4, 8})
        for (int64_t n : {1, 16}) {
            MatrixSpec spec{WeightFormat::Affine, 128, 2048, bits, 64, DType::BF16, 0};
            RandomMatrix m(spec, rng);
            Activations act(n, spec.cols, rng);
            const cpu::IsaKernels& k = have_vnni() ? cpu::avx512_q8_kernels() : cpu::scalar_q8_kernels();
            const std::vector<float> y = run_kernels(k, m.view, act.x, n);
            const std::vector<float> ref = run_kernels(cpu::scalar_kernels(), m.view, act.x, n);
            double err2 = 0, ref2 = 0;
            for (size_t i = 0; i < ref.size(); ++i) {
                err2 += (double(y[i]) - ref[i]) * (double(y[i]) - ref[i]);
                ref2 += double(ref[i]) * ref[i];
            }
            const double rel = std::sqrt(err2 / ref2);
            std::printf("int8 activations, %d-bit weights, n %d: rms error %.3f%% of rms y\n", bits, int(n), 100 * rel);
            EXPECT_LT(rel, 1e-2) << "bits " << bits << " n " << n;
            EXPECT_GT(rel, 1e-6) << "bits " << bits << " n " << n << ": suspiciously exact";
        }
}

// Every other format goes to the exact kernels of the same ISA, bit for bit.
TEST(CpuMatmulQ8, OtherFormatsUseTheExactKernels) {
    std::mt19937_64 rng(test_seed());
    const MatrixSpec specs[] = {
        {WeightFormat::Affine, 9, 256, 3, 64, DType::BF16, 0},
        {WeightFormat::Affine, 9, 256, 6, 32, DType::F16, 0},
        {WeightFormat::BF16, 9, 100, 0, 0, DType::BF16, 0},
        {WeightFormat::F32, 9, 100, 0, 0, DType::BF16, 0},
    };
    for (const MatrixSpec& spec : specs)
        for (int64_t n : {1, 3, 20}) {
            RandomMatrix m(spec, rng);
            Activations act(n, spec.cols, rng);
            EXPECT_EQ(run_kernels(cpu::scalar_q8_kernels(), m.view, act.x, n),
                      run_kernels(cpu::scalar_kernels(), m.view, act.x, n))
                << spec.name();
            if (have_vnni()) {
                EXPECT_EQ(run_kernels(cpu::avx512_q8_kernels(), m.view, act.x, n),
                          run_kernels(cpu::avx512_kernels(), m.view, act.x, n))
                    << spec.name();
            }
        }
}

// matmul follows set_matmul_activations; f32 is the exact path.
TEST(CpuMatmulQ8, ModeSwitchSelectsTheKernels) {
    const MatmulActivations saved = matmul_activations();
    std::mt19937_64 rng(test_seed());
    MatrixSpec spec{WeightFormat::Affine, 40, 256, 4, 64, DType::BF16, 0};
    RandomMatrix m(spec, rng);
    Activations act(1, spec.cols, rng);
    std::vector<float> y(40);
    const bool avx512 = active_isa() == Isa::Avx512;
    set_matmul_activations(MatmulActivations::F32);
    matmul(m.view, act.x, 1, y.data(), nullptr);
    if (avx512) {
        EXPECT_EQ(y, run_kernels(cpu::avx512_kernels(), m.view, act.x, 1));
    }
    set_matmul_activations(MatmulActivations::Int8);
    EXPECT_EQ(matmul_activations(), MatmulActivations::Int8);
    matmul(m.view, act.x, 1, y.data(), nullptr);
    if (avx512 && have_vnni()) {
        EXPECT_EQ(y, run_kernels(cpu::avx512_q8_kernels(), m.view, act.x, 1));
    }
    set_matmul_activations(saved);

    MatmulActivations parsed;
    EXPECT_TRUE(parse_matmul_activations("int8", &parsed));
    EXPECT_EQ(parsed, MatmulActivations::Int8);
    EXPECT_TRUE(parse_matmul_activations("f32", &parsed));
    EXPECT_EQ(parsed, MatmulActivations::F32);
    EXPECT_FALSE(parse_matmul_activations("fp8", &parsed));
    EXPECT_EQ(matmul_activations_name(MatmulActivations::Int8), "int8");
}

}  // namespace
