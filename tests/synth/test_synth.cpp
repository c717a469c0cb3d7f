// flashmoe synth: random models that load, run finite forwards with spread logits, are
// byte-identical for a seed (however the work is split across threads), refuse to overwrite
// without --force, and carry the real shapes of the released sizes.
#include "engine/loaded_model.h"
#include "kernels/cpu/matmul.h"
#include "store/packed_format.h"
#include "store/packed_writer.h"
#include "store/synth.h"
#include "util/error.h"
#include "util/mapped_file.h"
#include "util/thread_pool.h"

#include <gtest/gtest.h>
#include "../support/errors.h"
#include "../support/temp_dir.h"
#include <nlohmann/json.hpp>
#include <unistd.h>

#include <cmath>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <iterator>

namespace fs = std::filesystem;
using namespace flashmoe;
using flashmoe::test::TempDir;
using flashmoe::test::error_of;

namespace {



SynthOptions tiny(const fs::path& out, uint64_t seed = 7) {
    SynthOptions o;
    o.preset = "tiny";
    o.seed = seed;
    o.out_dir = out.string();
    return o;
}

std::string file_bytes(const fs::path& p) {
    std::ifstream f(p, std::ios::binary);
    return std::string(std::istreambuf_iterator<char>(f), std::istreambuf_iterator<char>());
}

// Every file of a model directory, relative path -> bytes.
std::map<std::string, std::string> all_files(const fs::path& dir) {
    std::map<std::string, std::string> out;
    for (auto& e : fs::recursive_directory_iterator(dir))
        if (e.is_regular_file()) out[fs::relative(e.path(), dir).string()] = file_bytes(e.path());
    return out;
}

struct Stats {
    double mean = 0, std = 0;
    bool finite = true;
};

Stats stats_of(const std::vector<float>& v) {
    Stats s;
    double sum = 0, sq = 0;
    for (float x : v) {
        s.finite = s.finite && std::isfinite(x);
        sum += x;
    }
    s.mean = sum / double(v.size());
    for (float x : v) sq += (x - s.mean) * (x - s.mean);
    s.std = std::sqrt(sq / double(v.size()));
    return s;
}

double correlation(const std::vector<float>& a, const std::vector<float>& b) {
    Stats sa = stats_of(a), sb = stats_of(b);
    double cov = 0;
    for (size_t i = 0; i < a.size(); ++i) cov += (a[i] - sa.mean) * (b[i] - sb.mean);
    return cov / double(a.size()) / (sa.std * sb.std);
}

// Dequantised values of the first `rows` rows of a matrix.
std::vector<float> dequantized(const Matrix& m, int64_t rows) {
    std::vector<float> out(size_t(rows * m.cols));
    for (int64_t r = 0; r < rows; ++r) dequantize_row(m, r, &out[size_t(r * m.cols)]);
    return out;
}

std::vector<float> dequantized_row(const Matrix& m, int64_t row) {
    std::vector<float> out(size_t(m.cols));
    dequantize_row(m, row, out.data());
    return out;
}

// Runs `prompt` and checks the last position's logits are finite and spread.
std::vector<float> check_forward(LoadedModel& model, const std::vector<int32_t>& prompt) {
    auto state = model.forward().new_state();
    std::vector<float> logits;
    model.forward().forward(*state, prompt, {}, &logits);
    EXPECT_EQ(int64_t(logits.size()), model.config().vocab_size);
    Stats s = stats_of(logits);
    EXPECT_TRUE(s.finite);
    EXPECT_GT(s.std, 0.1);
    EXPECT_LT(s.std, 100.0);
    return logits;
}

}  // namespace

TEST(Synth, TinyWritesLoadsAndRunsFinite) {
    TempDir dir;
    SynthResult r = write_synth_model(tiny(dir / "m.fmoe"));
    EXPECT_GT(r.dense_bytes, 0u);
    EXPECT_GT(r.expert_bytes, 0u);
    EXPECT_FALSE(fs::exists(dir / ("m.fmoe.partial-" + std::to_string(::getpid()))));

    auto model = LoadedModel::open((dir / "m.fmoe").string());
    ASSERT_TRUE(model->is_packed());
    const ModelConfig& c = model->config();
    EXPECT_EQ(c.hidden_size, 256);
    EXPECT_EQ(c.num_layers, 4);
    EXPECT_EQ(c.num_experts, 32);
    EXPECT_EQ(c.num_experts_per_tok, 4);
    EXPECT_EQ(c.vocab_size, 4096);
    EXPECT_EQ(c.layer_kinds[3], LayerKind::Attention);
    EXPECT_EQ(c.layer_kinds[0], LayerKind::DeltaNet);

    WeightSummary s = model->summary();
    EXPECT_EQ(s.dense_bytes, r.dense_bytes);
    EXPECT_EQ(s.expert_bytes, r.expert_bytes);
    EXPECT_GT(s.tensor_count, 40u);
    EXPECT_NE(s.quantization.find("4-bit group 64"), std::string::npos) << s.quantization;
    EXPECT_NE(s.quantization.find("random weights"), std::string::npos) << s.quantization;
    auto manifest = read_packed_manifest((dir / "m.fmoe").string());
    EXPECT_EQ(manifest["info"]["source"], "synth --preset tiny --quant q4 --seed 7");

    // Different prompts give different distributions, not one token-independent bias (a weight
    // offset shared by every row, e.g. a mis-centred bias, makes these correlate above 0.99).
    auto a = check_forward(*model, {1, 2, 3, 4, 5, 6, 7, 8});
    auto b = check_forward(*model, {4000, 17, 99});
    auto c1 = check_forward(*model, {2});
    EXPECT_LT(correlation(a, b), 0.6);
    EXPECT_LT(correlation(a, c1), 0.6);
    EXPECT_LT(correlation(b, c1), 0.6);
    // Routing spreads over the experts rather than collapsing onto a few.
    ExpertStoreStats st = model->expert_store()->stats();
    EXPECT_GT(st.requests, 0u);
    EXPECT_GT(st.misses, 3u * 4u * 4u);  // more than 4 layers x 4 experts x a handful distinct ids
}

TEST(Synth, WeightsHaveTheIntendedScale) {
    TempDir dir;
    write_synth_model(tiny(dir / "m.fmoe"));
    // Dense matrices: mean ~0, std ~1/sqrt(fan_in) (the group scales vary by +-25%, rms ~1.01).
    auto model_dense = PackedModel::open((dir / "m.fmoe").string(), {});
    const DenseWeights& d = model_dense->dense();
    for (const Matrix* m : {&d.embed, &d.lm_head, &d.layers[0].deltanet.in_proj_qkv, &d.layers[3].attention.o_proj,
                            &d.layers[1].moe.router}) {
        Stats s = stats_of(dequantized(*m, std::min<int64_t>(m->rows, 256)));
        double want = 1.0 / std::sqrt(double(m->cols));
        EXPECT_NEAR(s.std, want, 0.1 * want) << m->rows << "x" << m->cols;
        EXPECT_NEAR(s.mean, 0.0, 0.05 * want);
        // Each row is centred too (its mean is noise of order want / sqrt(cols)).
        double row_means = 0;
        for (int64_t r = 0; r < 16; ++r) row_means += std::abs(stats_of(dequantized_row(*m, r)).mean);
        EXPECT_LT(row_means / 16, 0.1 * want);
    }
    EXPECT_EQ(d.layers[1].moe.router.bits, 8);  // the router is 8-bit beside 4-bit matrices
    EXPECT_EQ(d.embed.bits, 4);
    // Norm multipliers near 1, A_log = log(U(1, 16)).
    for (float v : d.layers[0].input_norm) EXPECT_NEAR(v, 1.0f, 0.051f);
    for (float v : d.layers[0].deltanet.norm) EXPECT_NEAR(v, 1.0f, 0.051f);
    for (float v : d.layers[0].deltanet.A_log) {
        EXPECT_GE(v, 0.0f);
        EXPECT_LT(v, std::log(16.0f));
    }
    // An expert read through the store.
    int checked = 0;
    const int32_t ids[] = {5, 31};
    model_dense->experts().with_experts(2, ids, [&](size_t, const ExpertWeights& w) {
        for (const Matrix* m : {&w.gate, &w.down}) {
            Stats s = stats_of(dequantized(*m, m->rows));
            double want = 1.0 / std::sqrt(double(m->cols));
            EXPECT_NEAR(s.std, want, 0.1 * want);
            EXPECT_NEAR(s.mean, 0.0, 0.05 * want);
        }
        ++checked;
    });
    EXPECT_EQ(checked, 2);
}

TEST(Synth, SameSeedSameBytesWhateverTheThreadsOrIoMode) {
    TempDir dir;
    ThreadPool one(1), three(3);
    write_synth_model(tiny(dir / "a.fmoe", 42), &one);
    write_synth_model(tiny(dir / "b.fmoe", 42), &three);
    write_synth_model(tiny(dir / "c.fmoe", 43), &three);
    SynthOptions buffered = tiny(dir / "d.fmoe", 42);
    buffered.direct_io = false;  // through PackedWriter::write_expert rather than O_DIRECT runs
    write_synth_model(buffered, &three);
    auto a = all_files(dir / "a.fmoe"), b = all_files(dir / "b.fmoe"), c = all_files(dir / "c.fmoe");
    auto d = all_files(dir / "d.fmoe");
    ASSERT_TRUE(a.count("model.json") && a.count("dense.safetensors") && a.count("experts/layer_003.bin"));
    EXPECT_EQ(a.size(), b.size());
    EXPECT_EQ(a.size(), d.size());
    for (auto& [name, bytes] : a) {
        EXPECT_TRUE(b[name] == bytes) << name << " differs for the same seed";
        EXPECT_TRUE(d[name] == bytes) << name << " differs between direct and buffered writes";
    }
    EXPECT_NE(a["dense.safetensors"], c["dense.safetensors"]);
    EXPECT_NE(a["experts/layer_000.bin"], c["experts/layer_000.bin"]);
    // Records of one file differ from each other (each expert has its own stream).
    auto layout = ExpertRecordLayout::from_json(read_packed_manifest((dir / "a.fmoe").string())["experts"]["layout"], "m");
    const std::string& f = a["experts/layer_000.bin"];
    EXPECT_NE(f.substr(0, layout.record_bytes), f.substr(layout.record_stride, layout.record_bytes));
}

TEST(Synth, ExistingOutputIsRefusedWithoutForce) {
    TempDir dir;
    write_synth_model(tiny(dir / "m.fmoe", 1));
    const std::string before = file_bytes(dir / "m.fmoe" / "dense.safetensors");
    auto msg = error_of([&] { write_synth_model(tiny(dir / "m.fmoe", 2)); }, ErrorKind::BadInput);
    EXPECT_NE(msg.find("already exists"), std::string::npos) << msg;
    EXPECT_NE(msg.find("--force"), std::string::npos) << msg;
    EXPECT_EQ(file_bytes(dir / "m.fmoe" / "dense.safetensors"), before);  // untouched

    SynthOptions o = tiny(dir / "m.fmoe", 2);
    o.force = true;
    write_synth_model(o);
    EXPECT_NE(file_bytes(dir / "m.fmoe" / "dense.safetensors"), before);
    LoadedModel::open((dir / "m.fmoe").string());

    // --force replaces models only, never a directory holding something else.
    fs::create_directories(dir / "precious");
    std::ofstream(dir / "precious" / "notes.txt") << "keep me";
    SynthOptions p = tiny(dir / "precious");
    p.force = true;
    msg = error_of([&] { write_synth_model(p); }, ErrorKind::BadInput);
    EXPECT_NE(msg.find("not a flashmoe packed model"), std::string::npos) << msg;
    EXPECT_EQ(file_bytes(dir / "precious" / "notes.txt"), "keep me");
}

TEST(Synth, LayersAndQuantVariantsLoadAndRun) {
    TempDir dir;
    struct Variant {
        int64_t layers;
        SynthQuant quant;
        int bits;  // of the embedding and the experts; 0 = bf16
    };
    for (Variant v : {Variant{6, SynthQuant::Q8, 8}, Variant{2, SynthQuant::BF16, 0}, Variant{9, SynthQuant::Q4, 4}}) {
        SCOPED_TRACE(synth_quant_name(v.quant));
        SynthOptions o = tiny(dir / (synth_quant_name(v.quant) + ".fmoe"));
        o.layers = v.layers;
        o.quant = v.quant;
        write_synth_model(o);
        auto model = LoadedModel::open(o.out_dir);
        const ModelConfig& c = model->config();
        ASSERT_EQ(c.num_layers, v.layers);
        for (int64_t i = 0; i < c.num_layers; ++i) {
            EXPECT_EQ(c.layer_kinds[size_t(i)] == LayerKind::Attention, (i + 1) % 4 == 0) << "layer " << i;
        }
        const auto& layout = model->expert_store()->layout();
        if (v.bits) {
            EXPECT_EQ(layout.matrices[0].format, WeightFormat::Affine);
            EXPECT_EQ(layout.matrices[0].bits, v.bits);
        } else {
            EXPECT_EQ(layout.matrices[0].format, WeightFormat::BF16);
        }
        EXPECT_NE(model->summary().quantization.find(v.bits ? std::to_string(v.bits) + "-bit" : "bf16"),
                  std::string::npos);
        check_forward(*model, {10, 20, 30});
    }
}

TEST(Synth, BadOptionsAreBadInput) {
    TempDir dir;
    SynthOptions o = tiny(dir / "x.fmoe");
    o.preset = "qwen9-huge";
    auto msg = error_of([&] { write_synth_model(o); }, ErrorKind::BadInput);
    EXPECT_NE(msg.find("qwen3.5-35b-a3b"), std::string::npos) << msg;  // lists the choices
    o = tiny(dir / "x.fmoe");
    o.layers = -1;
    error_of([&] { write_synth_model(o); }, ErrorKind::BadInput);
    EXPECT_NE(error_of([] { parse_synth_quant("q3"); }, ErrorKind::BadInput).find("q3"), std::string::npos);
    EXPECT_FALSE(fs::exists(dir / "x.fmoe"));
}

TEST(Synth, CancelledWriteLeavesNothing) {
    TempDir dir;
    std::atomic<bool> cancel{true};
    SynthOptions o = tiny(dir / "c.fmoe");
    o.cancel = &cancel;
    auto msg = error_of([&] { write_synth_model(o); }, ErrorKind::BadInput);
    EXPECT_NE(msg.find("interrupted"), std::string::npos) << msg;
    EXPECT_FALSE(fs::exists(dir / "c.fmoe"));
    EXPECT_FALSE(fs::exists(dir / ("c.fmoe.partial-" + std::to_string(::getpid()))));
}

TEST(Synth, PresetsHaveTheReleasedShapes) {
    auto c35 = synth_config("qwen3.5-35b-a3b");
    EXPECT_EQ(c35.hidden_size, 2048);
    EXPECT_EQ(c35.num_layers, 40);
    EXPECT_EQ(c35.vocab_size, 248320);
    EXPECT_EQ(c35.linear_conv_dim(), 8192);
    EXPECT_EQ(c35.rotary_dim, 64);
    EXPECT_EQ(c35.rope_theta, 1e7);
    auto c122 = synth_config("qwen3.5-122b-a10b");
    EXPECT_EQ(c122.shared_expert_intermediate_size, 1024);
    EXPECT_EQ(c122.linear_num_value_heads, 64);
    auto c397 = synth_config("qwen3.5-397b-a17b", 8);
    EXPECT_EQ(c397.num_experts, 512);
    EXPECT_EQ(c397.num_experts_per_tok, 10);
    EXPECT_EQ(c397.num_layers, 8);
    EXPECT_EQ(c397.layer_kinds[7], LayerKind::Attention);

    // The documented 4-bit record sizes of each release.
    ExpertRecordLayout::Storage q4{WeightFormat::Affine, 4, 64, DType::BF16};
    auto bytes = [&](const ModelConfig& c) {
        return ExpertRecordLayout::make(c.hidden_size, c.moe_intermediate_size, {q4, q4, q4}).record_bytes;
    };
    EXPECT_EQ(bytes(c35), 1769472u);
    EXPECT_EQ(bytes(c122), 5308416u);
    EXPECT_EQ(bytes(c397), 7077888u);

    // The config survives model.json.
    auto back = ModelConfig::from_json(c35.to_json(), "model.json");
    EXPECT_EQ(back.to_json(), c35.to_json());
}

TEST(Synth, CommandLine) {
    TempDir dir;
    const std::string out = (dir / "cli.fmoe").string();
    const std::string base = std::string(FLASHMOE_BINARY) + " synth --preset tiny --layers 4 --seed 3 -o " + out;
    const std::string log = (dir / "log.txt").string();
    ASSERT_EQ(std::system((base + " > " + log + " 2>&1").c_str()), 0) << file_bytes(log);
    EXPECT_NE(file_bytes(log).find("MB/s"), std::string::npos) << file_bytes(log);
    EXPECT_EQ(LoadedModel::open(out)->config().num_layers, 4);

    int rc = std::system((base + " > " + log + " 2>&1").c_str());
    EXPECT_NE(rc, 0);
    EXPECT_NE(file_bytes(log).find("--force"), std::string::npos) << file_bytes(log);
    EXPECT_EQ(std::system((base + " --force > " + log + " 2>&1").c_str()), 0) << file_bytes(log);
    EXPECT_NE(std::system((std::string(FLASHMOE_BINARY) + " synth --preset tiny --quant q5 -o " + out + "2 > " + log +
                           " 2>&1").c_str()),
              0);
    EXPECT_NE(file_bytes(log).find("q5"), std::string::npos) << file_bytes(log);
}
