// The CUDA backend's op set: host-side launchers of the kernels the CUDA forward runs, one per op of
// the CPU forward (kernels/cpu/matmul.h, ops/cpu_ops.h and the loops of model/qwen35moe.cpp). All
// pointers are device pointers unless stated; activations are fp32 row-major; every launcher only
// enqueues work on `stream` (nothing waits) and throws flashmoe::Error naming the kernel if the
// launch fails. Buffers must not alias unless stated. Sizes may be odd: no launcher assumes
// multiples of anything beyond what the weight format itself guarantees.
#pragma once

#include "kernels/cuda/dmat.h"

#include <cuda_runtime_api.h>

#include <cstdint>

namespace flashmoe::cuda {

// y[t, r] = sum_c W[r, c] * x[t, c]; x [n, w.cols], y [n, w.rows]. fp32 accumulation.
void matmul(const DMat& w, const float* x, int64_t n, float* y, cudaStream_t stream);

// y_m = W_m x for `count` (at most kMaxGemvMats) matrices sharing one input x [n, w_m.cols]
// (y_m [n, w_m.rows]) in as few launches as their formats allow (one token: matrices of one shape;
// several: those on the tensor cores, with one preparation of x). Same results as
// matmul(w_m, x, n, y_m).
constexpr int kMaxGemvMats = 4;
void matmul_multi(const DMat* const* w, float* const* y, int count, const float* x, int64_t n, cudaStream_t stream);

// out[t, :] = row ids[t] of w, dequantised to fp32; ids are device int32 in [0, w.rows).
void embed_rows(const DMat& w, const int32_t* ids, int64_t n, float* out, cudaStream_t stream);

// out[r, :] = v / sqrt(mean(v^2) + eps) * w with v = x[r, :] + add[r, :] (add null: x[r, :]); rows of
// `dim` floats (at most 16,384), x and out may alias, x is not changed.
void rmsnorm(const float* x, const float* w, int64_t rows, int64_t dim, float eps, float* out, cudaStream_t stream,
             const float* add = nullptr);

// The end of a MoE block for n tokens: moe = sum_j routed[t*k + j, :] + sigmoid(shared_g[t]) *
// shared_y[t, :] (shared_y may be null), x[t, :] = (x[t, :] + mix[t, :]) + moe, then out[t, :] =
// rmsnorm(x[t, :]) * w (w null: x only). mix is the mixer's output, which the router's input norm
// (rmsnorm with add) has not added to x.
void moe_finish(const float* routed, int64_t n, int64_t k, const float* shared_y, const float* shared_g, float* x,
                const float* mix, const float* w, int64_t dim, float eps, float* out, cudaStream_t stream);

// ---- gated attention ----
struct AttentionShape {
    int64_t n = 0;         // new tokens
    int64_t position = 0;  // position of the first new token
    int64_t heads = 0, kv_heads = 0, head_dim = 0, rotary_dim = 0;
    float rope_theta = 0, eps = 0;
    // When set, the position is read from this device int64 instead (so that a captured CUDA graph
    // replays at every position).
    const int64_t* d_position = nullptr;
    // An upper bound on position + n known to the host (the KV cache capacity) when d_position is
    // set: a single-token attention splits the positions over blocks by it (0: position + n).
    int64_t max_len = 0;
};
// RMSNorm (q_norm / k_norm) then NeoX RoPE on the first rotary_dim dims of every query head (q
// [n, heads * 2 * head_dim], the query half of each head, in place) and every key head (k [n,
// kv_heads * head_dim], into keys rows [position, position + n)); v into values rows [position,
// position + n) (keys/values [positions][kv_heads][head_dim]).
void attention_prepare(const AttentionShape& s, float* q, const float* k, const float* v, const float* q_norm,
                       const float* k_norm, float* keys, float* values, cudaStream_t stream);
// Causal softmax attention of the n new queries over cache rows [0, position + t] (keys/values
// [positions][kv_heads][head_dim]), each output head multiplied by sigmoid(its gate half of q).
// out [n, heads * head_dim].
void attention(const AttentionShape& s, const float* q, const float* keys, const float* values, float* out,
               cudaStream_t stream);

// ---- Gated DeltaNet ----
// Causal depthwise conv (kernel K <= 8) over [state ; x] then SiLU, into out [n, C]; state
// [K-1, C] is advanced to the last K-1 raw inputs. x and out must not alias.
void conv1d_silu(const float* x, float* state, const float* taps, int64_t n, int64_t C, int64_t K, float* out,
                 cudaStream_t stream);

struct DeltaNetArgs {
    const float* qkv = nullptr;   // [n, conv_dim] after the convolution
    const float* b = nullptr;     // [n, value_heads]
    const float* a = nullptr;     // [n, value_heads]
    const float* A_log = nullptr;  // [value_heads]
    const float* dt_bias = nullptr;
    float* state = nullptr;       // [value_heads, key_dim, value_dim], updated
    float* out = nullptr;         // [n, value_heads * value_dim]
    int64_t n = 0, conv_dim = 0, value_heads = 0, key_heads = 0, key_dim = 0, value_dim = 0;
};
// The gated delta rule (l2-normalised q, k; beta = sigmoid(b); decay from A_log, a, dt_bias): token by
// token, or chunked (deltanet_chunked) for prompts of at least kDeltaChunkedMinTokens tokens with keys
// of at most kDeltaChunkedMaxKey dims.
void deltanet_recurrence(const DeltaNetArgs& args, cudaStream_t stream);
// The same recurrence in its chunked (parallel-in-time) form: equal up to fp32 rounding, any n >= 1,
// key_dim <= kDeltaChunkedMaxKey. Uses a scratch buffer kept per stream (grown with a stream sync);
// not for use inside a graph capture that may grow it.
constexpr int64_t kDeltaChunkedMinTokens = 32;
constexpr int64_t kDeltaChunkedMaxKey = 128;
void deltanet_chunked(const DeltaNetArgs& args, cudaStream_t stream);
// o[r, :] = w * rmsnorm(o[r, :]) * silu(z[r, :]) over rows of dim (plain weight).
void gated_rmsnorm(float* o, const float* z, const float* w, int64_t rows, int64_t dim, float eps, cudaStream_t stream);

// ---- sparse MoE ----
// Per token: softmax over `experts` logits, the k largest (ties: lower index), weights renormalised.
// ids [n, k] int32, weights [n, k].
// extra_id >= 0 also writes ids[n * k] = extra_id, weights[n * k] = 1 (a slot for the shared expert).
void router_top_k(const float* logits, int64_t n, int64_t experts, int64_t k, int32_t* ids, float* weights,
                  cudaStream_t stream, int32_t extra_id = -1);

// One routed expert's share of a batch: its matrices and the run of the slot list it serves.
// A slot is t * k + j (token t, choice j).
struct ExpertJob {
    DMat gate, up, down;
    int32_t slot_begin = 0;  // into the slot list
    int32_t count = 0;       // slots (tokens) routed to this expert
};
struct MoeBatch {
    const ExpertJob* jobs = nullptr;  // device array [njobs]
    int64_t njobs = 0;
    int64_t max_count = 0;        // largest job.count
    const int32_t* slots = nullptr;  // device slot list
    int64_t k = 0, hidden = 0, intermediate = 0;
    // Tokens of the forward this batch belongs to: 1 selects the single-token kernels (the same
    // ones moe_*_routed run, so a decode step's results do not depend on where the experts live).
    int64_t tokens = 0;
    // Several tokens: whether some job's matrices need the fp32 kernels (false when every job runs
    // on the tensor cores: the fp32 launches, each of whose blocks would only find nothing to do,
    // are skipped). True is always safe.
    bool needs_fp32 = true;
};
// Groups a forward's slots by expert on the device, as the host does for the tiers: jobs[e] =
// table[e] serving slot_list[slot_begin, slot_begin + count), the slots s (ascending) with ids[s]
// == e, experts in ascending order; every id in [0, experts). jobs [experts], slot_list [slots].
void group_by_expert(const ExpertJob* table, const int32_t* ids, int64_t slots, int64_t experts, ExpertJob* jobs,
                     int32_t* slot_list, cudaStream_t stream);
// Whether a routed expert's gate/up and down all run on the tensor cores for several tokens.
bool tensor_cores_take(const ExpertJob& job);
// act[s, :] = silu(gate x_t) * (up x_t) for every slot s of every job (x [n, hidden], act [n*k, intermediate]).
void moe_gate_up(const MoeBatch& b, const float* x, float* act, cudaStream_t stream);
// routed[s, :] = weights[s] * (down act[s]) for every slot s of every job (routed [n*k, hidden]).
void moe_down(const MoeBatch& b, const float* act, const float* weights, float* routed, cudaStream_t stream);
// The same two steps with routing read on the device (no host round trip): slot s uses expert
// ids[s] from `table` ([experts] of the layer, all resident), token s / k, weight weights[s].
void moe_gate_up_routed(const ExpertJob* table, const int32_t* ids, int64_t slots, int64_t k, int64_t hidden,
                        int64_t intermediate, const float* x, float* act, cudaStream_t stream);
void moe_down_routed(const ExpertJob* table, const int32_t* ids, int64_t slots, int64_t hidden, int64_t intermediate,
                     const float* act, const float* weights, float* routed, cudaStream_t stream);

}  // namespace flashmoe::cuda
