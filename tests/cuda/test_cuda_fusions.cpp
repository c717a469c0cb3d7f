// The work the CUDA ops fold into one launch (MatmulFusion, the delta rule's output norm) equals the
// ops it stands for run one after the other, bit for bit: one token through the fused launches, and
// their fallbacks (several tokens, formats without a fused path). Each case runs on the same stream
// after the one before it, so a last-block counter left set would fail the next. Skips without a
// CUDA device.
#include "cuda_test_util.h"
#include "kernels/cuda/ops.h"
#include "kernels/cpu/matmul.h"

#include <string>

using namespace flashmoe;
using namespace flashmoe::test;

namespace {

template <typename T>
void expect_same(const T* a, const T* b, size_t count, const char* what) {
    auto x = to_host(a, count), y = to_host(b, count);
    for (size_t i = 0; i < count; ++i) ASSERT_EQ(x[i], y[i]) << what << " " << i;
}

std::vector<std::unique_ptr<RandomMatrix>> matrices(std::initializer_list<MatrixSpec> specs, std::mt19937_64& rng) {
    std::vector<std::unique_ptr<RandomMatrix>> ms;
    for (const MatrixSpec& spec : specs) ms.push_back(std::make_unique<RandomMatrix>(spec, rng));
    return ms;
}

constexpr MatmulActivations kModes[] = {MatmulActivations::F32, MatmulActivations::Int8};

// The router's launch: norm of residual + add, the router (and guess, shared gate) products, top-k.
TEST(CudaFusions, RouterNormProductsTopKEqualSeparateOps) {
    SKIP_WITHOUT_CUDA();
    std::mt19937_64 rng(test_seed());
    struct Case {
        const char* name;
        int64_t H, E, k;
        bool guess, shared, generic;  // generic: a router no fast kernel takes (the fallbacks)
        int32_t extra;
    };
    for (const Case& cs : {Case{"35B router + shared gate, shared slot", 2048, 256, 8, false, true, false, 256},
                           Case{"guess + shared gate", 2048, 256, 8, true, true, false, -1},
                           Case{"512 experts", 2048, 512, 10, false, false, false, -1},
                           Case{"4096 wide (no fast 8-bit kernel)", 4096, 128, 8, false, true, false, -1},
                           Case{"bf16 router", 2048, 320, 8, false, true, true, -1},
                           Case{"600 experts (block top-k)", 1024, 600, 4, false, false, false, -1}})
    for (int64_t n : {1, 3})
    for (MatmulActivations mode : kModes) {
        if (cs.guess && n > 1) continue;  // (decode only)
        SCOPED_TRACE(std::string(cs.name) + " n " + std::to_string(n) + " " + std::string(matmul_activations_name(mode)));
        set_matmul_activations(mode);
        const int64_t H = cs.H, E = cs.E, rows = cs.guess ? 2 : n;
        const MatrixSpec router = cs.generic ? MatrixSpec{WeightFormat::BF16, E, H, 0, 0, DType::BF16, 0}
                                             : MatrixSpec{WeightFormat::Affine, E, H, 8, 64, DType::BF16, 0};
        auto ms = matrices({router, router, MatrixSpec{WeightFormat::Affine, 1, H, 8, 64, DType::BF16, 0}}, rng);
        DeviceData d;
        std::vector<cuda::DMat> dw;
        for (auto& m : ms) dw.push_back(d.put(m->view));
        const cuda::DMat* ws[3] = {&dw[0]};
        int count = 1;
        if (cs.guess) ws[count++] = &dw[1];
        if (cs.shared) ws[count++] = &dw[2];
        const float* residual = d.put(random_floats(size_t(n * H), rng));
        const float* add = d.put(random_floats(size_t(n * H), rng));
        const float* norm = d.put(random_floats(size_t(H), rng, 0.3f));
        struct Out {
            float *xn, *probs, *gate, *weights;
            int32_t* ids;
        };
        auto outputs = [&] {
            Out o{d.floats(size_t(n * H)), d.floats(size_t(rows * E)), d.floats(size_t(n)), d.floats(size_t(rows * cs.k + 1)), nullptr};
            o.ids = static_cast<int32_t*>(d.put_bytes(std::vector<int32_t>(size_t(rows * cs.k + 1), -1).data(), size_t(rows * cs.k + 1) * 4));
            return o;
        };
        auto ys = [&](const Out& o) {
            std::vector<float*> y = {o.probs};
            if (cs.guess) y.push_back(o.probs + E);
            if (cs.shared) y.push_back(o.gate);
            return y;
        };
        const Out fused = outputs(), apart = outputs();
        cuda::MatmulFusion f;
        f.residual = residual;
        f.add = add;
        f.norm = norm;
        f.eps = 1e-6f;
        f.top_k = cs.k;
        f.top_k_rows = rows;
        f.ids = fused.ids;
        f.weights = fused.weights;
        f.extra_id = cs.extra;
        auto yf = ys(fused), ya = ys(apart);
        cuda::matmul_multi(ws, yf.data(), count, fused.xn, n, nullptr, f);
        cuda::rmsnorm(residual, norm, n, H, 1e-6f, apart.xn, nullptr, add);
        cuda::matmul_multi(ws, ya.data(), count, apart.xn, n, nullptr);
        cuda::router_top_k(apart.probs, rows, E, cs.k, apart.ids, apart.weights, nullptr, cs.extra);
        const size_t chosen = size_t(rows * cs.k) + (cs.extra >= 0 ? 1 : 0);
        expect_same(fused.xn, apart.xn, size_t(n * H), "normed input");
        expect_same(fused.probs, apart.probs, size_t(rows * E), "logits");
        if (cs.shared) expect_same(fused.gate, apart.gate, size_t(n), "shared gate");
        expect_same(fused.ids, apart.ids, chosen, "id");
        expect_same(fused.weights, apart.weights, chosen, "weight");
        if (HasFatalFailure()) return;
    }
    set_matmul_activations(MatmulActivations::F32);
}

// The DeltaNet input projection with the conv on its first matrix's rows.
TEST(CudaFusions, InputProjectionConvEqualsSeparateOps) {
    SKIP_WITHOUT_CUDA();
    std::mt19937_64 rng(test_seed());
    // 2048 columns (a lane's two chunks), 4096 (a warp pair's halves with fp32 activations), 96 (no
    // fast kernel: the conv runs on its own)
    for (int64_t H : {2048, 4096, 96})
    for (int64_t n : {1, 4})
    for (MatmulActivations mode : kModes) {
        SCOPED_TRACE("H " + std::to_string(H) + " n " + std::to_string(n) + " " + std::string(matmul_activations_name(mode)));
        set_matmul_activations(mode);
        const int64_t C = 1030, K = 4;
        const int group = H % 64 == 0 ? 64 : 32;
        auto ms = matrices({MatrixSpec{WeightFormat::Affine, C, H, 4, group, DType::BF16, 0},
                            MatrixSpec{WeightFormat::Affine, 512, H, 4, group, DType::BF16, 0},
                            MatrixSpec{WeightFormat::Affine, 8, H, 4, group, DType::BF16, 0},
                            MatrixSpec{WeightFormat::Affine, 8, H, 4, group, DType::BF16, 0}},
                           rng);
        DeviceData d;
        std::vector<cuda::DMat> dw;
        for (auto& m : ms) dw.push_back(d.put(m->view));
        const cuda::DMat* ws[4] = {&dw[0], &dw[1], &dw[2], &dw[3]};
        const float* x = d.put(random_floats(size_t(n * H), rng));
        const float* taps = d.put(random_floats(size_t(C * K), rng, 0.5f));
        const auto state = random_floats(size_t((K - 1) * C), rng);
        float *state_f = d.put(state), *state_a = d.put(state);
        float *conv_f = d.floats(size_t(n * C)), *conv_a = d.floats(size_t(n * C));
        std::vector<float*> yf, ya;
        for (auto& w : dw) {
            yf.push_back(d.floats(size_t(n * w.rows)));
            ya.push_back(d.floats(size_t(n * w.rows)));
        }
        cuda::MatmulFusion f;
        f.conv_state = state_f;
        f.conv_taps = taps;
        f.conv_kernel = K;
        f.conv_out = conv_f;
        cuda::matmul_multi(ws, yf.data(), 4, x, n, nullptr, f);
        cuda::matmul_multi(ws, ya.data(), 4, x, n, nullptr);
        cuda::conv1d_silu(ya[0], state_a, taps, n, C, K, conv_a, nullptr);
        expect_same(conv_f, conv_a, size_t(n * C), "conv");
        expect_same(state_f, state_a, state.size(), "state");
        for (int m = 1; m < 4; ++m) expect_same(yf[size_t(m)], ya[size_t(m)], size_t(n * dw[size_t(m)].rows), "product");
        if (HasFatalFailure()) return;
    }
    set_matmul_activations(MatmulActivations::F32);
}

// The delta rule with its gated output norm (the last block of each value head applies it).
TEST(CudaFusions, DeltaRuleGatedNormEqualsSeparateOps) {
    SKIP_WITHOUT_CUDA();
    std::mt19937_64 rng(test_seed());
    struct Case { int64_t Hv, Hk, Dk, Dv, n; };
    // (35B-A3B's heads; odd value widths; keys of 256 dims; 40 tokens: the chunked form, then the norm)
    for (Case cs : {Case{32, 16, 128, 128, 1}, Case{32, 16, 128, 128, 5}, Case{6, 2, 12, 40, 3}, Case{2, 1, 256, 33, 7},
                    Case{4, 2, 128, 300, 1}, Case{32, 16, 128, 128, 40}}) {
        SCOPED_TRACE("Hv " + std::to_string(cs.Hv) + " Dv " + std::to_string(cs.Dv) + " n " + std::to_string(cs.n));
        const int64_t vd = cs.Hv * cs.Dv, C = 2 * cs.Hk * cs.Dk + vd;
        DeviceData d;
        const auto state = random_floats(size_t(cs.Hv * cs.Dk * cs.Dv), rng, 0.1f);
        cuda::DeltaNetArgs args;
        args.qkv = d.put(random_floats(size_t(cs.n * C), rng));
        args.b = d.put(random_floats(size_t(cs.n * cs.Hv), rng));
        args.a = d.put(random_floats(size_t(cs.n * cs.Hv), rng));
        args.A_log = d.put(random_floats(size_t(cs.Hv), rng, 0.5f));
        args.dt_bias = d.put(random_floats(size_t(cs.Hv), rng, 0.5f));
        args.n = cs.n;
        args.conv_dim = C;
        args.value_heads = cs.Hv;
        args.key_heads = cs.Hk;
        args.key_dim = cs.Dk;
        args.value_dim = cs.Dv;
        const float* z = d.put(random_floats(size_t(cs.n * vd), rng));
        const float* norm = d.put(random_floats(size_t(cs.Dv), rng, 0.3f));
        cuda::DeltaNetArgs fused = args, apart = args;
        fused.state = d.put(state);
        fused.out = d.floats(size_t(cs.n * vd));
        fused.z = z;
        fused.norm = norm;
        fused.eps = 1e-6f;
        apart.state = d.put(state);
        apart.out = d.floats(size_t(cs.n * vd));
        cuda::deltanet_recurrence(fused, nullptr);
        cuda::deltanet_recurrence(apart, nullptr);
        cuda::gated_rmsnorm(apart.out, z, norm, cs.n * cs.Hv, cs.Dv, 1e-6f, nullptr);
        expect_same(fused.out, apart.out, size_t(cs.n * vd), "out");
        expect_same(fused.state, apart.state, state.size(), "state");
        if (HasFatalFailure()) return;
    }
}

}  // namespace
