// The Qwen3.5-MoE text model's configuration, read from an HF config.json in either shape
// (Qwen3_5MoeForConditionalGeneration with `text_config`, or a plain text config), with rope fields
// under `rope_parameters` or flat, and `layer_types` or `full_attention_interval`. A structural
// field that is missing or has the wrong type is an Error (kind BadModel) naming the field and the
// file; only fields transformers itself defaults (eps, conv kernel, partial rotary factor) default.
#pragma once

#include <nlohmann/json.hpp>

#include <map>
#include <optional>
#include <string>
#include <vector>

namespace flashmoe {

enum class LayerKind { DeltaNet, Attention };

// MLX affine quantisation of one linear layer.
struct QuantParams {
    int bits = 4;
    int group_size = 64;
};

struct QuantConfig {
    QuantParams defaults;
    // Per-path overrides by module path as MLX writes it ("language_model.model.layers.0.mlp.gate");
    // a path mapped to nullopt is explicitly not quantised.
    std::map<std::string, std::optional<QuantParams>> overrides;
};

struct ModelConfig {
    std::string source;  // file the config came from, for messages

    int64_t vocab_size = 0;
    int64_t hidden_size = 0;
    int64_t num_layers = 0;
    std::vector<LayerKind> layer_kinds;

    // Gated full attention
    int64_t num_heads = 0;
    int64_t num_kv_heads = 0;
    int64_t head_dim = 0;
    int64_t rotary_dim = 0;  // head_dim * partial_rotary_factor
    double rope_theta = 0;

    // Gated DeltaNet
    int64_t linear_num_key_heads = 0;
    int64_t linear_num_value_heads = 0;
    int64_t linear_key_head_dim = 0;
    int64_t linear_value_head_dim = 0;
    int64_t linear_conv_kernel = 4;

    // MoE
    int64_t num_experts = 0;
    int64_t num_experts_per_tok = 0;
    int64_t moe_intermediate_size = 0;
    int64_t shared_expert_intermediate_size = 0;

    double rms_norm_eps = 1e-6;
    bool tie_word_embeddings = false;
    int64_t max_position_embeddings = 0;
    std::vector<int64_t> eos_token_ids;

    std::optional<QuantConfig> quantization;  // MLX checkpoints

    int64_t linear_key_dim() const { return linear_num_key_heads * linear_key_head_dim; }
    int64_t linear_value_dim() const { return linear_num_value_heads * linear_value_head_dim; }
    int64_t linear_conv_dim() const { return 2 * linear_key_dim() + linear_value_dim(); }

    static ModelConfig from_json(const nlohmann::json& root, const std::string& source);
    static ModelConfig from_file(const std::string& path);
    nlohmann::json to_json() const;  // the text config in HF's flat field names (round-trips from_json)
};

}  // namespace flashmoe
