// The Qwen3.5-MoE forward on one CUDA device: the twin of model/qwen35moe.cpp, step for step, with
// the same ModelRunner face. Dense weights live in VRAM (copied at construction); routed experts come
// through an ExpertCache (VRAM -> pinned host -> the ExpertSource). Activations are fp32 on the
// device; one compute stream runs everything, the expert cache copies on its own stream. Each
// forward ends synchronised (logits are on the host when it returns).
//
// Per sequence state (CudaSequenceState): attention KV caches (grown by doubling) and DeltaNet conv
// and recurrent states in device memory; snapshots copy the DeltaNet states to host memory.
//
// Not thread-safe per instance: one forward at a time. Errors: bad token ids are Error(BadInput);
// CUDA failures Error(Internal / OutOfMemory) naming the call; expert I/O errors propagate.
#pragma once

#include "kernels/cuda/cuda_util.h"
#include "kernels/cuda/dmat.h"
#include "kernels/cuda/ops.h"
#include "model/cuda/cuda_runner.h"
#include "model/cuda/expert_cache.h"

#include <map>
#include <string>
#include <vector>

namespace flashmoe::cuda {

class CudaSequenceState;

class Qwen35MoeCuda final : public ModelRunner {
public:
    Qwen35MoeCuda(const ModelConfig& config, const DenseWeights& weights, ExpertSource& experts,
                  const CudaRunnerOptions& options);
    ~Qwen35MoeCuda() override;

    const ModelConfig& config() const override { return config_; }
    std::unique_ptr<ModelState> new_state() const override;
    // `state` must come from new_state() of a CUDA runner (Error Internal otherwise).
    void forward(ModelState& state, std::span<const int32_t> tokens, const ForwardOptions& options,
                 std::vector<float>* logits) override;

    ExpertCache& expert_cache() { return *experts_; }
    uint64_t graph_launches() const { return graph_launches_; }
    // Decode through the tiers guesses the next layer's experts (the next router applied to this
    // layer's router input) and has the cache copy them ahead. On unless FLASHMOE_CUDA_PREFETCH=0;
    // never changes results.
    void set_expert_prefetch(bool on) { prefetch_ = on; }
    bool expert_prefetch() const { return prefetch_; }

private:
    struct DAttention {
        DMat q_proj, k_proj, v_proj, o_proj;
        const float *q_norm = nullptr, *k_norm = nullptr;
    };
    struct DDeltaNet {
        DMat in_proj_qkv, in_proj_z, in_proj_b, in_proj_a, out_proj;
        const float *conv1d = nullptr, *A_log = nullptr, *dt_bias = nullptr, *norm = nullptr;
    };
    struct DLayer {
        LayerKind kind = LayerKind::DeltaNet;
        const float *input_norm = nullptr, *post_norm = nullptr;
        DAttention attention;
        DDeltaNet deltanet;
        DMat router, shared_gate_proj, shared_up, shared_down, shared_gate;
        bool has_shared = false;
    };

    DMat upload(const Matrix& m);
    const float* upload(const std::vector<float>& v);
    void attention(int64_t layer, CudaSequenceState& st, int64_t n);
    void deltanet(int64_t layer, CudaSequenceState& st, int64_t n);
    void moe(int64_t layer, int64_t k, int64_t n, bool device_routing);
    void routed_from_cache(int64_t layer, int64_t k, int64_t n);  // ids in h_ids_: host-side grouping, tiers
    void shared_expert(int64_t layer, int64_t n);
    void run_layers(CudaSequenceState& st, int64_t n, int64_t k, bool device_routing, int64_t logits_from);
    void make_resident();
    // FLASHMOE_CUDA_PROFILE=1: an event after every op (graphs off), totals by op printed at exit.
    void prof(const char* name);
    void prof_collect(int64_t n);
    // Buffers only grow, and only after the stream is idle (work in flight may use the old one).
    float* scratch(size_t index, size_t floats);
    void grow(DeviceBuffer& b, size_t bytes);
    void grow(PinnedBuffer& b, size_t bytes);
    // d_shared_batch_ sized for prompts of up to n tokens.
    void grow_shared_batch(int64_t n);

    const ModelConfig& config_;
    int device_ = 0;
    Stream stream_;
    std::vector<DeviceBuffer> owned_;  // dense weights
    DMat embed_, lm_head_;
    const float* final_norm_ = nullptr;
    std::vector<DLayer> layers_;
    std::unique_ptr<ExpertCache> experts_;

    // All experts in VRAM: routing stays on the device (table [layers * experts] of ExpertJob).
    bool resident_checked_ = false, resident_ = false;
    DeviceBuffer d_table_;
    std::vector<bool> resident_tensor_cores_;  // [layers] every expert runs on the tensor cores (several tokens)
    DeviceBuffer d_shared_table_;  // [layers] ExpertJob of the shared experts
    DeviceBuffer d_shared_misc_;   // int32 0, float 1
    DeviceBuffer d_shared_batch_;  // several tokens: the shared expert as a one-job batch (grow_shared_batch)
    int64_t shared_batch_tokens_ = 0;
    const float* finish_shared_y_ = nullptr;  // the shared expert's output rows of this layer
    bool profile_ = false;
    std::vector<cudaEvent_t> prof_events_;
    std::vector<const char*> prof_names_;
    size_t prof_used_ = 0;
    std::map<std::string, std::pair<double, uint64_t>> prof_totals_;
    // Decode steps replayed from a CUDA graph; the key says which buffers it baked in.
    struct GraphKey {
        uint64_t state = 0, kv_capacity = 0, buffers = 0;
        int64_t k = 0, logits = 0;
        bool int8 = false;  // the activation mode the kernels were launched with
        bool operator==(const GraphKey&) const = default;
    };
    cudaGraphExec_t graph_ = nullptr;
    GraphKey graph_key_, warm_key_;
    bool use_graphs_ = true;
    bool prefetch_ = true;
    Event ids_ready_;  // the routed ids (and the guess) have reached h_ids_
    uint64_t graph_launches_ = 0;
    uint64_t buffer_generation_ = 0;  // bumped whenever a buffer moves

    // Per-forward buffers, grown as needed.
    std::vector<DeviceBuffer> scratch_;
    DeviceBuffer d_position_, d_tokens_, d_ids_, d_weights_, d_jobs_;
    PinnedBuffer h_position_, h_tokens_, h_ids_, h_jobs_, h_logits_;  // h_jobs_/d_jobs_: each wave's (or a resident prompt's) jobs, then its slots
};

}  // namespace flashmoe::cuda
