#include "model/binder.h"

namespace flashmoe {

DenseWeights bind_dense(const Binder& b, const ModelConfig& c, const std::string& prefix, const std::string& head,
                        bool norms_plus_one) {
    const int64_t H = c.hidden_size;
    DenseWeights d;
    d.embed = b.linear(prefix + "embed_tokens", c.vocab_size, H);
    d.final_norm = b.vector(prefix + "norm.weight", H, norms_plus_one);
    if (c.tie_word_embeddings) {
        d.lm_head = d.embed;
    } else {
        d.lm_head = b.linear(head, c.vocab_size, H);
    }
    for (int64_t i = 0; i < c.num_layers; ++i) {
        std::string p = prefix + "layers." + std::to_string(i) + ".";
        LayerWeights L;
        L.kind = c.layer_kinds[size_t(i)];
        L.input_norm = b.vector(p + "input_layernorm.weight", H, norms_plus_one);
        L.post_norm = b.vector(p + "post_attention_layernorm.weight", H, norms_plus_one);
        if (L.kind == LayerKind::Attention) {
            auto& a = L.attention;
            std::string q = p + "self_attn.";
            a.q_proj = b.linear(q + "q_proj", c.num_heads * c.head_dim * 2, H);
            a.k_proj = b.linear(q + "k_proj", c.num_kv_heads * c.head_dim, H);
            a.v_proj = b.linear(q + "v_proj", c.num_kv_heads * c.head_dim, H);
            a.o_proj = b.linear(q + "o_proj", H, c.num_heads * c.head_dim);
            a.q_norm = b.vector(q + "q_norm.weight", c.head_dim, norms_plus_one);
            a.k_norm = b.vector(q + "k_norm.weight", c.head_dim, norms_plus_one);
        } else {
            auto& n = L.deltanet;
            std::string q = p + "linear_attn.";
            const int64_t Hv = c.linear_num_value_heads;
            n.in_proj_qkv = b.linear(q + "in_proj_qkv", c.linear_conv_dim(), H);
            n.in_proj_z = b.linear(q + "in_proj_z", c.linear_value_dim(), H);
            n.in_proj_b = b.linear(q + "in_proj_b", Hv, H);
            n.in_proj_a = b.linear(q + "in_proj_a", Hv, H);
            n.out_proj = b.linear(q + "out_proj", H, c.linear_value_dim());
            // HF stores conv1d as [C, 1, K], MLX as [C, K, 1]: the same C*K values in the same order.
            n.conv1d = b.vector(q + "conv1d.weight", c.linear_conv_dim() * c.linear_conv_kernel, false);
            n.A_log = b.vector(q + "A_log", Hv, false);
            n.dt_bias = b.vector(q + "dt_bias", Hv, false);
            n.norm = b.vector(q + "norm.weight", c.linear_value_head_dim, false);
        }
        auto& m = L.moe;
        std::string mp = p + "mlp.";
        m.router = b.linear(mp + "gate", c.num_experts, H);
        if (c.shared_expert_intermediate_size > 0) {
            const int64_t S = c.shared_expert_intermediate_size;
            m.has_shared = true;
            m.shared.gate = b.linear(mp + "shared_expert.gate_proj", S, H);
            m.shared.up = b.linear(mp + "shared_expert.up_proj", S, H);
            m.shared.down = b.linear(mp + "shared_expert.down_proj", H, S);
            m.shared_gate = b.linear(mp + "shared_expert_gate", 1, H);
        }
        d.layers.push_back(std::move(L));
    }
    return d;
}

}  // namespace flashmoe
