// Loading bad checkpoints: every failure is a flashmoe::Error that names the file or tensor.
#include "model/config.h"
#include "store/safetensors.h"
#include "util/error.h"

#include <gtest/gtest.h>
#include "../support/errors.h"
#include "../support/temp_dir.h"
#include <nlohmann/json.hpp>

#include <filesystem>
#include <fstream>

namespace fs = std::filesystem;
using namespace flashmoe;
using flashmoe::test::TempDir;
using flashmoe::test::error_of;
using nlohmann::json;

namespace {

std::string write_safetensors(const fs::path& path, const json& header, size_t data_bytes, size_t drop_bytes = 0) {
    std::string h = header.dump();
    std::string bytes(8, '\0');
    uint64_t n = h.size();
    for (int i = 0; i < 8; ++i) bytes[size_t(i)] = char((n >> (8 * i)) & 0xff);
    bytes += h;
    bytes.append(data_bytes, '\x01');
    bytes.resize(bytes.size() - drop_bytes);
    std::ofstream(path, std::ios::binary) << bytes;
    return path.string();
}



json tensor(const char* dtype, std::vector<int64_t> shape, size_t begin, size_t end) {
    return {{"dtype", dtype}, {"shape", shape}, {"data_offsets", {begin, end}}};
}

}  // namespace

TEST(Safetensors, ReadsTensorsAndShapes) {
    TempDir dir;
    auto path = write_safetensors(dir.path() / "a.safetensors",
                                  {{"x", tensor("F32", {2, 3}, 0, 24)}, {"y", tensor("BF16", {4}, 24, 32)},
                                   {"__metadata__", {{"format", "pt"}}}},
                                  32);
    auto set = SafetensorsSet::open_file(path);
    ASSERT_NE(set.find("x"), nullptr);
    EXPECT_EQ(set.get("x").shape, (std::vector<int64_t>{2, 3}));
    EXPECT_EQ(set.get("y").dtype, DType::BF16);
    EXPECT_EQ(set.get("y").bytes, 8u);
    EXPECT_EQ(set.tensors().size(), 2u);
}

TEST(Safetensors, TruncatedFileNamesTheTensor) {
    TempDir dir;
    auto path = write_safetensors(dir.path() / "t.safetensors", {{"w", tensor("F32", {4, 4}, 0, 64)}}, 64, 4);
    auto msg = error_of([&] { SafetensorsSet::open_file(path); }, ErrorKind::BadModel);
    EXPECT_NE(msg.find("tensor w"), std::string::npos) << msg;
    EXPECT_NE(msg.find("truncated"), std::string::npos) << msg;
}

TEST(Safetensors, HeaderLongerThanFile) {
    TempDir dir;
    auto path = write_safetensors(dir.path() / "h.safetensors", {{"w", tensor("F32", {1}, 0, 4)}}, 4, 30);
    auto msg = error_of([&] { SafetensorsSet::open_file(path); }, ErrorKind::BadModel);
    EXPECT_NE(msg.find("header"), std::string::npos) << msg;
}

TEST(Safetensors, SizeNotMatchingShape) {
    TempDir dir;
    auto path = write_safetensors(dir.path() / "s.safetensors", {{"w", tensor("F32", {3, 3}, 0, 32)}}, 32);
    auto msg = error_of([&] { SafetensorsSet::open_file(path); }, ErrorKind::BadModel);
    EXPECT_NE(msg.find("needs 36"), std::string::npos) << msg;
}

TEST(Safetensors, UnknownDtypeAndBadJson) {
    TempDir dir;
    auto p1 = write_safetensors(dir.path() / "d.safetensors", {{"w", tensor("F8_E4M3X", {4}, 0, 4)}}, 4);
    EXPECT_NE(error_of([&] { SafetensorsSet::open_file(p1); }, ErrorKind::BadModel).find("F8_E4M3X"), std::string::npos);
    std::ofstream(dir.path() / "j.safetensors", std::ios::binary) << std::string("\x05\0\0\0\0\0\0\0{bad}", 13);
    error_of([&] { SafetensorsSet::open_file((dir.path() / "j.safetensors").string()); }, ErrorKind::BadModel);
}

TEST(Safetensors, MissingFileIsAnIoError) {
    auto msg = error_of([] { SafetensorsSet::open_file("/nonexistent/model.safetensors"); }, ErrorKind::Io);
    EXPECT_NE(msg.find("/nonexistent/model.safetensors"), std::string::npos);
}

TEST(Safetensors, IndexNamingAMissingTensor) {
    TempDir dir;
    write_safetensors(dir.path() / "model-00001-of-00001.safetensors", {{"a", tensor("F32", {1}, 0, 4)}}, 4);
    std::ofstream(dir.path() / "model.safetensors.index.json")
        << json{{"weight_map", {{"a", "model-00001-of-00001.safetensors"}, {"b", "model-00001-of-00001.safetensors"}}}}.dump();
    auto msg = error_of([&] { SafetensorsSet::open_dir(dir.path().string()); }, ErrorKind::BadModel);
    EXPECT_NE(msg.find("tensor b"), std::string::npos) << msg;
}

namespace {
json text_config() {
    return {{"vocab_size", 64},
            {"hidden_size", 32},
            {"num_hidden_layers", 4},
            {"num_attention_heads", 2},
            {"num_key_value_heads", 1},
            {"head_dim", 16},
            {"linear_num_key_heads", 1},
            {"linear_num_value_heads", 2},
            {"linear_key_head_dim", 8},
            {"linear_value_head_dim", 8},
            {"num_experts", 4},
            {"num_experts_per_tok", 2},
            {"moe_intermediate_size", 16},
            {"shared_expert_intermediate_size", 16},
            {"rope_parameters", {{"rope_type", "default"}, {"rope_theta", 10000.0}, {"partial_rotary_factor", 0.25}}}};
}
}  // namespace

TEST(Config, PlainAndNestedShapesAgree) {
    auto plain = ModelConfig::from_json(text_config(), "config.json");
    auto nested = ModelConfig::from_json({{"architectures", {"Qwen3_5MoeForConditionalGeneration"}}, {"text_config", text_config()}},
                                         "config.json");
    EXPECT_EQ(plain.to_json(), nested.to_json());
    EXPECT_EQ(plain.rotary_dim, 4);
    ASSERT_EQ(plain.layer_kinds.size(), 4u);
    EXPECT_EQ(plain.layer_kinds[3], LayerKind::Attention);
    EXPECT_EQ(plain.layer_kinds[0], LayerKind::DeltaNet);
}

TEST(Config, FlatRopeFieldsAndExplicitLayerTypes) {
    auto j = text_config();
    j.erase("rope_parameters");
    j["rope_theta"] = 1e7;
    j["partial_rotary_factor"] = 0.5;
    j["layer_types"] = {"full_attention", "linear_attention", "linear_attention", "full_attention"};
    auto c = ModelConfig::from_json(j, "config.json");
    EXPECT_EQ(c.rope_theta, 1e7);
    EXPECT_EQ(c.rotary_dim, 8);
    EXPECT_EQ(c.layer_kinds[0], LayerKind::Attention);
}

TEST(Config, MissingFieldIsNamed) {
    auto j = text_config();
    j.erase("num_experts");
    auto msg = error_of([&] { ModelConfig::from_json(j, "x/config.json"); }, ErrorKind::BadModel);
    EXPECT_NE(msg.find("num_experts"), std::string::npos) << msg;
    EXPECT_NE(msg.find("x/config.json"), std::string::npos) << msg;
}

TEST(Config, WrongTypesAndInconsistenciesAreErrors) {
    auto j = text_config();
    j["hidden_size"] = "big";
    EXPECT_NE(error_of([&] { ModelConfig::from_json(j, "c"); }, ErrorKind::BadModel).find("hidden_size"), std::string::npos);
    j = text_config();
    j["layer_types"] = {"full_attention"};
    EXPECT_NE(error_of([&] { ModelConfig::from_json(j, "c"); }, ErrorKind::BadModel).find("layer_types"), std::string::npos);
    j = text_config();
    j["num_experts_per_tok"] = 9;
    error_of([&] { ModelConfig::from_json(j, "c"); }, ErrorKind::BadModel);
    j = text_config();
    j["quantization"] = {{"bits", 7}, {"group_size", 64}};
    EXPECT_NE(error_of([&] { ModelConfig::from_json(j, "c"); }, ErrorKind::BadModel).find("bits 7"), std::string::npos);
    j = text_config();
    j.erase("rope_parameters");
    EXPECT_NE(error_of([&] { ModelConfig::from_json(j, "c"); }, ErrorKind::BadModel).find("rope_theta"), std::string::npos);
}

TEST(Config, QuantizationOverrides) {
    auto j = text_config();
    j["quantization"] = {{"bits", 4}, {"group_size", 64}, {"language_model.model.layers.0.mlp.gate", {{"bits", 8}, {"group_size", 64}}}};
    auto c = ModelConfig::from_json(j, "c");
    ASSERT_TRUE(c.quantization);
    EXPECT_EQ(c.quantization->defaults.bits, 4);
    EXPECT_EQ(c.quantization->overrides.at("language_model.model.layers.0.mlp.gate")->bits, 8);
}
