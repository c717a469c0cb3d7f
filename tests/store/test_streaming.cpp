// Packed models and the ExpertStore: outputs are bitwise identical whichever way experts are served
// (resident snapshot, page-cache streaming, direct I/O through a cache smaller than one layer's
// experts), and bad packed models or disk faults give clear errors.
#include "engine/generate.h"
#include "engine/loaded_model.h"
#include "store/convert.h"
#include "store/packed_writer.h"
#include "util/error.h"

#include <gtest/gtest.h>
#include "../support/errors.h"
#include "../support/temp_dir.h"
#include <nlohmann/json.hpp>
#include <unistd.h>

#include <cstring>
#include <filesystem>
#include <fstream>

namespace fs = std::filesystem;
using namespace flashmoe;
using flashmoe::test::TempDir;
using flashmoe::test::error_of;

namespace {

const std::string kFixture = std::string(FLASHMOE_TEST_DATA) + "/golden/mlx4";
const std::vector<int32_t> kPrompt = {3, 17, 42, 99, 5, 250, 7, 64, 1, 12, 200, 31};


struct Outputs {
    std::vector<float> logits;
    std::vector<int32_t> greedy;
};

Outputs run_model(LoadedModel& m) {
    Outputs out;
    auto state = m.forward().new_state();
    m.forward().forward(*state, kPrompt, ForwardOptions{.k = 0, .logits = LogitsFor::All}, &out.logits);
    Session session(m.forward());
    Sampler greedy(SamplingParams{.temperature = 0});
    generate(session, kPrompt, GenerateOptions{.max_new_tokens = 12, .k = 0, .stop_tokens = {}, .boundaries = {}, .prefill = {}}, greedy,
             [&](int32_t t) {
                 out.greedy.push_back(t);
                 return true;
             });
    return out;
}

bool bitwise_equal(const std::vector<float>& a, const std::vector<float>& b) {
    return a.size() == b.size() && std::memcmp(a.data(), b.data(), a.size() * sizeof(float)) == 0;
}

std::string convert_fixture(const TempDir& dir) {
    std::string out = dir / "mlx4.fmoe";
    convert_to_packed(kFixture, out, ConvertOptions{});
    return out;
}

}  // namespace

TEST(Streaming, BitwiseIdenticalWhicheverTierServesExperts) {
    TempDir dir;
    std::string packed = convert_fixture(dir);
    auto resident = LoadedModel::open(kFixture);
    Outputs want = run_model(*resident);

    auto page_cache = LoadedModel::open(packed, ExpertStoreOptions{.mode = IoMode::PageCache, .cache_bytes = size_t(1) << 30});
    Outputs a = run_model(*page_cache);
    EXPECT_TRUE(bitwise_equal(a.logits, want.logits));
    EXPECT_EQ(a.greedy, want.greedy);

    // One record of cache: every layer's experts stream through a single buffer.
    const size_t record = page_cache->expert_store()->layout().record_stride;
    auto direct = LoadedModel::open(packed, ExpertStoreOptions{.mode = IoMode::Direct, .cache_bytes = record, .io_threads = 4});
    EXPECT_EQ(direct->expert_store()->cache_capacity_records(), 1u);
    Outputs b = run_model(*direct);
    EXPECT_TRUE(bitwise_equal(b.logits, want.logits));
    EXPECT_EQ(b.greedy, want.greedy);
    EXPECT_GT(direct->expert_store()->stats().misses, 0u);

    auto small = LoadedModel::open(packed, ExpertStoreOptions{.mode = IoMode::Direct, .cache_bytes = 3 * record});
    Outputs c = run_model(*small);
    EXPECT_TRUE(bitwise_equal(c.logits, want.logits));
    EXPECT_EQ(c.greedy, want.greedy);

    // Mapped in place: the budget does not apply, so even one byte of --cache is accepted.
    auto mapped = LoadedModel::open(packed, ExpertStoreOptions{.mode = IoMode::Mmap, .cache_bytes = 1, .io_threads = 3});
    Outputs d = run_model(*mapped);
    EXPECT_TRUE(bitwise_equal(d.logits, want.logits));
    EXPECT_EQ(d.greedy, want.greedy);
    const ExpertStoreStats s = mapped->expert_store()->stats();
    EXPECT_GT(s.requests, 0u);
    EXPECT_EQ(s.hits + s.misses, s.requests);
}

TEST(Streaming, CacheHitsAfterWarmUp) {
    TempDir dir;
    std::string packed = convert_fixture(dir);
    auto m = LoadedModel::open(packed, ExpertStoreOptions{.mode = IoMode::PageCache, .cache_bytes = size_t(1) << 30});
    run_model(*m);
    auto before = m->expert_store()->stats();
    run_model(*m);
    auto after = m->expert_store()->stats();
    EXPECT_EQ(after.misses, before.misses) << "a cache holding every expert should serve the second run";
    EXPECT_GT(after.hits, before.hits);
}

TEST(Streaming, PromptBatchReadsEachExpertOncePerLayer) {
    TempDir dir;
    std::string packed = convert_fixture(dir);
    auto m = LoadedModel::open(packed, ExpertStoreOptions{.mode = IoMode::PageCache, .cache_bytes = size_t(1) << 30});
    auto state = m->forward().new_state();
    std::vector<float> logits;
    m->forward().forward(*state, kPrompt, ForwardOptions{}, &logits);
    auto s = m->expert_store()->stats();
    const auto& c = m->config();
    EXPECT_LE(s.requests, uint64_t(c.num_layers * c.num_experts));  // unique experts per layer, not per token
    EXPECT_EQ(s.reads, s.misses);
}

TEST(Streaming, BudgetSmallerThanOneExpertIsAnError) {
    TempDir dir;
    std::string packed = convert_fixture(dir);
    try {
        LoadedModel::open(packed, ExpertStoreOptions{.mode = IoMode::PageCache, .cache_bytes = 1000});
        FAIL() << "no error";
    } catch (const Error& e) {
        EXPECT_EQ(e.kind(), ErrorKind::BadInput);
        EXPECT_NE(std::string(e.what()).find("cannot hold one expert"), std::string::npos) << e.what();
    }
}

TEST(Streaming, TruncatedExpertFileIsRefusedAtOpen) {
    TempDir dir;
    std::string packed = convert_fixture(dir);
    fs::resize_file(fs::path(packed) / "experts/layer_001.bin", 4096);
    try {
        LoadedModel::open(packed);
        FAIL() << "no error";
    } catch (const Error& e) {
        EXPECT_EQ(e.kind(), ErrorKind::BadModel);
        EXPECT_NE(std::string(e.what()).find("layer_001.bin"), std::string::npos) << e.what();
    }
}

void expect_read_error_then_recovery(IoMode mode) {
    TempDir dir;
    std::string packed = convert_fixture(dir);
    auto m = LoadedModel::open(packed, ExpertStoreOptions{.mode = mode, .cache_bytes = 1 << 20});
    // Truncate after opening: reads past the new end fail while the model is live.
    const auto file = fs::path(packed) / "experts/layer_000.bin";
    std::ifstream in(file, std::ios::binary);
    std::string bytes((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
    fs::resize_file(file, 0);
    auto state = m->forward().new_state();
    std::vector<float> logits;
    try {
        m->forward().forward(*state, kPrompt, ForwardOptions{}, &logits);
        FAIL() << "no error";
    } catch (const Error& e) {
        EXPECT_EQ(e.kind(), ErrorKind::Io);
        EXPECT_NE(std::string(e.what()).find("layer_000.bin"), std::string::npos) << e.what();
    }
    // Put the bytes back into the same file: the same store serves the next request correctly.
    {
        std::ofstream out(file, std::ios::binary | std::ios::in | std::ios::out);
        out.write(bytes.data(), std::streamsize(bytes.size()));
    }
    auto reference = LoadedModel::open(kFixture);
    Outputs want = run_model(*reference);
    Outputs again = run_model(*m);
    EXPECT_TRUE(bitwise_equal(again.logits, want.logits));
}

TEST(Streaming, ReadErrorMidGenerationIsAnIoErrorAndTheStoreRecovers) {
    expect_read_error_then_recovery(IoMode::PageCache);
}

// A mapped file truncated before its records are touched: the fault-in reports it, no SIGBUS.
TEST(Streaming, MappedFileTruncatedBeforeUseIsAnIoErrorAndTheStoreRecovers) {
    expect_read_error_then_recovery(IoMode::Mmap);
}

TEST(Streaming, OtherFormatVersionIsRefused) {
    TempDir dir;
    std::string packed = convert_fixture(dir);
    auto path = fs::path(packed) / "model.json";
    auto j = nlohmann::json::parse(std::ifstream(path));
    j["version"] = 99;
    std::ofstream(path) << j.dump();
    try {
        LoadedModel::open(packed);
        FAIL() << "no error";
    } catch (const Error& e) {
        EXPECT_EQ(e.kind(), ErrorKind::BadModel);
        EXPECT_NE(std::string(e.what()).find("version 99"), std::string::npos) << e.what();
    }
}

TEST(Streaming, DenseQuantisationNeedsAFloatSourceAndAKnownWidth) {
    TempDir dir;
    // kFixture is MLX 4-bit already: its dense bits are copied, never re-quantised.
    try {
        convert_to_packed(kFixture, dir / "a.fmoe", ConvertOptions{.dense_quant = "q4", .progress = {}});
        FAIL() << "no error";
    } catch (const Error& e) {
        EXPECT_EQ(e.kind(), ErrorKind::BadInput);
        EXPECT_NE(std::string(e.what()).find("already quantised"), std::string::npos) << e.what();
    }
    const std::string bf16 = std::string(FLASHMOE_TEST_DATA) + "/golden/bf16";
    try {
        convert_to_packed(bf16, dir / "b.fmoe", ConvertOptions{.dense_quant = "q3", .progress = {}});
        FAIL() << "no error";
    } catch (const Error& e) {
        EXPECT_EQ(e.kind(), ErrorKind::BadInput);
        EXPECT_NE(std::string(e.what()).find("--dense-quant 'q3'"), std::string::npos) << e.what();
    }
    EXPECT_FALSE(fs::exists(dir / "a.fmoe"));
    EXPECT_FALSE(fs::exists(dir / "b.fmoe"));
}

TEST(Streaming, UnfinishedWriterLeavesNoModel) {
    TempDir dir;
    std::string out = dir / "half.fmoe";
    {
        PackedWriter w(out, false);
        w.declare_dense({{"x", DType::F32, {4}}});
        EXPECT_TRUE(fs::exists(w.temp_dir()));
    }
    EXPECT_FALSE(fs::exists(out));
    EXPECT_FALSE(is_packed_model(out));
    for (auto& e : fs::directory_iterator(fs::path(out).parent_path())) {
        EXPECT_EQ(e.path().string().find("half.fmoe.partial"), std::string::npos) << e.path();
    }
}

TEST(Streaming, ConvertRefusesToOverwriteWithoutForce) {
    TempDir dir;
    std::string packed = convert_fixture(dir);
    EXPECT_THROW(convert_to_packed(kFixture, packed, ConvertOptions{}), Error);
    EXPECT_NO_THROW(convert_to_packed(kFixture, packed, ConvertOptions{.quant = "auto", .overwrite = true, .progress = {}}));
}

TEST(Streaming, SmallCacheKeepsHittingInsteadOfCycling) {
    TempDir dir;
    std::string packed = convert_fixture(dir);
    auto probe = LoadedModel::open(packed);
    const size_t record = probe->expert_store()->layout().record_stride;
    // Three records for a model whose tokens use 8 (4 layers x top-2): plain LRU would evict each
    // record just before it is needed again and never hit.
    auto m = LoadedModel::open(packed, ExpertStoreOptions{.mode = IoMode::PageCache, .cache_bytes = 3 * record});
    Outputs first = run_model(*m);
    auto before = m->expert_store()->stats();
    Outputs second = run_model(*m);
    auto after = m->expert_store()->stats();
    EXPECT_GT(after.hits - before.hits, 0u);
    EXPECT_GT(after.bypassed, 0u);
    EXPECT_TRUE(bitwise_equal(first.logits, second.logits));
    EXPECT_EQ(first.greedy, second.greedy);
}

TEST(Streaming, DecodePrefetchesLikelyExperts) {
    TempDir dir;
    std::string packed = convert_fixture(dir);
    auto m = LoadedModel::open(packed, ExpertStoreOptions{.mode = IoMode::Direct, .cache_bytes = size_t(1) << 30});
    Outputs out = run_model(*m);
    auto s = m->expert_store()->stats();
    EXPECT_GT(s.prefetched, 0u);
    EXPECT_GT(s.prefetch_hits, 0u);
    auto resident = LoadedModel::open(kFixture);
    EXPECT_EQ(out.greedy, run_model(*resident).greedy);
}
