// The CUDA expert hierarchy: logits and generated ids are bitwise identical whichever tier (VRAM,
// pinned host, or the ExpertStore's disk reads) served each expert, and a session with snapshots
// behaves as on the CPU. Skips without a CUDA device.
#include "cuda_test_util.h"
#include "engine/generate.h"
#include "engine/loaded_model.h"
#include "kernels/cpu/matmul.h"
#include "model/cuda/qwen35moe_cuda.h"
#include "store/convert.h"
#include "store/packed_writer.h"
#include "util/error.h"

#include <unistd.h>

#include <cstring>
#include <filesystem>

namespace fs = std::filesystem;
using namespace flashmoe;

namespace {

const std::vector<int32_t> kPrompt = {3, 17, 42, 99, 5, 250, 7, 64, 1, 12, 200, 31};

struct Outputs {
    std::vector<float> logits;
    std::vector<int32_t> greedy;
    cuda::ExpertCacheStats stats;
};

Outputs run_model(LoadedModel& m, int repeats) {
    Outputs out;
    auto* runner = dynamic_cast<cuda::Qwen35MoeCuda*>(&m.forward());
    EXPECT_NE(runner, nullptr);
    for (int r = 0; r < repeats; ++r) {  // later repeats find experts cached
        if (runner) runner->expert_cache().reset_stats();
        out = {};
        auto state = m.forward().new_state();
        m.forward().forward(*state, kPrompt, ForwardOptions{.k = 0, .logits = LogitsFor::All}, &out.logits);
        if (runner) out.stats = runner->expert_cache().stats();
        Session session(m.forward());
        Sampler greedy(SamplingParams{.temperature = 0});
        generate(session, kPrompt, GenerateOptions{.max_new_tokens = 16, .k = 0, .stop_tokens = {}, .boundaries = {4, 9}, .prefill = {}},
                 greedy, [&](int32_t t) {
                     out.greedy.push_back(t);
                     return true;
                 });
    }
    return out;
}

bool bitwise_equal(const std::vector<float>& a, const std::vector<float>& b) {
    return a.size() == b.size() && std::memcmp(a.data(), b.data(), a.size() * sizeof(float)) == 0;
}

TEST(CudaTiers, OutputsIdenticalWhicheverTierServedEachExpert) {
    SKIP_WITHOUT_CUDA();
    for (auto [fixture, quant, act] : {std::tuple{"mlx4", "auto", MatmulActivations::F32},
                                       std::tuple{"mlx4", "auto", MatmulActivations::Int8},
                                       std::tuple{"many_experts", "bf16", MatmulActivations::F32}}) {
        SCOPED_TRACE(std::string(fixture) + " " + std::string(matmul_activations_name(act)));
        set_matmul_activations(act);
        fs::path dir = fs::temp_directory_path() / ("flashmoe_cuda_tiers_" + std::to_string(::getpid()) + fixture);
        fs::remove_all(dir);
        const std::string packed = (dir / "m.fmoe").string();
        fs::create_directories(dir);
        convert_to_packed(std::string(FLASHMOE_TEST_DATA) + "/golden/" + fixture, packed, ConvertOptions{.quant = quant, .overwrite = false, .progress = {}});
        const size_t big = size_t(1) << 30;

        // 1. everything fits in VRAM; the second run is served from VRAM alone.
        auto vram = LoadedModel::open(packed, ExpertStoreOptions{.mode = IoMode::PageCache, .cache_bytes = big},
                                      RunnerOptions{.device = Device::Cuda, .vram_bytes = big});
        Outputs a = run_model(*vram, 2);
        EXPECT_EQ(a.stats.vram_hits, a.stats.requests);

        // 2. one VRAM slot, a large pinned tier: after the first run, experts come from host memory.
        auto host = LoadedModel::open(packed, ExpertStoreOptions{.mode = IoMode::PageCache, .cache_bytes = big},
                                      RunnerOptions{.device = Device::Cuda, .vram_bytes = 1});
        Outputs b = run_model(*host, 2);
        EXPECT_GT(b.stats.host_hits, 0u);
        EXPECT_EQ(b.stats.source_loads, 0u);

        // 3. one slot in each tier and direct I/O: every miss is read from disk.
        const size_t record = vram->expert_store()->layout().record_stride;
        auto disk = LoadedModel::open(packed, ExpertStoreOptions{.mode = IoMode::Direct, .cache_bytes = record, .io_threads = 2},
                                      RunnerOptions{.device = Device::Cuda, .vram_bytes = 1});
        Outputs c = run_model(*disk, 1);
        EXPECT_GT(c.stats.source_loads, 0u);

        EXPECT_TRUE(bitwise_equal(a.logits, b.logits));
        EXPECT_TRUE(bitwise_equal(a.logits, c.logits));
        EXPECT_EQ(a.greedy, b.greedy);
        EXPECT_EQ(a.greedy, c.greedy);

        // The CPU forward generates the same ids with the exact fp32-activation matmul (with int8
        // activations the two backends round differently).
        if (act != MatmulActivations::F32) {
            fs::remove_all(dir);
            continue;
        }
        auto cpu = LoadedModel::open(packed, ExpertStoreOptions{.mode = IoMode::PageCache, .cache_bytes = big});
        std::vector<int32_t> cpu_ids;
        Session session(cpu->forward());
        Sampler greedy(SamplingParams{.temperature = 0});
        generate(session, kPrompt, GenerateOptions{.max_new_tokens = 16, .k = 0, .stop_tokens = {}, .boundaries = {4, 9}, .prefill = {}},
                 greedy, [&](int32_t t) {
                     cpu_ids.push_back(t);
                     return true;
                 });
        EXPECT_EQ(a.greedy, cpu_ids);
        fs::remove_all(dir);
    }
    set_matmul_activations(MatmulActivations::F32);
}

TEST(CudaTiers, NoDeviceMeansAClearError) {
    if (cuda::device_count() > 0) GTEST_SKIP() << "a CUDA device is present";
    EXPECT_THROW(LoadedModel::open(std::string(FLASHMOE_TEST_DATA) + "/golden/basic", {},
                                   RunnerOptions{.device = Device::Cuda}),
                 Error);
}

}  // namespace
