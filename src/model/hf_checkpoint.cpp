#include "model/hf_checkpoint.h"

#include "model/binder.h"
#include "util/error.h"

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
    ck->dense_ = bind_dense(b, c, prefix, mlx ? "language_model.lm_head" : "lm_head", norms_plus_one);
    std::vector<std::vector<ExpertWeights>> experts(size_t(c.num_layers));
    const int64_t H = c.hidden_size, I = c.moe_intermediate_size, E = c.num_experts;
    for (int64_t i = 0; i < c.num_layers; ++i) {
        std::string mp = prefix + "layers." + std::to_string(i) + ".mlp.";
        auto& ex = experts[size_t(i)];
        ex.resize(static_cast<size_t>(E));
        if (b.has(mp + "switch_mlp.gate_proj.weight")) {
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
    }
    ck->experts_ = std::make_unique<ResidentExperts>(std::move(experts));
    return ck;
}

}  // namespace flashmoe
