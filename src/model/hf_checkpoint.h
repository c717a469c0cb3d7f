// Binding a Hugging Face or MLX snapshot directory (config.json + safetensors) to the model
// structs. Recognises the three HF name layouts (release: `model.language_model.` prefix with fused
// `mlp.experts.gate_up_proj`/`down_proj`; per-expert `mlp.experts.E.{gate,up,down}_proj.weight`;
// `model.` prefix as saved by Qwen3_5MoeForCausalLM) and the mlx-community layout
// (`language_model.model.` prefix, stacked `mlp.switch_mlp` experts, affine weight/scales/biases,
// norms stored as 1 + w). Vision and `mtp.*` tensors are ignored. Every bound tensor's dtype and shape
// is checked; a mismatch is an Error (BadModel) naming the tensor, what was expected and what the
// file has. The checkpoint owns the memory maps that all views point into.
#pragma once

#include "model/config.h"
#include "model/experts.h"
#include "model/weights.h"
#include "store/safetensors.h"

#include <memory>
#include <string>

namespace flashmoe {

enum class NameLayout { HfRelease, HfCausalLM, Mlx };
std::string_view name_layout_name(NameLayout layout);

class HfCheckpoint {
public:
    static std::unique_ptr<HfCheckpoint> open(const std::string& dir);

    const ModelConfig& config() const { return config_; }
    const DenseWeights& dense() const { return dense_; }
    ResidentExperts& experts() { return *experts_; }
    const ResidentExperts& experts() const { return *experts_; }
    const SafetensorsSet& tensors() const { return tensors_; }
    NameLayout layout() const { return layout_; }
    const std::string& dir() const { return dir_; }

private:
    std::string dir_;
    ModelConfig config_;
    SafetensorsSet tensors_;
    NameLayout layout_ = NameLayout::HfCausalLM;
    DenseWeights dense_;
    std::unique_ptr<ResidentExperts> experts_;
};

}  // namespace flashmoe
