// A model ready to run: a packed model (experts streamed through an ExpertStore) or an HF / MLX
// snapshot directory (everything memory-mapped and resident), its config, weights, expert source and
// the forward built on them. Owns every memory map the views use. Opening fails with
// flashmoe::Error naming the file or tensor at fault.
#pragma once

#include "engine/generation_defaults.h"
#include "model/hf_checkpoint.h"
#include "model/qwen35moe.h"
#include "store/packed_model.h"

#include <memory>
#include <mutex>
#include <string>

namespace flashmoe {

class Tokenizer;
class ChatTemplate;

struct WeightSummary {
    size_t tensor_count = 0;
    size_t dense_bytes = 0;    // everything the forward keeps resident
    size_t expert_bytes = 0;   // routed experts
    size_t ignored_bytes = 0;  // vision tower, multi-token-prediction head
    std::string quantization;  // "none (bf16)", "mlx affine 4-bit, group 64 (...)", ...
};

class LoadedModel {
public:
    LoadedModel();
    ~LoadedModel();
    static std::unique_ptr<LoadedModel> open(const std::string& path, const ExpertStoreOptions& options = {});

    const ModelConfig& config() const { return *config_; }
    bool is_packed() const { return packed_ != nullptr; }
    ExpertStore* expert_store() { return packed_ ? &packed_->experts() : nullptr; }
    ModelRunner& forward() { return *forward_; }
    const std::string& path() const { return path_; }
    std::string layout_description() const;

    // The model's text side, loaded on first use from its directory (thread-safe). Missing files
    // are an Error (BadModel) that says so; generation_defaults() works without a tokenizer.
    const Tokenizer& tokenizer();
    const ChatTemplate& chat_template();
    const GenerationDefaults& generation_defaults();
    WeightSummary summary() const;

private:
    std::string path_;
    const ModelConfig* config_ = nullptr;
    std::unique_ptr<HfCheckpoint> checkpoint_;  // one of these two
    std::unique_ptr<PackedModel> packed_;
    std::unique_ptr<ModelRunner> forward_;
    std::mutex text_mutex_;
    std::unique_ptr<Tokenizer> tokenizer_;
    std::unique_ptr<ChatTemplate> chat_template_;
    std::unique_ptr<GenerationDefaults> generation_defaults_;
};

}  // namespace flashmoe
