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

// Which backend runs the forward. Auto: CUDA when built with it and a device is present, else CPU.
enum class Device { Cpu, Cuda, Auto };
Device parse_device(const std::string& text);  // "cpu" | "cuda" | "auto"; BadInput otherwise

struct RunnerOptions {
    Device device = Device::Cpu;
    size_t vram_bytes = size_t(6) << 30;  // CUDA: routed-expert VRAM cache
};

class LoadedModel {
public:
    LoadedModel();
    ~LoadedModel();
    // With Device::Cuda the ExpertStoreOptions' cache budget becomes the pinned host tier under the
    // VRAM cache (the store itself keeps a small read-staging cache). Cuda without a device (or a
    // build without CUDA) is Error(BadInput).
    static std::unique_ptr<LoadedModel> open(const std::string& path, const ExpertStoreOptions& options = {},
                                             const RunnerOptions& runner = {});

    const ModelConfig& config() const { return *config_; }
    bool is_packed() const { return packed_ != nullptr; }
    ExpertStore* expert_store() { return packed_ ? &packed_->experts() : nullptr; }
    ModelRunner& forward() { return *forward_; }
    Device device() const { return device_; }  // Cpu or Cuda, as resolved
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
    Device device_ = Device::Cpu;
    std::mutex text_mutex_;
    std::unique_ptr<Tokenizer> tokenizer_;
    std::unique_ptr<ChatTemplate> chat_template_;
    std::unique_ptr<GenerationDefaults> generation_defaults_;
};

}  // namespace flashmoe
