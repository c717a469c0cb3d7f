// Microbenchmark of flashmoe::matmul on the weight shapes of Qwen3.5-35B-A3B (MLX 4-bit, group 64,
// bf16 scales; the router 8-bit), decode (n = 1), an expert's share of a 512-token prompt at K = 8
// (n = 16) and a dense matrix's whole prompt (n = 512), 2 threads, and 1 thread for the expert
// shapes and in_proj_qkv. Reports GB/s of weight data streamed (codes + scales + biases) and
// GFLOP/s (2 * rows * cols * n per call) over wall time. On a shared machine, the 1-thread rows'
// CPU time (the `CPU` column) is the steadier measure of a kernel's cost.
//
// Weights are cold, as in the engine (each token streams ~1.7 GB, far more than any cache): small
// matrices are replicated until the set exceeds the L3 cache and each iteration uses the next copy.
//
// FLASHMOE_BENCH_HOT=1 uses a single copy instead (cache-resident when it fits): the kernel's
// compute ceiling, for comparison.
//
// The instruction set and the activation mode are the process-wide ones (the names carry both), so
// run once per combination:
//   for act in f32 int8; do FLASHMOE_MATMUL_ACT=$act ./build/bench/bench_matmul; done
//   for isa in scalar avx2 avx512; do FLASHMOE_ISA=$isa ./build/bench/bench_matmul; done
#include "kernels/cpu/matmul.h"
#include "ops/tensor.h"
#include "util/half.h"
#include "util/thread_pool.h"

#include <benchmark/benchmark.h>
#include <fmt/format.h>

#include <cstdint>
#include <cstdlib>
#include <memory>
#include <random>
#include <string>
#include <vector>

namespace {

using namespace flashmoe;

constexpr size_t kColdBytes = 96u << 20;  // comfortably above a 32 MiB L3

bool hot_mode() {
    const char* env = std::getenv("FLASHMOE_BENCH_HOT");
    return env != nullptr && std::string(env) == "1";
}

struct WeightSet {
    std::vector<uint8_t> data, scales, biases;  // all copies, back to back
    std::vector<Matrix> copies;
    size_t bytes_per_call = 0;
};

WeightSet make_weights(WeightFormat format, int64_t rows, int64_t cols, int bits) {
    Matrix shape;
    shape.format = format;
    shape.rows = rows;
    shape.cols = cols;
    shape.bits = bits;
    shape.group_size = format == WeightFormat::Affine ? 64 : 0;
    shape.scale_dtype = DType::BF16;
    WeightSet set;
    set.bytes_per_call = shape.data_bytes() + 2 * shape.scale_bytes();
    const size_t n_copies =
        hot_mode() ? 1 : std::max<size_t>(1, (kColdBytes + set.bytes_per_call - 1) / set.bytes_per_call);
    set.data.resize(shape.data_bytes() * n_copies);
    set.scales.resize(shape.scale_bytes() * n_copies);
    set.biases.resize(shape.scale_bytes() * n_copies);
    std::mt19937 rng(42);
    std::normal_distribution<float> normal(0.0f, 0.05f);
    auto* words = reinterpret_cast<uint32_t*>(set.data.data());
    if (format == WeightFormat::BF16) {
        auto* h = reinterpret_cast<uint16_t*>(set.data.data());
        for (size_t i = 0; i < set.data.size() / 2; ++i) h[i] = float_to_bf16(normal(rng));
    } else {
        for (size_t i = 0; i < set.data.size() / 4; ++i) words[i] = rng();
    }
    auto* s = reinterpret_cast<uint16_t*>(set.scales.data());
    auto* b = reinterpret_cast<uint16_t*>(set.biases.data());
    for (size_t i = 0; i < set.scales.size() / 2; ++i) {
        s[i] = float_to_bf16(0.01f + 0.001f * float(i % 7));
        b[i] = float_to_bf16(-0.08f);
    }
    for (size_t k = 0; k < n_copies; ++k) {
        Matrix m = shape;
        m.data = set.data.data() + k * shape.data_bytes();
        if (format == WeightFormat::Affine) {
            m.scales = set.scales.data() + k * shape.scale_bytes();
            m.biases = set.biases.data() + k * shape.scale_bytes();
        }
        set.copies.push_back(m);
    }
    return set;
}

void run(benchmark::State& state, WeightFormat format, int bits, int64_t rows, int64_t cols, int64_t n,
         int threads) {
    const WeightSet set = make_weights(format, rows, cols, bits);
    std::vector<float> x(size_t(n * cols)), y(size_t(n * rows));
    std::mt19937 rng(7);
    std::normal_distribution<float> normal(0.0f, 1.0f);
    for (float& v : x) v = normal(rng);
    ThreadPool pool(threads);
    size_t k = 0;
    for (auto _ : state) {
        matmul(set.copies[k], x.data(), n, y.data(), &pool);
        benchmark::DoNotOptimize(y.data());
        benchmark::ClobberMemory();
        k = (k + 1) % set.copies.size();
    }
    const double per_iter = double(set.bytes_per_call) / 1e9;
    state.counters["GB/s"] = benchmark::Counter(per_iter, benchmark::Counter::kIsIterationInvariantRate);
    state.counters["GFLOP/s"] =
        benchmark::Counter(2.0 * double(rows * cols * n) / 1e9, benchmark::Counter::kIsIterationInvariantRate);
}

struct Shape {
    const char* name;
    int64_t rows, cols;
};

void register_all() {
    const Shape expert_gate_up{"expert_gate_up", 512, 2048};  // one expert's gate or up projection
    const Shape expert_down{"expert_down", 2048, 512};        // one expert's down projection
    const Shape dense[] = {
        {"in_proj_qkv", 8192, 2048},  // DeltaNet qkv projection
        {"in_proj_z", 4096, 2048},    // DeltaNet output gate
        {"out_proj", 2048, 4096},     // DeltaNet / attention output projection
        {"q_proj", 8192, 2048},       // attention query + gate (k_proj, v_proj: 512 rows)
    };
    const Shape lm_head{"lm_head", 248320, 2048};  // vocabulary projection
    const Shape router{"router", 256, 2048};        // 8-bit
    struct Format {
        const char* name;
        WeightFormat format;
        int bits;
    };
    const Format q4{"affine4", WeightFormat::Affine, 4}, q8{"affine8", WeightFormat::Affine, 8},
        bf16{"bf16", WeightFormat::BF16, 0};
    const std::string mode = std::string(isa_name(active_isa())) + "-" +
                             std::string(matmul_activations_name(matmul_activations())) + (hot_mode() ? "/hot" : "");
    const bool scalar = active_isa() == Isa::Scalar;
    auto add = [&](const Format& f, const Shape& s, int64_t n, int threads) {
        // The scalar reference at prefill would take minutes.
        if (scalar && n * s.rows * s.cols > (int64_t(1) << 28)) return;
        const std::string name = fmt::format("{}/{}/{}[{}x{}]/n={}/threads={}", mode, f.name, s.name, s.rows, s.cols,
                                             n, threads);
        benchmark::RegisterBenchmark(name.c_str(), [=](benchmark::State& st) {
            run(st, f.format, f.bits, s.rows, s.cols, n, threads);
        })->UseRealTime()->Unit(benchmark::kMicrosecond)->MinTime(0.3);
    };
    for (int64_t n : {1, 16, 512}) {
        for (const Shape& s : {expert_gate_up, expert_down}) {
            add(q4, s, n, 1);
            add(q4, s, n, 2);
        }
        add(q4, dense[0], n, 1);
        for (const Shape& s : dense) add(q4, s, n, 2);
    }
    add(q4, lm_head, 1, 2);
    for (int64_t n : {1, 16, 512}) add(q8, router, n, 2);
    add(q8, dense[0], 1, 2);
    add(bf16, dense[0], 1, 2);
}

}  // namespace

int main(int argc, char** argv) {
    benchmark::Initialize(&argc, argv);
    if (benchmark::ReportUnrecognizedArguments(argc, argv)) return 1;
    register_all();
    benchmark::RunSpecifiedBenchmarks();
    benchmark::Shutdown();
    return 0;
}
