#include "model/hf_checkpoint.h"

#include "util/error.h"
#include "util/half.h"

#include <filesystem>

namespace flashmoe {

namespace fs = std::filesystem;

std::string_view name_layout_name(NameLayout layout) {
    switch (layout) {
        case NameLayout::HfRelease: return "hf-release (model.language_model.*)";
        case NameLayout::HfCausalLM: return "hf-causal-lm (model.*)";
        case NameLayout::Mlx: return "mlx (language_model.model.*)";
    }
    return "?";
}

namespace {

// Binds tensors by name, checking dtype and shape against what the model needs.
class Binder {
public:
    Binder(const SafetensorsSet& st, const ModelConfig& cfg) : st_(st), cfg_(cfg) {}

    // A linear layer `base` ("...q_proj"): dense `base.weight` [rows, cols], or affine
    // `base.weight` (u32) + `base.scales` + `base.biases`.
    Matrix linear(const std::string& base, int64_t rows, int64_t cols) const {
        return slice(base, -1, 0, rows, rows, cols);
    }

    // Expert `expert` of a stacked tensor `base.weight` [E, total_rows, ...], rows [row0, row0 + rows).
    Matrix stacked(const std::string& base, int64_t expert, int64_t row0, int64_t rows, int64_t total_rows,
                   int64_t cols) const {
        return slice(base, expert, row0, rows, total_rows, cols);
    }
    // Same for a stacked tensor with no ".weight" suffix (HF fused experts).
    Matrix stacked_raw(const std::string& name, int64_t expert, int64_t row0, int64_t rows, int64_t total_rows,
                       int64_t cols) const {
        const TensorRef& w = st_.get(name);
        check_shape(w, {cfg_.num_experts, total_rows, cols});
        Matrix m = dense_view(w, rows, cols);
        m.data = w.data + (size_t(expert) * size_t(total_rows) + size_t(row0)) * m.row_bytes();
        return m;
    }

    std::vector<float> vector(const std::string& name, int64_t n, bool plus_one) const {
        const TensorRef& t = st_.get(name);
        if (t.numel() != n) {
            fail(ErrorKind::BadModel, "{}: expected {} values, file has {} {} ({})", name, n, dtype_name(t.dtype),
                 t.shape_string(), *t.file);
        }
        std::vector<float> out(static_cast<size_t>(n));
        for (int64_t i = 0; i < n; ++i) out[size_t(i)] = element(t, i);
        if (plus_one)
            for (auto& v : out) v = 1.0f + v;
        return out;
    }

    bool has(const std::string& name) const { return st_.find(name) != nullptr; }

private:
    static float element(const TensorRef& t, int64_t i) {
        const uint8_t* p = t.data + size_t(i) * dtype_size(t.dtype);
        uint16_t h;
        float f;
        switch (t.dtype) {
            case DType::F32: std::memcpy(&f, p, 4); return f;
            case DType::BF16: std::memcpy(&h, p, 2); return bf16_to_float(h);
            case DType::F16: std::memcpy(&h, p, 2); return f16_to_float(h);
            default:
                fail(ErrorKind::BadModel, "{}: dtype {} is not a float type (f32, bf16 or f16) ({})", t.name,
                     dtype_name(t.dtype), *t.file);
        }
    }

    void check_shape(const TensorRef& t, std::vector<int64_t> want) const {
        if (t.shape != want) {
            TensorRef fake;
            fake.shape = want;
            fail(ErrorKind::BadModel, "{}: expected shape {}, file has {} {} ({})", t.name, fake.shape_string(),
                 dtype_name(t.dtype), t.shape_string(), *t.file);
        }
    }

    Matrix dense_view(const TensorRef& w, int64_t rows, int64_t cols) const {
        Matrix m;
        switch (w.dtype) {
            case DType::F32: m.format = WeightFormat::F32; break;
            case DType::BF16: m.format = WeightFormat::BF16; break;
            case DType::F16: m.format = WeightFormat::F16; break;
            default:
                fail(ErrorKind::BadModel, "{}: dtype {} is not supported for a weight matrix (f32, bf16, f16) ({})",
                     w.name, dtype_name(w.dtype), *w.file);
        }
        m.rows = rows;
        m.cols = cols;
        m.data = w.data;
        return m;
    }

    // expert < 0: an unstacked tensor [total_rows, ...].
    Matrix slice(const std::string& base, int64_t expert, int64_t row0, int64_t rows, int64_t total_rows,
                 int64_t cols) const {
        const TensorRef& w = st_.get(base + ".weight");
        std::vector<int64_t> lead;
        if (expert >= 0) lead.push_back(cfg_.num_experts);
        lead.push_back(total_rows);
        const TensorRef* scales = st_.find(base + ".scales");
        if (!scales) {
            auto want = lead;
            want.push_back(cols);
            check_shape(w, want);
            Matrix m = dense_view(w, rows, cols);
            size_t index = (expert >= 0 ? size_t(expert) * size_t(total_rows) : 0) + size_t(row0);
            m.data = w.data + index * m.row_bytes();
            return m;
        }
        const TensorRef& biases = st_.get(base + ".biases");
        if (w.dtype != DType::U32) {
            fail(ErrorKind::BadModel, "{}: quantised weights must be u32, file has {} ({})", w.name,
                 dtype_name(w.dtype), *w.file);
        }
        if (w.shape.size() != lead.size() + 1 || scales->shape.size() != lead.size() + 1) {
            fail(ErrorKind::BadModel, "{}: expected {} dimensions, file has {} ({})", w.name, lead.size() + 1,
                 w.shape_string(), *w.file);
        }
        int64_t words = w.shape.back(), groups = scales->shape.back();
        if (groups <= 0 || cols % groups != 0 || (words * 32) % cols != 0) {
            fail(ErrorKind::BadModel, "{}: {} words and {} groups per row do not fit {} input columns ({})", w.name,
                 words, groups, cols, *w.file);
        }
        Matrix m;
        m.format = WeightFormat::Affine;
        m.rows = rows;
        m.cols = cols;
        m.bits = int(words * 32 / cols);
        m.group_size = int(cols / groups);
        check_quant(base, m.bits, m.group_size);
        auto want_w = lead, want_s = lead;
        want_w.push_back(words);
        want_s.push_back(groups);
        check_shape(w, want_w);
        check_shape(*scales, want_s);
        check_shape(biases, want_s);
        if (scales->dtype != biases.dtype ||
            (scales->dtype != DType::BF16 && scales->dtype != DType::F16 && scales->dtype != DType::F32)) {
            fail(ErrorKind::BadModel, "{}: scales/biases must both be bf16, f16 or f32, file has {} and {}",
                 base, dtype_name(scales->dtype), dtype_name(biases.dtype));
        }
        m.scale_dtype = scales->dtype;
        size_t index = (expert >= 0 ? size_t(expert) * size_t(total_rows) : 0) + size_t(row0);
        m.data = w.data + index * m.row_bytes();
        size_t scale_row = size_t(groups) * dtype_size(m.scale_dtype);
        m.scales = scales->data + index * scale_row;
        m.biases = biases.data + index * scale_row;
        return m;
    }

    // Cross-checks bits/group inferred from shapes against config.json's quantization, if any.
    void check_quant(const std::string& base, int bits, int group) const {
        static const int kBits[] = {2, 3, 4, 5, 6, 8};
        if (std::find(std::begin(kBits), std::end(kBits), bits) == std::end(kBits) ||
            (group != 32 && group != 64 && group != 128)) {
            fail(ErrorKind::BadModel, "{}: {}-bit codes in groups of {} are not supported", base, bits, group);
        }
        if (!cfg_.quantization) return;
        const QuantConfig& q = *cfg_.quantization;
        QuantParams want = q.defaults;
        if (auto it = q.overrides.find(base); it != q.overrides.end() && it->second) want = *it->second;
        if (want.bits != bits || want.group_size != group) {
            fail(ErrorKind::BadModel,
                 "{}: config.json says {}-bit groups of {}, but the tensor shapes give {}-bit groups of {}", base,
                 want.bits, want.group_size, bits, group);
        }
    }

    const SafetensorsSet& st_;
    const ModelConfig& cfg_;
};

NameLayout detect_layout(const SafetensorsSet& st, const std::string& dir) {
    bool release = false, causal = false, mlx = false;
    for (auto& [name, t] : st.tensors()) {
        if (name.rfind("model.language_model.", 0) == 0) release = true;
        else if (name.rfind("language_model.model.", 0) == 0) mlx = true;
        else if (name.rfind("model.layers.", 0) == 0 || name.rfind("model.embed_tokens", 0) == 0) causal = true;
    }
    if (int(release) + int(causal) + int(mlx) != 1) {
        fail(ErrorKind::BadModel,
             "{}: cannot tell the tensor name layout (expected one of the prefixes model.language_model., "
             "model., language_model.model.)",
             dir);
    }
    return release ? NameLayout::HfRelease : mlx ? NameLayout::Mlx : NameLayout::HfCausalLM;
}

}  // namespace

std::unique_ptr<HfCheckpoint> HfCheckpoint::open(const std::string& dir) {
    if (!fs::is_directory(dir)) fail(ErrorKind::BadInput, "{}: not a model directory", dir);
    auto ck = std::make_unique<HfCheckpoint>();
    ck->dir_ = dir;
    ck->config_ = ModelConfig::from_file((fs::path(dir) / "config.json").string());
    ck->tensors_ = SafetensorsSet::open_dir(dir);
    ck->layout_ = detect_layout(ck->tensors_, dir);

    const ModelConfig& c = ck->config_;
    const bool mlx = ck->layout_ == NameLayout::Mlx;
    const bool norms_plus_one = !mlx;  // MLX stores the zero-centred norms as 1 + w already
    std::string prefix = ck->layout_ == NameLayout::HfRelease ? "model.language_model."
                         : mlx                                ? "language_model.model."
                                                              : "model.";
    Binder b(ck->tensors_, c);
    const int64_t H = c.hidden_size;

    DenseWeights& d = ck->dense_;
    d.embed = b.linear(prefix + "embed_tokens", c.vocab_size, H);
    d.final_norm = b.vector(prefix + "norm.weight", H, norms_plus_one);
    std::string head = mlx ? "language_model.lm_head" : "lm_head";
    if (c.tie_word_embeddings || !b.has(head + ".weight")) {
        if (!c.tie_word_embeddings) fail(ErrorKind::BadModel, "{}: tensor {}.weight not found", dir, head);
        d.lm_head = d.embed;
    } else {
        d.lm_head = b.linear(head, c.vocab_size, H);
    }

    std::vector<std::vector<ExpertWeights>> experts(size_t(c.num_layers));
    const int64_t I = c.moe_intermediate_size, E = c.num_experts;
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
        m.router = b.linear(mp + "gate", E, H);
        if (c.shared_expert_intermediate_size > 0) {
            const int64_t S = c.shared_expert_intermediate_size;
            m.has_shared = true;
            m.shared.gate = b.linear(mp + "shared_expert.gate_proj", S, H);
            m.shared.up = b.linear(mp + "shared_expert.up_proj", S, H);
            m.shared.down = b.linear(mp + "shared_expert.down_proj", H, S);
            m.shared_gate = b.linear(mp + "shared_expert_gate", 1, H);
        }
        auto& ex = experts[size_t(i)];
        ex.resize(static_cast<size_t>(E));
        if (mlx || b.has(mp + "switch_mlp.gate_proj.weight")) {
            std::string s = mp + "switch_mlp.";
            for (int64_t e = 0; e < E; ++e) {
                ex[size_t(e)].gate = b.stacked(s + "gate_proj", e, 0, I, I, H);
                ex[size_t(e)].up = b.stacked(s + "up_proj", e, 0, I, I, H);
                ex[size_t(e)].down = b.stacked(s + "down_proj", e, 0, H, H, I);
            }
        } else if (b.has(mp + "experts.gate_up_proj")) {
            for (int64_t e = 0; e < E; ++e) {
                ex[size_t(e)].gate = b.stacked_raw(mp + "experts.gate_up_proj", e, 0, I, 2 * I, H);
                ex[size_t(e)].up = b.stacked_raw(mp + "experts.gate_up_proj", e, I, I, 2 * I, H);
                ex[size_t(e)].down = b.stacked_raw(mp + "experts.down_proj", e, 0, H, H, I);
            }
        } else {
            for (int64_t e = 0; e < E; ++e) {
                std::string s = mp + "experts." + std::to_string(e) + ".";
                ex[size_t(e)].gate = b.linear(s + "gate_proj", I, H);
                ex[size_t(e)].up = b.linear(s + "up_proj", I, H);
                ex[size_t(e)].down = b.linear(s + "down_proj", H, I);
            }
        }
        d.layers.push_back(std::move(L));
    }
    ck->experts_ = std::make_unique<ResidentExperts>(std::move(experts));
    return ck;
}

}  // namespace flashmoe
