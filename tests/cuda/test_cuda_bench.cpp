// Not a timed test: a measurement harness for the CUDA forward, run by hand (it is DISABLED_ so
// that ctest never runs it):
//   FLASHMOE_BENCH_MODEL=synth35b.fmoe [FLASHMOE_BENCH_VRAM=40GiB FLASHMOE_BENCH_CACHE=4GiB
//   FLASHMOE_BENCH_IO=direct] test_cuda --gtest_also_run_disabled_tests --gtest_filter='*Bench*'
// Prints load time, warm prefill of 512 tokens (best of 3) and 128 decode steps (FLASHMOE_BENCH_STEPS
// for another count) at K = 8, with the expert cache's decode figures (FLASHMOE_CUDA_PREFETCH=0 turns
// the guess-ahead prefetch off).
#include "cuda_test_util.h"
#include "engine/loaded_model.h"
#include "kernels/cpu/matmul.h"
#include "model/cuda/qwen35moe_cuda.h"
#include "util/sys.h"

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <random>

using namespace flashmoe;

namespace {

double seconds_since(std::chrono::steady_clock::time_point t0) {
    return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
}

std::string env_or(const char* name, const char* fallback) {
    const char* v = std::getenv(name);
    return v ? v : fallback;
}

TEST(CudaBench, DISABLED_PrefillAndDecode) {
    SKIP_WITHOUT_CUDA();
    const char* path = std::getenv("FLASHMOE_BENCH_MODEL");
    if (!path) GTEST_SKIP() << "set FLASHMOE_BENCH_MODEL";
    ExpertStoreOptions store;
    store.cache_bytes = parse_size(env_or("FLASHMOE_BENCH_CACHE", "4GiB"), "cache");
    store.mode = parse_io_mode(env_or("FLASHMOE_BENCH_IO", "page-cache"));
    RunnerOptions ro{.device = Device::Cuda, .vram_bytes = parse_size(env_or("FLASHMOE_BENCH_VRAM", "40GiB"), "vram")};
    const int64_t k = std::atoi(env_or("FLASHMOE_BENCH_K", "8").c_str());
    const int64_t prompt_len = std::atoi(env_or("FLASHMOE_BENCH_PROMPT", "512").c_str());
    // The engine's default activation semantics (int8 on one token) unless FLASHMOE_BENCH_ACT=f32.
    MatmulActivations act = MatmulActivations::Int8;
    if (!parse_matmul_activations(env_or("FLASHMOE_BENCH_ACT", "int8"), &act)) GTEST_SKIP() << "bad FLASHMOE_BENCH_ACT";
    set_matmul_activations(act);

    auto t0 = std::chrono::steady_clock::now();
    auto model = LoadedModel::open(path, store, ro);
    auto& runner = dynamic_cast<cuda::Qwen35MoeCuda&>(model->forward());
    std::mt19937 rng(7);
    std::uniform_int_distribution<int32_t> tok(1000, int32_t(model->config().vocab_size) - 1000);
    std::vector<int32_t> prompt(static_cast<size_t>(prompt_len));
    for (auto& t : prompt) t = tok(rng);
    std::vector<float> logits;
    {
        auto st = model->forward().new_state();  // warm-up: loads experts, sizes buffers
        model->forward().forward(*st, prompt, ForwardOptions{.k = k}, &logits);
    }
    const double load_s = seconds_since(t0);

    double best_prefill = 1e30;
    for (int r = 0; r < 3; ++r) {
        auto st = model->forward().new_state();
        auto t = std::chrono::steady_clock::now();
        model->forward().forward(*st, prompt, ForwardOptions{.k = k}, &logits);
        best_prefill = std::min(best_prefill, seconds_since(t));
    }

    auto st = model->forward().new_state();
    model->forward().forward(*st, std::span<const int32_t>(prompt.data(), 8), ForwardOptions{.k = k}, &logits);
    const int steps = std::getenv("FLASHMOE_BENCH_STEPS") ? std::max(1, std::atoi(std::getenv("FLASHMOE_BENCH_STEPS"))) : 128;
    runner.expert_cache().reset_stats();
    const uint64_t graphs0 = runner.graph_launches();
    auto t = std::chrono::steady_clock::now();
    int32_t next = prompt[8];
    for (int i = 0; i < steps; ++i) {
        model->forward().forward(*st, std::span<const int32_t>(&next, 1), ForwardOptions{.k = k}, &logits);
        next = int32_t(std::max_element(logits.begin(), logits.end()) - logits.begin());
    }
    const double decode_s = seconds_since(t);
    set_matmul_activations(MatmulActivations::F32);
    const auto cs = runner.expert_cache().stats();
    std::printf("BENCH model=%s vram=%s cache=%s io=%s k=%lld act=%s\n", path, env_or("FLASHMOE_BENCH_VRAM", "40GiB").c_str(),
                env_or("FLASHMOE_BENCH_CACHE", "4GiB").c_str(), env_or("FLASHMOE_BENCH_IO", "page-cache").c_str(),
                (long long)k, std::string(matmul_activations_name(act)).c_str());
    std::printf("BENCH load+warm-up %.2f s; prefill %lld tokens %.1f ms = %.0f tok/s; decode %d steps %.1f tok/s "
                "(%llu graph launches); decode experts: %llu requests, %llu VRAM hits, %llu host, %llu source, %.1f MB/token to device\n",
                load_s, (long long)prompt_len, best_prefill * 1e3, double(prompt_len) / best_prefill, steps,
                steps / decode_s, (unsigned long long)(runner.graph_launches() - graphs0),
                (unsigned long long)cs.requests, (unsigned long long)cs.vram_hits, (unsigned long long)cs.host_hits,
                (unsigned long long)cs.source_loads, double(cs.bytes_to_device) / steps / 1e6);
    const auto share = [](uint64_t part, uint64_t whole) { return whole ? 100.0 * double(part) / double(whole) : 0.0; };
    std::printf("BENCH decode prefetch %s: %.1f experts/token prefetched, %.0f%% used, %.0f%% of the used still in "
                "flight when asked for; %.0f%% of requests VRAM hits\n",
                runner.expert_prefetch() ? "on" : "off", double(cs.prefetched) / steps, share(cs.prefetch_used, cs.prefetched),
                share(cs.prefetch_late, cs.prefetch_used), share(cs.vram_hits, cs.requests));
}

}  // namespace
