// Every CUDA kernel against the scalar CPU reference (kernels/cpu scalar matmul, ops/cpu_ops, and the
// loops of the CPU forward restated here) on fresh random data at odd sizes, with NaN-poisoned
// outputs. Skips without a CUDA device.
#include "cuda_test_util.h"
#include "kernels/cuda/ops.h"
#include "kernels/cpu/matmul.h"
#include "ops/cpu_ops.h"

#include <algorithm>
#include <cmath>
#include <map>

using namespace flashmoe;
using namespace flashmoe::test;

namespace {

// The CUDA tests hold the kernels to the exact fp32 references unless a test chooses int8
// activations itself (and puts F32 back).
class ExactActivations : public ::testing::Environment {
public:
    void SetUp() override { set_matmul_activations(MatmulActivations::F32); }
};
[[maybe_unused]] const auto* const kExactActivations = ::testing::AddGlobalTestEnvironment(new ExactActivations);

// fp32 tolerance for a dot product of length `len`: both sides round along chains of at most len
// additions; values are compared against the magnitude sum_c |w_c x_c| (+ affine's |bias| terms).
double dot_bound(int64_t len, double magnitude) { return std::ldexp(1.0, -24) * double(len + 64) * 2.0 * magnitude + 1e-6; }

// Whether the CUDA kernels quantise a one-token product's activations with int8 (MatmulActivations
// ::Int8): affine 4- or 8-bit with a register shape (4-bit 512..4096 columns, 8-bit 512..2048) and
// groups of at most 256; every other matrix keeps the exact path, as CPUs without int8 kernels do.
bool cuda_takes_int8(const Matrix& m) {
    if (m.format != WeightFormat::Affine || (m.bits != 4 && m.bits != 8) || m.group_size > 256) return false;
    const int64_t chunks = m.cols * m.bits / 128;
    return m.cols % 256 == 0 && chunks >= 16 && chunks <= 128 && (m.bits == 4 || chunks >= 32);
}

// Whether several tokens run on the tensor cores with int8 activations: affine 4-bit (routed experts
// too) or 8-bit (dense only) with MLX's groups of 32, 64 or 128; every other matrix keeps the exact
// kernels.
bool cuda_tensor_cores_take_int8(const Matrix& m, bool expert) {
    return m.format == WeightFormat::Affine && (m.bits == 4 || (m.bits == 8 && !expert)) &&
           (m.group_size == 32 || m.group_size == 64 || m.group_size == 128) && m.cols % m.group_size == 0;
}

// The reference semantics for one matrix (a routed expert's: `expert`): int8 where the CUDA kernel
// takes it.
MatmulActivations reference_activations(const Matrix& m, int64_t n, MatmulActivations act, bool expert = false) {
    if (act != MatmulActivations::Int8) return MatmulActivations::F32;
    return (n == 1 ? cuda_takes_int8(m) : cuda_tensor_cores_take_int8(m, expert)) ? act : MatmulActivations::F32;
}

// act: the activation semantics of the process while the kernel runs; the reference follows
// reference_activations (int8 quantises the same bits on both sides, so the bound stays an fp32
// rounding bound).
void check_matmul(const MatrixSpec& spec, int64_t n, std::mt19937_64& rng,
                  MatmulActivations act = MatmulActivations::F32) {
    SCOPED_TRACE(spec.name() + " n " + std::to_string(n) + " " + std::string(matmul_activations_name(act)));
    RandomMatrix w(spec, rng);
    Activations x(n, spec.cols, rng);
    std::vector<float> ref(static_cast<size_t>(n * spec.rows));
    matmul_rows(Isa::Scalar, w.view, x.x, n, ref.data(), 0, spec.rows, reference_activations(w.view, n, act));
    set_matmul_activations(act);
    DeviceData d;
    cuda::DMat dw = d.put(w.view);
    float* dx = static_cast<float*>(d.put_bytes(x.x, size_t(n * spec.cols) * 4));
    float* dy = d.floats(size_t(n * spec.rows));
    cuda::matmul(dw, dx, n, dy, nullptr);
    set_matmul_activations(MatmulActivations::F32);
    auto got = to_host(dy, ref.size());
    std::vector<float> wrow(static_cast<size_t>(spec.cols));
    for (int64_t r = 0; r < spec.rows; ++r) {
        dequantize_row(w.view, r, wrow.data());
        auto m = w.weight_magnitudes(r, wrow);
        for (int64_t t = 0; t < n; ++t) {
            double mag = 0;
            for (int64_t c = 0; c < spec.cols; ++c) mag += double(m[size_t(c)]) * std::fabs(x.x[t * spec.cols + c]);
            const float g = got[size_t(t * spec.rows + r)], e = ref[size_t(t * spec.rows + r)];
            ASSERT_TRUE(std::isfinite(g)) << "row " << r << " token " << t << " not written";
            ASSERT_LE(std::fabs(double(g) - double(e)), dot_bound(spec.cols, mag)) << "row " << r << " token " << t;
        }
    }
}

TEST(CudaKernels, MatmulEveryFormatMatchesScalarReference) {
    SKIP_WITHOUT_CUDA();
    std::mt19937_64 rng(test_seed());
    SCOPED_TRACE("FLASHMOE_TEST_SEED=" + std::to_string(test_seed()));
    const int64_t ns[] = {1, 3, 9, 17};
    for (auto fmt : {WeightFormat::F32, WeightFormat::F16, WeightFormat::BF16}) {
        for (int64_t cols : {72, 13, 256, 2048}) {
            for (int64_t n : ns) check_matmul(MatrixSpec{fmt, 37, cols, 0, 0, DType::BF16, 0}, n, rng);
        }
    }
    for (int bits : {2, 3, 4, 5, 6, 8}) {
        for (int group : {32, 64, 128}) {
            for (DType sd : {DType::BF16, DType::F16, DType::F32}) {
                for (int64_t cols : {int64_t(group), int64_t(group * 3), int64_t(2048)}) {
                    for (int64_t n : {int64_t(1), int64_t(10)}) {
                        check_matmul(MatrixSpec{WeightFormat::Affine, 29, cols, bits, group, sd, 0}, n, rng);
                    }
                }
            }
        }
    }
    // The 35B shapes: 4-bit group 64, many rows.
    check_matmul(MatrixSpec{WeightFormat::Affine, 1031, 2048, 4, 64, DType::BF16, 0}, 1, rng);
    // Every single-token register shape (4-bit: 512, 1024, 2048, 4096 columns; 8-bit: 512, 1024,
    // 2048), with row counts that leave partial row-sets, and a tall matrix (several row-sets a warp).
    for (int64_t cols : {512, 1024, 4096}) {
        for (int64_t rows : {1, 3, 517}) check_matmul(MatrixSpec{WeightFormat::Affine, rows, cols, 4, 64, DType::BF16, 0}, 1, rng);
    }
    check_matmul(MatrixSpec{WeightFormat::Affine, 77, 512, 4, 32, DType::F16, 0}, 1, rng);
    check_matmul(MatrixSpec{WeightFormat::Affine, 77, 2048, 4, 128, DType::F32, 0}, 1, rng);
    for (int64_t cols : {512, 1024, 2048}) check_matmul(MatrixSpec{WeightFormat::Affine, 259, cols, 8, 64, DType::BF16, 0}, 1, rng);
    check_matmul(MatrixSpec{WeightFormat::Affine, 140001, 2048, 4, 64, DType::BF16, 0}, 1, rng);
    // The tensor-core path (4-bit, several tokens): token and row tails, every group size.
    check_matmul(MatrixSpec{WeightFormat::Affine, 100, 2048, 4, 64, DType::BF16, 0}, 77, rng);
    check_matmul(MatrixSpec{WeightFormat::Affine, 70, 4096, 4, 128, DType::F16, 0}, 40, rng);
    check_matmul(MatrixSpec{WeightFormat::Affine, 33, 96, 4, 32, DType::F32, 0}, 2, rng);
    // an odd number of 32-column chunks (half a 64-column tile at the end), groups spanning tiles,
    // one token, and a matrix large enough for the 8-warp blocks (256 rows)
    check_matmul(MatrixSpec{WeightFormat::Affine, 257, 160, 4, 32, DType::BF16, 0}, 33, rng);
    check_matmul(MatrixSpec{WeightFormat::Affine, 31, 384, 4, 128, DType::BF16, 0}, 9, rng);
    check_matmul(MatrixSpec{WeightFormat::Affine, 8200, 160, 4, 32, DType::BF16, 0}, 264, rng);
}

// Int8 activations on one token: every register shape, group size and scale type against the CPU's
// scalar int8 reference (the same quantised activations; the other formats keep the exact path).
TEST(CudaKernels, MatmulInt8ActivationsMatchScalarReference) {
    SKIP_WITHOUT_CUDA();
    std::mt19937_64 rng(test_seed());
    SCOPED_TRACE("FLASHMOE_TEST_SEED=" + std::to_string(test_seed()));
    constexpr auto kInt8 = MatmulActivations::Int8;
    for (int group : {32, 64, 128}) {
        for (DType sd : {DType::BF16, DType::F16, DType::F32}) {
            for (int64_t cols : {512, 1024, 2048, 4096}) {
                check_matmul(MatrixSpec{WeightFormat::Affine, 37, cols, 4, group, sd, 0}, 1, rng, kInt8);
                if (cols <= 2048) check_matmul(MatrixSpec{WeightFormat::Affine, 37, cols, 8, group, sd, 0}, 1, rng, kInt8);
            }
        }
    }
    for (int64_t rows : {1, 3, 517, 12352}) check_matmul(MatrixSpec{WeightFormat::Affine, rows, 2048, 4, 64, DType::BF16, 0}, 1, rng, kInt8);
    check_matmul(MatrixSpec{WeightFormat::Affine, 140001, 2048, 4, 64, DType::BF16, 0}, 1, rng, kInt8);
    // several tokens on the tensor cores: token and row tails, every group size and scale type, an
    // odd number of 32-column chunks, groups spanning tiles, the 8-warp blocks
    check_matmul(MatrixSpec{WeightFormat::Affine, 100, 2048, 4, 64, DType::BF16, 0}, 77, rng, kInt8);
    check_matmul(MatrixSpec{WeightFormat::Affine, 70, 4096, 4, 128, DType::F16, 0}, 40, rng, kInt8);
    check_matmul(MatrixSpec{WeightFormat::Affine, 33, 96, 4, 32, DType::F32, 0}, 2, rng, kInt8);
    check_matmul(MatrixSpec{WeightFormat::Affine, 257, 160, 4, 32, DType::BF16, 0}, 33, rng, kInt8);
    check_matmul(MatrixSpec{WeightFormat::Affine, 31, 384, 4, 128, DType::BF16, 0}, 9, rng, kInt8);
    check_matmul(MatrixSpec{WeightFormat::Affine, 8200, 160, 4, 32, DType::BF16, 0}, 264, rng, kInt8);
    check_matmul(MatrixSpec{WeightFormat::Affine, 1031, 2048, 4, 64, DType::BF16, 0}, 512, rng, kInt8);
    // 8-bit on the tensor cores (int8 only): the router's shape, tails, groups, the 8-warp blocks
    check_matmul(MatrixSpec{WeightFormat::Affine, 256, 2048, 8, 64, DType::BF16, 0}, 77, rng, kInt8);
    check_matmul(MatrixSpec{WeightFormat::Affine, 70, 4096, 8, 128, DType::F16, 0}, 40, rng, kInt8);
    check_matmul(MatrixSpec{WeightFormat::Affine, 33, 96, 8, 32, DType::F32, 0}, 2, rng, kInt8);
    check_matmul(MatrixSpec{WeightFormat::Affine, 8200, 160, 8, 32, DType::BF16, 0}, 264, rng, kInt8);
    // several tokens without a tensor-core path: the exact kernels
    check_matmul(MatrixSpec{WeightFormat::Affine, 29, 2048, 6, 64, DType::BF16, 0}, 10, rng, kInt8);
    // shapes without an int8 path here: the exact kernels
    check_matmul(MatrixSpec{WeightFormat::Affine, 29, 96, 4, 32, DType::BF16, 0}, 1, rng, kInt8);
    check_matmul(MatrixSpec{WeightFormat::BF16, 29, 2048, 0, 0, DType::BF16, 0}, 1, rng, kInt8);
}

// Several matrices of one input in one launch equal one matmul each, bit for bit (one token, and
// several on the tensor cores).
TEST(CudaKernels, MatmulMultiEqualsSeparateMatmuls) {
    SKIP_WITHOUT_CUDA();
    for (int64_t n : {1, 37})
    for (auto act : {MatmulActivations::F32, MatmulActivations::Int8}) {
    SCOPED_TRACE(std::string(matmul_activations_name(act)) + " n " + std::to_string(n));
    set_matmul_activations(act);
    std::mt19937_64 rng(test_seed());
    const int64_t cols = 2048;
    std::vector<std::unique_ptr<RandomMatrix>> ms;
    for (auto spec : {MatrixSpec{WeightFormat::Affine, 8192, cols, 4, 64, DType::BF16, 0},
                      MatrixSpec{WeightFormat::Affine, 4096, cols, 4, 64, DType::BF16, 0},
                      MatrixSpec{WeightFormat::Affine, 32, cols, 4, 64, DType::BF16, 0},
                      MatrixSpec{WeightFormat::BF16, 32, cols, 0, 0, DType::BF16, 0},
                      MatrixSpec{WeightFormat::Affine, 256, cols, 8, 64, DType::BF16, 0},
                      MatrixSpec{WeightFormat::Affine, 1, cols, 8, 64, DType::BF16, 0}})
        ms.push_back(std::make_unique<RandomMatrix>(spec, rng));
    DeviceData d;
    auto x = random_floats(size_t(n * cols), rng);
    float* dx = d.put(x);
    std::vector<cuda::DMat> dw;
    std::vector<float*> multi, single;
    for (auto& m : ms) {
        dw.push_back(d.put(m->view));
        multi.push_back(d.floats(size_t(n * m->view.rows)));
        single.push_back(d.floats(size_t(n * m->view.rows)));
    }
    std::vector<const cuda::DMat*> wp;
    for (auto& w : dw) wp.push_back(&w);
    cuda::matmul_multi(wp.data(), multi.data(), int(wp.size()), dx, n, nullptr);
    for (size_t i = 0; i < dw.size(); ++i) cuda::matmul(dw[i], dx, n, single[i], nullptr);
    for (size_t i = 0; i < dw.size(); ++i) {
        auto a = to_host(multi[i], size_t(n * dw[i].rows)), b = to_host(single[i], size_t(n * dw[i].rows));
        for (size_t r = 0; r < a.size(); ++r) {
            ASSERT_TRUE(std::isfinite(a[r])) << "matrix " << i << " row " << r;
            ASSERT_EQ(a[r], b[r]) << "matrix " << i << " row " << r;
        }
    }
    }
    set_matmul_activations(MatmulActivations::F32);
    std::mt19937_64 rng(test_seed());
    check_matmul(MatrixSpec{WeightFormat::Affine, 515, 512, 4, 64, DType::BF16, 0}, 33, rng);
}

TEST(CudaKernels, EmbedRowsMatchDequantizeRow) {
    SKIP_WITHOUT_CUDA();
    std::mt19937_64 rng(test_seed());
    for (auto spec : {MatrixSpec{WeightFormat::BF16, 50, 72, 0, 0, DType::BF16, 0},
                      MatrixSpec{WeightFormat::Affine, 50, 192, 4, 64, DType::BF16, 0},
                      MatrixSpec{WeightFormat::Affine, 50, 96, 6, 32, DType::F16, 0}}) {
        SCOPED_TRACE(spec.name());
        RandomMatrix w(spec, rng);
        std::vector<int32_t> ids = {0, 49, 7, 7, 23};
        DeviceData d;
        auto dw = d.put(w.view);
        float* out = d.floats(ids.size() * size_t(spec.cols));
        cuda::embed_rows(dw, d.put(ids), int64_t(ids.size()), out, nullptr);
        auto got = to_host(out, ids.size() * size_t(spec.cols));
        std::vector<float> row(static_cast<size_t>(spec.cols));
        for (size_t t = 0; t < ids.size(); ++t) {
            dequantize_row(w.view, ids[t], row.data());
            for (int64_t c = 0; c < spec.cols; ++c) {
                ASSERT_NEAR(got[t * size_t(spec.cols) + size_t(c)], row[size_t(c)], 1e-6f * (1 + std::fabs(row[size_t(c)])));
            }
        }
    }
}

TEST(CudaKernels, RmsnormAndElementwiseMatchReference) {
    SKIP_WITHOUT_CUDA();
    std::mt19937_64 rng(test_seed());
    for (int64_t dim : {int64_t(10), int64_t(72), int64_t(2048)}) {
        const int64_t rows = 5;
        auto x = random_floats(size_t(rows * dim), rng), w = random_floats(size_t(dim), rng);
        auto z = random_floats(size_t(rows * dim), rng);
        DeviceData d;
        float* out = d.floats(x.size());
        cuda::rmsnorm(d.put(x), d.put(w), rows, dim, 1e-6f, out, nullptr);
        auto got = to_host(out, x.size());
        float* o = d.put(x);
        cuda::gated_rmsnorm(o, d.put(z), d.put(w), rows, dim, 1e-6f, nullptr);
        auto gated = to_host(o, x.size());
        for (int64_t r = 0; r < rows; ++r) {
            std::vector<float> ref(static_cast<size_t>(dim));
            cpu::rmsnorm(&x[size_t(r * dim)], w.data(), dim, 1e-6, ref.data());
            for (int64_t i = 0; i < dim; ++i) {
                const size_t at = size_t(r * dim + i);
                ASSERT_NEAR(got[at], ref[size_t(i)], 1e-5f * (1 + std::fabs(ref[size_t(i)])));
                const float g = ref[size_t(i)] * cpu::silu(z[at]);
                ASSERT_NEAR(gated[at], g, 1e-5f * (1 + std::fabs(g)));
            }
        }
    }
    // the residual adds: rmsnorm of x + add (x unchanged), and moe_finish (one token: its row over
    // 1,024 threads, 2048 and 300 wide)
    for (auto [n, H] : {std::pair<int64_t, int64_t>{3, 37}, {1, 2048}, {1, 300}}) {
    SCOPED_TRACE("n " + std::to_string(n) + " H " + std::to_string(H));
    const int64_t k = 3;
    auto a = random_floats(size_t(n * H), rng), mix = random_floats(size_t(n * H), rng);
    auto b = random_floats(size_t(n * H), rng), g = random_floats(size_t(n), rng), w = random_floats(size_t(H), rng);
    auto routed = random_floats(size_t(n * k * H), rng);
    auto normed = [&](std::vector<float> v, int64_t t) {
        std::vector<float> out(static_cast<size_t>(H));
        cpu::rmsnorm(&v[size_t(t * H)], w.data(), H, 1e-6, out.data());
        return out;
    };
    {
        DeviceData d;
        float *da = d.put(a), *out = d.floats(size_t(n * H));
        cuda::rmsnorm(da, d.put(w), n, H, 1e-6f, out, nullptr, d.put(mix));
        auto got = to_host(out, size_t(n * H));
        ASSERT_EQ(to_host(da, a.size()), a);
        std::vector<float> sum(a.size());
        for (size_t i = 0; i < a.size(); ++i) sum[i] = a[i] + mix[i];
        for (int64_t t = 0; t < n; ++t) {
            auto want = normed(sum, t);
            for (int64_t i = 0; i < H; ++i)
                ASSERT_NEAR(got[size_t(t * H + i)], want[size_t(i)], 1e-5f * (1 + std::fabs(want[size_t(i)])));
        }
    }
    for (bool shared : {false, true})
    for (bool norm : {false, true}) {
        SCOPED_TRACE(std::string(shared ? "shared" : "no shared") + (norm ? ", norm" : ", no norm"));
        DeviceData d;
        float *da = d.put(a), *out = d.floats(size_t(n * H));
        cuda::moe_finish(d.put(routed), n, k, shared ? d.put(b) : nullptr, d.put(g), da, d.put(mix),
                         norm ? d.put(w) : nullptr, H, 1e-6f, out, nullptr);
        auto got = to_host(da, size_t(n * H)), got_norm = to_host(out, size_t(n * H));
        std::vector<float> want(a.size());
        for (int64_t t = 0; t < n; ++t) {
            for (int64_t i = 0; i < H; ++i) {
                float c = 0;
                for (int64_t j = 0; j < k; ++j) c += routed[size_t((t * k + j) * H + i)];
                if (shared) c += cpu::sigmoid(g[size_t(t)]) * b[size_t(t * H + i)];
                const size_t at = size_t(t * H + i);
                want[at] = (a[at] + mix[at]) + c;
                ASSERT_NEAR(got[at], want[at], 1e-5f * (1 + std::fabs(want[at])));
            }
        }
        if (!norm) continue;
        for (int64_t t = 0; t < n; ++t) {
            auto wn = normed(want, t);
            for (int64_t i = 0; i < H; ++i)
                ASSERT_NEAR(got_norm[size_t(t * H + i)], wn[size_t(i)], 1e-5f * (1 + std::fabs(wn[size_t(i)])));
        }
    }
    }
}

TEST(CudaKernels, RouterTopKMatchesReference) {
    SKIP_WITHOUT_CUDA();
    std::mt19937_64 rng(test_seed());
    for (auto [E, k] : {std::pair<int64_t, int64_t>{8, 2}, {256, 8}, {320, 8}, {512, 10}, {12, 12}}) {
        const int64_t n = 7;
        auto logits = random_floats(size_t(n * E), rng, 2.0f);
        DeviceData d;
        int32_t* ids = static_cast<int32_t*>(d.put_bytes(std::vector<int32_t>(size_t(n * k), -1).data(), size_t(n * k) * 4));
        float* wts = d.floats(size_t(n * k));
        cuda::router_top_k(d.put(logits), n, E, k, ids, wts, nullptr);
        auto gid = to_host(ids, size_t(n * k));
        auto gw = to_host(wts, size_t(n * k));
        for (int64_t t = 0; t < n; ++t) {
            std::vector<float> p(logits.begin() + t * E, logits.begin() + (t + 1) * E);
            cpu::softmax(p.data(), E);
            std::vector<int32_t> want(static_cast<size_t>(k));
            cpu::top_k(p, k, want.data());
            float sum = 0;
            for (int64_t j = 0; j < k; ++j) sum += p[size_t(want[size_t(j)])];
            for (int64_t j = 0; j < k; ++j) {
                ASSERT_EQ(gid[size_t(t * k + j)], want[size_t(j)]) << "token " << t << " choice " << j;
                ASSERT_NEAR(gw[size_t(t * k + j)], p[size_t(want[size_t(j)])] / sum, 1e-5f);
            }
        }
    }
}

// The CPU forward's attention for the new tokens (norm, rope, causal softmax, sigmoid gate).
TEST(CudaKernels, AttentionMatchesReference) {
    SKIP_WITHOUT_CUDA();
    std::mt19937_64 rng(test_seed());
    struct Case { int64_t heads, kv_heads, head_dim, rotary, position, n; };
    // (one token over 300 and over 5000 cached rows: the split single-token kernel; several tokens
    // with head_dim a power of two from 32: the tiled kernel, partial query and key tiles)
    for (Case cs : {Case{4, 2, 32, 8, 0, 5}, Case{3, 1, 24, 6, 7, 1}, Case{16, 2, 256, 64, 300, 3}, Case{2, 1, 24, 6, 0, 200},
                    Case{16, 2, 256, 64, 300, 1}, Case{4, 2, 64, 16, 5000, 1}, Case{16, 2, 256, 64, 37, 100},
                    Case{8, 2, 64, 16, 0, 77}}) {
        const int64_t qdim = cs.heads * cs.head_dim * 2, kvdim = cs.kv_heads * cs.head_dim;
        const int64_t total = cs.position + cs.n;
        auto q = random_floats(size_t(cs.n * qdim), rng), k = random_floats(size_t(cs.n * kvdim), rng);
        auto qn = random_floats(size_t(cs.head_dim), rng, 0.3f), kn = random_floats(size_t(cs.head_dim), rng, 0.3f);
        for (auto& e : qn) e += 1;
        for (auto& e : kn) e += 1;
        auto keys = random_floats(size_t(total * kvdim), rng), values = random_floats(size_t(total * kvdim), rng);
        auto v = random_floats(size_t(cs.n * kvdim), rng);
        cuda::AttentionShape s{cs.n, cs.position, cs.heads, cs.kv_heads, cs.head_dim, cs.rotary, 1e7f, 1e-6f};
        DeviceData d;
        float *dq = d.put(q), *dkeys = d.put(keys), *dvalues = d.put(values);
        cuda::attention_prepare(s, dq, d.put(k), d.put(v), d.put(qn), d.put(kn), dkeys, dvalues, nullptr);
        auto gq = to_host(dq, q.size());
        auto gkeys = to_host(dkeys, keys.size()), gvalues = to_host(dvalues, values.size());
        // reference prepare
        for (int64_t t = 0; t < cs.n; ++t) {
            for (int64_t h = 0; h < cs.heads; ++h) {
                float* qh = &q[size_t(t * qdim + h * 2 * cs.head_dim)];
                cpu::rmsnorm(qh, qn.data(), cs.head_dim, 1e-6, qh);
                cpu::rope(qh, cs.rotary, cs.position + t, 1e7);
            }
            for (int64_t h = 0; h < cs.kv_heads; ++h) {
                float* kh = &k[size_t(t * kvdim + h * cs.head_dim)];
                cpu::rmsnorm(kh, kn.data(), cs.head_dim, 1e-6, kh);
                cpu::rope(kh, cs.rotary, cs.position + t, 1e7);
            }
        }
        for (size_t i = 0; i < q.size(); ++i) ASSERT_NEAR(gq[i], q[i], 2e-5f * (1 + std::fabs(q[i]))) << "q " << i;
        // the new keys and values appended to the cache, the rows before it untouched
        const size_t at = size_t(cs.position * kvdim);
        for (size_t i = 0; i < at; ++i) ASSERT_EQ(gkeys[i], keys[i]) << "cached key " << i;
        for (size_t i = 0; i < at; ++i) ASSERT_EQ(gvalues[i], values[i]) << "cached value " << i;
        for (size_t i = 0; i < k.size(); ++i) ASSERT_NEAR(gkeys[at + i], k[i], 2e-5f * (1 + std::fabs(k[i]))) << "k " << i;
        for (size_t i = 0; i < v.size(); ++i) ASSERT_EQ(gvalues[at + i], v[i]) << "v " << i;
        // attention over the cache with the new keys appended (use the reference's rows for both)
        std::copy(k.begin(), k.end(), keys.begin() + cs.position * kvdim);
        std::copy(v.begin(), v.end(), values.begin() + cs.position * kvdim);
        float* out = d.floats(size_t(cs.n * cs.heads * cs.head_dim));
        cuda::attention(s, d.put(q), d.put(keys), d.put(values), out, nullptr);
        auto got = to_host(out, size_t(cs.n * cs.heads * cs.head_dim));
        const int64_t group = cs.heads / cs.kv_heads;
        const float scale = 1.0f / std::sqrt(float(cs.head_dim));
        for (int64_t t = 0; t < cs.n; ++t) {
            for (int64_t h = 0; h < cs.heads; ++h) {
                const int64_t len = cs.position + t + 1, kvh = h / group;
                const float* qh = &q[size_t(t * qdim + h * 2 * cs.head_dim)];
                std::vector<float> sc(static_cast<size_t>(len));
                for (int64_t p = 0; p < len; ++p) {
                    float a = 0;
                    for (int64_t i = 0; i < cs.head_dim; ++i) a += qh[i] * keys[size_t((p * cs.kv_heads + kvh) * cs.head_dim + i)];
                    sc[size_t(p)] = a * scale;
                }
                cpu::softmax(sc.data(), len);
                for (int64_t i = 0; i < cs.head_dim; ++i) {
                    float o = 0;
                    for (int64_t p = 0; p < len; ++p) o += sc[size_t(p)] * values[size_t((p * cs.kv_heads + kvh) * cs.head_dim + i)];
                    o *= cpu::sigmoid(qh[cs.head_dim + i]);
                    ASSERT_NEAR(got[size_t((t * cs.heads + h) * cs.head_dim + i)], o, 2e-5f * (1 + std::fabs(o)))
                        << "token " << t << " head " << h << " dim " << i;
                }
            }
        }
    }
}

struct DeltaCase {
    int64_t Hv, Hk, Dk, Dv, n;
    float A_log_shift = 0;  // +3: strong decay (the chunk's running decay underflows), -6: almost none
};

// The CPU forward's gated delta rule (qwen35moe.cpp), restated: o [n, Hv * Dv]; S updated in place.
void reference_deltanet(const DeltaCase& cs, const std::vector<float>& qkv, const std::vector<float>& b,
                        const std::vector<float>& a, const std::vector<float>& A_log, const std::vector<float>& dt,
                        std::vector<float>& S, std::vector<float>& o) {
    const int64_t kd = cs.Hk * cs.Dk, vd = cs.Hv * cs.Dv, C = 2 * kd + vd;
    o.assign(size_t(cs.n * vd), 0.0f);
    const int64_t ratio = cs.Hv / cs.Hk;
    const float q_scale = 1.0f / std::sqrt(float(cs.Dk));
    for (int64_t h = 0; h < cs.Hv; ++h) {
        float* Sh = &S[size_t(h * cs.Dk * cs.Dv)];
        const int64_t kh = h / ratio;
        const float A = std::exp(A_log[size_t(h)]);
        for (int64_t t = 0; t < cs.n; ++t) {
            const float* row = &qkv[size_t(t * C)];
            std::vector<float> q(row + kh * cs.Dk, row + (kh + 1) * cs.Dk), k(row + kd + kh * cs.Dk, row + kd + (kh + 1) * cs.Dk);
            const float* v = row + 2 * kd + h * cs.Dv;
            cpu::l2norm(q.data(), cs.Dk, 1e-6f);
            cpu::l2norm(k.data(), cs.Dk, 1e-6f);
            for (auto& e : q) e *= q_scale;
            const float beta = cpu::sigmoid(b[size_t(t * cs.Hv + h)]);
            const float decay = std::exp(-A * cpu::softplus(a[size_t(t * cs.Hv + h)] + dt[size_t(h)]));
            std::vector<float> mem(size_t(cs.Dv), 0.0f);
            for (int64_t i = 0; i < cs.Dk; ++i)
                for (int64_t j = 0; j < cs.Dv; ++j) {
                    Sh[i * cs.Dv + j] *= decay;
                    mem[size_t(j)] += Sh[i * cs.Dv + j] * k[size_t(i)];
                }
            for (int64_t j = 0; j < cs.Dv; ++j) mem[size_t(j)] = (v[j] - mem[size_t(j)]) * beta;
            float* oh = &o[size_t(t * vd + h * cs.Dv)];
            for (int64_t i = 0; i < cs.Dk; ++i)
                for (int64_t j = 0; j < cs.Dv; ++j) {
                    Sh[i * cs.Dv + j] += k[size_t(i)] * mem[size_t(j)];
                    oh[j] += Sh[i * cs.Dv + j] * q[size_t(i)];
                }
        }
    }
}

// got within 1e-4 of the largest reference magnitude. Both forms round along chains of a few hundred
// fp32 operations (Dk-long sums, 64-token chunk sums, running decay sums); measured differences are
// about 1e-6 of the largest value, and a wrong index or a missing chunk term is far beyond 1e-4.
void expect_close_to_scale(const std::vector<float>& got, const std::vector<float>& ref, const char* what) {
    double scale = 0;
    for (float e : ref) scale = std::max(scale, double(std::fabs(e)));
    const double bound = 1e-4 * scale + 1e-7;
    for (size_t i = 0; i < ref.size(); ++i) {
        ASSERT_TRUE(std::isfinite(got[i])) << what << " " << i << " not written";
        ASSERT_LE(std::fabs(double(got[i]) - double(ref[i])), bound) << what << " " << i << " (largest " << scale << ")";
    }
}

// One run of a delta-rule launcher on qkv (random when empty) and a random incoming state (prefill
// continuing a sequence), held to reference_deltanet.
void check_deltanet(const DeltaCase& cs, std::vector<float> qkv, std::mt19937_64& rng,
                    void (*launch)(const cuda::DeltaNetArgs&, cudaStream_t)) {
    SCOPED_TRACE("Hv " + std::to_string(cs.Hv) + " Hk " + std::to_string(cs.Hk) + " Dk " + std::to_string(cs.Dk) + " Dv " +
                 std::to_string(cs.Dv) + " n " + std::to_string(cs.n) + " A_log shift " + std::to_string(cs.A_log_shift));
    const int64_t kd = cs.Hk * cs.Dk, vd = cs.Hv * cs.Dv, C = 2 * kd + vd;
    if (qkv.empty()) qkv = random_floats(size_t(cs.n * C), rng);
    auto b = random_floats(size_t(cs.n * cs.Hv), rng), a = random_floats(size_t(cs.n * cs.Hv), rng);
    auto A_log = random_floats(size_t(cs.Hv), rng, 0.5f), dt = random_floats(size_t(cs.Hv), rng, 0.5f);
    for (auto& e : A_log) e += cs.A_log_shift;
    auto S = random_floats(size_t(cs.Hv * cs.Dk * cs.Dv), rng, 0.1f);
    DeviceData d;
    float* dS = d.put(S);
    float* out = d.floats(size_t(cs.n * vd));
    cuda::DeltaNetArgs args;
    args.qkv = d.put(qkv);
    args.b = d.put(b);
    args.a = d.put(a);
    args.A_log = d.put(A_log);
    args.dt_bias = d.put(dt);
    args.state = dS;
    args.out = out;
    args.n = cs.n;
    args.conv_dim = C;
    args.value_heads = cs.Hv;
    args.key_heads = cs.Hk;
    args.key_dim = cs.Dk;
    args.value_dim = cs.Dv;
    launch(args, nullptr);
    auto gout = to_host(out, size_t(cs.n * vd));
    auto gS = to_host(dS, S.size());
    std::vector<float> o;
    reference_deltanet(cs, qkv, b, a, A_log, dt, S, o);
    expect_close_to_scale(gout, o, "out");
    expect_close_to_scale(gS, S, "state");
}

// The CPU forward's convolution and gated delta rule, restated.
TEST(CudaKernels, ConvAndDeltaNetMatchReference) {
    SKIP_WITHOUT_CUDA();
    std::mt19937_64 rng(test_seed());
    struct Case { int64_t Hv, Hk, Dk, Dv, K, n; };
    for (Case cs : {Case{4, 2, 16, 16, 4, 5}, Case{6, 2, 12, 10, 4, 1}, Case{32, 16, 128, 128, 4, 3}, Case{4, 2, 16, 40, 3, 70},
                    Case{2, 1, 256, 33, 4, 2}, Case{32, 16, 128, 128, 4, 1}, Case{2, 1, 256, 33, 4, 40}}) {
        const int64_t kd = cs.Hk * cs.Dk, vd = cs.Hv * cs.Dv, C = 2 * kd + vd;
        auto x = random_floats(size_t(cs.n * C), rng), taps = random_floats(size_t(C * cs.K), rng, 0.5f);
        auto state = random_floats(size_t((cs.K - 1) * C), rng);
        DeviceData d;
        float *dstate = d.put(state), *conv = d.floats(x.size());
        cuda::conv1d_silu(d.put(x), dstate, d.put(taps), cs.n, C, cs.K, conv, nullptr);
        auto gconv = to_host(conv, x.size());
        auto gstate = to_host(dstate, state.size());
        // reference conv
        std::vector<float> window(size_t((cs.K - 1 + cs.n) * C));
        std::copy(state.begin(), state.end(), window.begin());
        std::copy(x.begin(), x.end(), window.begin() + (cs.K - 1) * C);
        std::vector<float> rconv(x.size());
        for (int64_t ch = 0; ch < C; ++ch)
            for (int64_t t = 0; t < cs.n; ++t) {
                float s = 0;
                for (int64_t j = 0; j < cs.K; ++j) s += taps[size_t(ch * cs.K + j)] * window[size_t((t + j) * C + ch)];
                rconv[size_t(t * C + ch)] = cpu::silu(s);
            }
        for (size_t i = 0; i < x.size(); ++i) ASSERT_NEAR(gconv[i], rconv[i], 1e-5f * (1 + std::fabs(rconv[i]))) << "conv " << i;
        for (size_t i = 0; i < state.size(); ++i) ASSERT_EQ(gstate[i], window[window.size() - state.size() + i]) << "state " << i;
        check_deltanet(DeltaCase{cs.Hv, cs.Hk, cs.Dk, cs.Dv, cs.n}, rconv, rng, cuda::deltanet_recurrence);
        if (HasFatalFailure()) return;
    }
}

// The chunked form on its own (any prompt length, partial and exact chunks, the 1,024-token launch
// segments) and through deltanet_recurrence's dispatch, both against the token-by-token reference.
TEST(CudaKernels, ChunkedDeltaNetMatchesReference) {
    SKIP_WITHOUT_CUDA();
    std::mt19937_64 rng(test_seed());
    std::vector<DeltaCase> cases;
    for (int64_t n : {1, 31, 64, 65, 200, 513}) {
        cases.push_back({32, 16, 128, 128, n});  // 35B-A3B's heads
        cases.push_back({6, 2, 10, 10, n});      // 10-dim heads, three value heads a key head
    }
    cases.push_back({4, 2, 16, 40, 130, 3.0f});    // strong decay
    cases.push_back({4, 4, 12, 33, 97, -6.0f});    // almost no decay, one value head a key head
    cases.push_back({2, 1, 128, 72, 1100});        // two launch segments
    cases.push_back({2, 1, 36, 128, 2049, 0.5f});  // three
    for (const DeltaCase& cs : cases) {
        check_deltanet(cs, {}, rng, cuda::deltanet_chunked);
        if (HasFatalFailure()) return;
        check_deltanet(cs, {}, rng, cuda::deltanet_recurrence);
        if (HasFatalFailure()) return;
    }
}

// Routed experts in one batch: gate/up with SiLU, then down scaled by the routing weight.
TEST(CudaKernels, MoeBatchMatchesReference) {
    SKIP_WITHOUT_CUDA();
    std::mt19937_64 rng(test_seed());
    for (auto mode : {MatmulActivations::F32, MatmulActivations::Int8})
    for (auto [H, I, n, k, E] : {std::tuple<int64_t, int64_t, int64_t, int64_t, int64_t>{64, 16, 1, 2, 4},
                                 {2048, 512, 1, 8, 12}, {72, 20, 19, 3, 5}, {256, 64, 40, 4, 6},
                                 {512, 1024, 1, 4, 9}, {4096, 512, 1, 3, 4}}) {
        SCOPED_TRACE("H " + std::to_string(H) + " n " + std::to_string(n) + " " + std::string(matmul_activations_name(mode)));
        set_matmul_activations(mode);
        // int8: the reference quantises the down input it computed itself, which can round a code
        // differently from the kernel's: a looser bound there
        const double rel = mode == MatmulActivations::Int8 ? 2e-3 : 1e-4;
        std::vector<std::unique_ptr<RandomMatrix>> g, u, dn;
        DeviceData d;
        std::vector<cuda::ExpertJob> jobs;
        for (int64_t e = 0; e < E; ++e) {
            const bool q4 = e % 2 == 0;
            auto spec = [&](int64_t r, int64_t c) {
                return q4 && c % 64 == 0 ? MatrixSpec{WeightFormat::Affine, r, c, 4, 64, DType::BF16, 0}
                                         : MatrixSpec{WeightFormat::BF16, r, c, 0, 0, DType::BF16, 0};
            };
            g.push_back(std::make_unique<RandomMatrix>(spec(I, H), rng));
            u.push_back(std::make_unique<RandomMatrix>(spec(I, H), rng));
            dn.push_back(std::make_unique<RandomMatrix>(spec(H, I), rng));
        }
        // routing: slot s = t*k + j -> expert (distinct per token)
        std::vector<int32_t> chosen(static_cast<size_t>(n * k));
        for (int64_t t = 0; t < n; ++t) {
            std::vector<int32_t> perm(static_cast<size_t>(E));
            for (int64_t e = 0; e < E; ++e) perm[size_t(e)] = int32_t(e);
            std::shuffle(perm.begin(), perm.end(), rng);
            for (int64_t j = 0; j < k; ++j) chosen[size_t(t * k + j)] = perm[size_t(j)];
        }
        std::map<int32_t, std::vector<int32_t>> by;
        for (size_t s = 0; s < chosen.size(); ++s) by[chosen[s]].push_back(int32_t(s));
        std::vector<int32_t> slot_list;
        int64_t max_count = 0;
        for (auto& [e, list] : by) {
            cuda::ExpertJob job;
            job.gate = d.put(g[size_t(e)]->view);
            job.up = d.put(u[size_t(e)]->view);
            job.down = d.put(dn[size_t(e)]->view);
            job.slot_begin = int32_t(slot_list.size());
            job.count = int32_t(list.size());
            max_count = std::max<int64_t>(max_count, job.count);
            slot_list.insert(slot_list.end(), list.begin(), list.end());
            jobs.push_back(job);
        }
        auto x = random_floats(size_t(n * H), rng);
        auto wts = random_floats(size_t(n * k), rng);
        cuda::MoeBatch batch{static_cast<cuda::ExpertJob*>(d.put_bytes(jobs.data(), jobs.size() * sizeof(cuda::ExpertJob))),
                             int64_t(jobs.size()), max_count, d.put(slot_list), k, H, I, n};
        float* act = d.floats(size_t(n * k * I));
        float* routed = d.floats(size_t(n * k * H));
        cuda::moe_gate_up(batch, d.put(x), act, nullptr);
        cuda::moe_down(batch, act, d.put(wts), routed, nullptr);
        auto got = to_host(routed, size_t(n * k * H));
        if (n == 1) {
            // The device-routed kernels (ids index a table of every expert) give the same bits.
            std::vector<cuda::ExpertJob> table(static_cast<size_t>(E));
            size_t ji = 0;
            for (auto& entry : by) table[size_t(entry.first)] = jobs[ji++];
            auto* dtable = static_cast<cuda::ExpertJob*>(d.put_bytes(table.data(), table.size() * sizeof(cuda::ExpertJob)));
            float* act2 = d.floats(size_t(n * k * I));
            float* routed2 = d.floats(size_t(n * k * H));
            const int32_t* dids = d.put(chosen);
            cuda::moe_gate_up_routed(dtable, dids, n * k, k, H, I, d.put(x), act2, nullptr);
            cuda::moe_down_routed(dtable, dids, n * k, H, I, act2, d.put(wts), routed2, nullptr);
            auto got2 = to_host(routed2, size_t(n * k * H));
            for (size_t i = 0; i < got.size(); ++i) ASSERT_EQ(got[i], got2[i]) << "routed vs grouped " << i;
        }
        for (size_t s = 0; s < chosen.size(); ++s) {
            const int64_t e = chosen[s], t = int64_t(s) / k;
            std::vector<float> gg(static_cast<size_t>(I)), uu(static_cast<size_t>(I)), y(static_cast<size_t>(H));
            const Matrix &gm = g[size_t(e)]->view, &um = u[size_t(e)]->view, &dm = dn[size_t(e)]->view;
            // one token: the experts' kernels take int8 for gate and up together (same shape and
            // group, at most 2,048 columns: 4,096-column experts run the generic exact kernel), down
            // on its own; several tokens: the tensor cores
            const bool gu_int8 = n > 1 || (cuda_takes_int8(um) && gm.cols <= 2048);
            const MatmulActivations gu_act = gu_int8 ? reference_activations(gm, n, mode, true) : MatmulActivations::F32;
            matmul_rows(Isa::Scalar, gm, &x[size_t(t * H)], 1, gg.data(), 0, I, gu_act);
            matmul_rows(Isa::Scalar, um, &x[size_t(t * H)], 1, uu.data(), 0, I, gu_act);
            for (int64_t i = 0; i < I; ++i) gg[size_t(i)] = cpu::silu(gg[size_t(i)]) * uu[size_t(i)];
            matmul_rows(Isa::Scalar, dm, gg.data(), 1, y.data(), 0, H, reference_activations(dm, n, mode, true));
            double mag = 0;
            for (float v : y) mag = std::max(mag, double(std::fabs(v)));
            for (int64_t r = 0; r < H; ++r) {
                const float want = y[size_t(r)] * wts[s];
                ASSERT_NEAR(got[s * size_t(H) + size_t(r)], want, rel * (mag + 1) * std::fabs(wts[s]) + 1e-6)
                    << "slot " << s << " row " << r;
            }
        }
    }
    set_matmul_activations(MatmulActivations::F32);
}

// The device grouping of a resident prompt's slots equals the host's: experts ascending, slots
// ascending within an expert, each job's matrices taken from the table.
TEST(CudaKernels, GroupByExpertMatchesHostGrouping) {
    SKIP_WITHOUT_CUDA();
    std::mt19937_64 rng(test_seed());
    for (auto [E, slots] : {std::pair<int64_t, int64_t>{1, 7}, {5, 1}, {8, 300}, {256, 4096}, {320, 4109}}) {
        SCOPED_TRACE("experts " + std::to_string(E) + " slots " + std::to_string(slots));
        std::vector<int32_t> ids(static_cast<size_t>(slots));
        for (auto& id : ids) id = int32_t(rng() % uint64_t(E));
        std::vector<cuda::ExpertJob> table(static_cast<size_t>(E));
        for (int64_t e = 0; e < E; ++e) table[size_t(e)].gate.rows = 1000 + e;
        DeviceData d;
        auto* dtable = static_cast<cuda::ExpertJob*>(d.put_bytes(table.data(), table.size() * sizeof(cuda::ExpertJob)));
        auto* djobs = static_cast<cuda::ExpertJob*>(d.put_bytes(table.data(), table.size() * sizeof(cuda::ExpertJob)));
        auto* dlist = static_cast<int32_t*>(d.put_bytes(std::vector<int32_t>(ids.size(), -1).data(), ids.size() * 4));
        cuda::group_by_expert(dtable, d.put(ids), slots, E, djobs, dlist, nullptr);
        std::vector<cuda::ExpertJob> jobs(table.size());
        CUDA_CHECK(cudaMemcpy(jobs.data(), djobs, jobs.size() * sizeof(cuda::ExpertJob), cudaMemcpyDeviceToHost));
        auto list = to_host(dlist, ids.size());
        int32_t at = 0;
        for (int64_t e = 0; e < E; ++e) {
            const cuda::ExpertJob& j = jobs[size_t(e)];
            ASSERT_EQ(j.gate.rows, 1000 + e);
            ASSERT_EQ(j.slot_begin, at) << "expert " << e;
            for (int32_t s = 0; s < int32_t(slots); ++s) {
                if (ids[size_t(s)] != e) continue;
                ASSERT_LT(at, j.slot_begin + j.count) << "expert " << e;
                ASSERT_EQ(list[size_t(at++)], s) << "expert " << e;
            }
            ASSERT_EQ(at, j.slot_begin + j.count) << "expert " << e;
        }
    }
}

// Routed experts on the tensor cores, in either activation semantics: expert token counts of 1 ..
// 100 (partial and several token tiles), enough experts that one launch walks several token tiles
// per block; the batch equals one launch per expert (waves of one) bit for bit, and the reference
// within the fp32 bound (int8: the same quantised inputs).
void check_tensor_core_experts(MatmulActivations mode) {
    SCOPED_TRACE(std::string(matmul_activations_name(mode)));
    set_matmul_activations(mode);
    std::mt19937_64 rng(test_seed());
    const int64_t H = 512, I = 512, E = 140, k = 2;
    std::vector<int32_t> counts = {100, 70, 40, 33, 32, 31, 17, 9, 8, 1};
    while (int64_t(counts.size()) < E) counts.push_back(int32_t(1 + counts.size() % 2));
    int64_t slots = 0;
    for (int32_t c : counts) slots += c;
    if (slots % k) ++counts.back(), ++slots;
    const int64_t n = slots / k;
    std::vector<int32_t> chosen;
    for (int64_t e = 0; e < E; ++e) chosen.insert(chosen.end(), size_t(counts[size_t(e)]), int32_t(e));
    std::shuffle(chosen.begin(), chosen.end(), rng);
    std::vector<std::unique_ptr<RandomMatrix>> g, u, dn;
    DeviceData d;
    std::map<int32_t, std::vector<int32_t>> by;
    for (size_t s = 0; s < chosen.size(); ++s) by[chosen[s]].push_back(int32_t(s));
    std::vector<cuda::ExpertJob> jobs;
    std::vector<int32_t> slot_list;
    for (int64_t e = 0; e < E; ++e) {
        g.push_back(std::make_unique<RandomMatrix>(MatrixSpec{WeightFormat::Affine, I, H, 4, 64, DType::BF16, 0}, rng));
        u.push_back(std::make_unique<RandomMatrix>(MatrixSpec{WeightFormat::Affine, I, H, 4, 64, DType::BF16, 0}, rng));
        dn.push_back(std::make_unique<RandomMatrix>(MatrixSpec{WeightFormat::Affine, H, I, 4, 64, DType::BF16, 0}, rng));
        cuda::ExpertJob job;
        job.gate = d.put(g.back()->view);
        job.up = d.put(u.back()->view);
        job.down = d.put(dn.back()->view);
        job.slot_begin = int32_t(slot_list.size());
        job.count = int32_t(by[int32_t(e)].size());
        slot_list.insert(slot_list.end(), by[int32_t(e)].begin(), by[int32_t(e)].end());
        jobs.push_back(job);
    }
    auto x = random_floats(size_t(n * H), rng);
    auto wts = random_floats(size_t(slots), rng);
    float* dx = d.put(x);
    float* dw = d.put(wts);
    auto* djobs = static_cast<cuda::ExpertJob*>(d.put_bytes(jobs.data(), jobs.size() * sizeof(cuda::ExpertJob)));
    const int32_t* dslots = d.put(slot_list);
    auto run = [&](int64_t first, int64_t count) {
        int64_t max_count = 0;
        for (int64_t j = first; j < first + count; ++j) max_count = std::max<int64_t>(max_count, jobs[size_t(j)].count);
        float* act = d.floats(size_t(slots * I));
        float* routed = d.floats(size_t(slots * H));
        cuda::MoeBatch batch{djobs + first, count, max_count, dslots, k, H, I, n};
        cuda::moe_gate_up(batch, dx, act, nullptr);
        cuda::moe_down(batch, act, dw, routed, nullptr);
        return routed;
    };
    auto all = to_host(run(0, E), size_t(slots * H));
    std::vector<float*> single;
    for (int64_t e = 0; e < E; ++e) single.push_back(run(e, 1));
    for (int64_t e = 0; e < E; ++e) {
        auto one = to_host(single[size_t(e)], size_t(slots * H));
        for (int32_t s : by[int32_t(e)])
            for (int64_t r = 0; r < H; ++r)
                ASSERT_EQ(all[size_t(s * H + r)], one[size_t(s * H + r)]) << "expert " << e << " slot " << s << " row " << r;
    }
    for (size_t s = 0; s < chosen.size(); ++s) {
        const int64_t e = chosen[s], t = int64_t(s) / k;
        std::vector<float> gg(static_cast<size_t>(I)), uu(static_cast<size_t>(I)), y(static_cast<size_t>(H));
        // (the tensor cores' semantics for several tokens, applied to each token on its own)
        const MatmulActivations ref = reference_activations(g[size_t(e)]->view, n, mode, true);
        matmul_rows(Isa::Scalar, g[size_t(e)]->view, &x[size_t(t * H)], 1, gg.data(), 0, I, ref);
        matmul_rows(Isa::Scalar, u[size_t(e)]->view, &x[size_t(t * H)], 1, uu.data(), 0, I, ref);
        for (int64_t i = 0; i < I; ++i) gg[size_t(i)] = cpu::silu(gg[size_t(i)]) * uu[size_t(i)];
        matmul_rows(Isa::Scalar, dn[size_t(e)]->view, gg.data(), 1, y.data(), 0, H, ref);
        double mag = 0;
        for (float v : y) mag = std::max(mag, double(std::fabs(v)));
        // int8: the down input is quantised from each side's own act (a code may round apart)
        const double rel = mode == MatmulActivations::Int8 ? 2e-3 : 1e-4;
        for (int64_t r = 0; r < H; ++r) {
            const float want = y[size_t(r)] * wts[s];
            ASSERT_NEAR(all[s * size_t(H) + size_t(r)], want, rel * (mag + 1) * std::fabs(wts[s]) + 1e-6)
                << "slot " << s << " expert " << e << " row " << r;
        }
    }
}

TEST(CudaKernels, MoeTensorCoresSplitInvariant) {
    SKIP_WITHOUT_CUDA();
    check_tensor_core_experts(MatmulActivations::F32);
    if (!HasFatalFailure()) check_tensor_core_experts(MatmulActivations::Int8);
    set_matmul_activations(MatmulActivations::F32);
}

}  // namespace
