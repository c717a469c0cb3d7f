// The Qwen3.5-MoE model described once: plain structs of weight views, one field per tensor, with
// its shape. Matrices are [rows = outputs, cols = inputs] views (ops/tensor.h) that borrow from the
// checkpoint's memory maps; small vectors (norms, DeltaNet scalars, conv taps) are copied to fp32
// at bind time, with the zero-centred RMSNorm weights already turned into their multiplier (1 + w).
// Routed experts are not here: they are served by an ExpertSource (model/experts.h) so that they can
// stream from disk.
#pragma once

#include "model/config.h"
#include "ops/tensor.h"

#include <vector>

namespace flashmoe {

struct AttentionWeights {
    Matrix q_proj;              // [num_heads * head_dim * 2, hidden]; per head: query rows, then gate rows
    Matrix k_proj;              // [num_kv_heads * head_dim, hidden]
    Matrix v_proj;              // [num_kv_heads * head_dim, hidden]
    Matrix o_proj;              // [hidden, num_heads * head_dim]
    std::vector<float> q_norm;  // [head_dim], multiplier (1 + w)
    std::vector<float> k_norm;  // [head_dim], multiplier (1 + w)
};

struct DeltaNetWeights {
    Matrix in_proj_qkv;          // [2 * key_dim + value_dim, hidden]
    Matrix in_proj_z;            // [value_dim, hidden]
    Matrix in_proj_b;            // [num_value_heads, hidden]
    Matrix in_proj_a;            // [num_value_heads, hidden]
    Matrix out_proj;             // [hidden, value_dim]
    std::vector<float> conv1d;   // [conv_dim, kernel], depthwise taps, oldest input first
    std::vector<float> A_log;    // [num_value_heads]
    std::vector<float> dt_bias;  // [num_value_heads]
    std::vector<float> norm;     // [value_head_dim], plain multiplier (not 1 + w)
};

struct ExpertWeights {
    Matrix gate;  // [intermediate, hidden]
    Matrix up;    // [intermediate, hidden]
    Matrix down;  // [hidden, intermediate]
};

struct MoeWeights {
    Matrix router;             // [num_experts, hidden]
    ExpertWeights shared;      // intermediate = shared_expert_intermediate_size (absent when 0)
    Matrix shared_gate;        // [1, hidden]
    bool has_shared = false;
};

struct LayerWeights {
    LayerKind kind = LayerKind::DeltaNet;
    std::vector<float> input_norm;  // [hidden], multiplier (1 + w)
    std::vector<float> post_norm;   // [hidden], multiplier (1 + w)
    AttentionWeights attention;     // kind == Attention
    DeltaNetWeights deltanet;       // kind == DeltaNet
    MoeWeights moe;
};

struct DenseWeights {
    Matrix embed;                   // [vocab, hidden]
    Matrix lm_head;                 // [vocab, hidden]
    std::vector<float> final_norm;  // [hidden], multiplier (1 + w)
    std::vector<LayerWeights> layers;
};

}  // namespace flashmoe
