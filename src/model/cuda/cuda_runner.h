// The entry point to the CUDA backend for code that must build without CUDA (engine/, cli/): device
// discovery and a factory for the CUDA forward. Declared always; defined only when flashmoe is built
// with FLASHMOE_CUDA (FLASHMOE_HAS_CUDA is then defined for everyone that links flashmoe_core).
#pragma once

#include "model/config.h"
#include "model/experts.h"
#include "model/model_runner.h"
#include "model/weights.h"

#include <cstddef>
#include <memory>

namespace flashmoe {

struct CudaRunnerOptions {
    int device = 0;
    size_t vram_bytes = size_t(6) << 30;  // routed-expert VRAM cache
    size_t host_bytes = size_t(2) << 30;  // pinned host tier under it
};

// Usable CUDA devices (0 when built without CUDA, or with no driver or device).
int cuda_device_count();

// The Qwen3.5-MoE forward on a CUDA device: dense weights are copied to VRAM at construction (the
// views in `weights` are only read then); experts come from `experts` through the VRAM and pinned
// caches. `config` and `experts` must outlive the runner. Fails (Error) without a device.
std::unique_ptr<ModelRunner> make_cuda_runner(const ModelConfig& config, const DenseWeights& weights,
                                              ExpertSource& experts, const CudaRunnerOptions& options);

}  // namespace flashmoe
