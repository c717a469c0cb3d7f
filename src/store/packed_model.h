// Opening a packed model directory for inference: the manifest and config, the dense weights
// (memory-mapped dense.safetensors, bound and shape-checked), and an ExpertStore over the expert
// files. Errors name the file at fault (wrong magic or version, truncated files, bad layout).
#pragma once

#include "model/config.h"
#include "model/weights.h"
#include "store/expert_store.h"
#include "store/safetensors.h"

#include <memory>
#include <nlohmann/json.hpp>
#include <string>

namespace flashmoe {

class PackedModel {
public:
    static std::unique_ptr<PackedModel> open(const std::string& dir, const ExpertStoreOptions& options);

    const ModelConfig& config() const { return config_; }
    const DenseWeights& dense() const { return dense_; }
    ExpertStore& experts() { return *experts_; }
    const SafetensorsSet& dense_tensors() const { return dense_tensors_; }
    const nlohmann::json& manifest() const { return manifest_; }
    size_t expert_bytes() const;  // all expert records on disk

private:
    nlohmann::json manifest_;
    ModelConfig config_;
    SafetensorsSet dense_tensors_;
    DenseWeights dense_;
    std::unique_ptr<ExpertStore> experts_;
};

}  // namespace flashmoe
