#include "model/cuda/qwen35moe_cuda.h"

#include "kernels/cuda/upload.h"
#include "util/error.h"

#include <algorithm>
#include <atomic>
#include <cstdlib>
#include <cstring>
#include <cstdio>
#include <map>
#include <string>

namespace flashmoe {

int cuda_device_count() { return cuda::device_count(); }

std::unique_ptr<ModelRunner> make_cuda_runner(const ModelConfig& config, const DenseWeights& weights,
                                              ExpertSource& experts, const CudaRunnerOptions& options) {
    return std::make_unique<cuda::Qwen35MoeCuda>(config, weights, experts, options);
}

}  // namespace flashmoe

namespace flashmoe::cuda {

// ---- per-sequence state ----

class CudaSequenceState final : public ModelState {
public:
    struct Layer {
        DeviceBuffer keys, values;  // [capacity][kv_heads][head_dim]
        DeviceBuffer conv;          // [kernel-1][conv_dim]
        DeviceBuffer recurrent;     // [value_heads][key_dim][value_dim]
    };

    CudaSequenceState(const ModelConfig& c, int device) : device_(device), kv_row_(c.num_kv_heads * c.head_dim) {
        CUDA_CHECK(cudaSetDevice(device_));
        layers.resize(size_t(c.num_layers));
        for (int64_t i = 0; i < c.num_layers; ++i) {
            if (c.layer_kinds[size_t(i)] != LayerKind::DeltaNet) continue;
            Layer& L = layers[size_t(i)];
            L.conv = DeviceBuffer(size_t((c.linear_conv_kernel - 1) * c.linear_conv_dim()) * 4);
            L.recurrent = DeviceBuffer(size_t(c.linear_num_value_heads * c.linear_key_head_dim * c.linear_value_head_dim) * 4);
        }
        reset();
    }

    int64_t position() const override { return position_; }

    void reset() override {
        CUDA_CHECK(cudaSetDevice(device_));
        position_ = 0;
        for (Layer& L : layers) {
            if (L.conv.get()) CUDA_CHECK(cudaMemset(L.conv.get(), 0, L.conv.bytes()));
            if (L.recurrent.get()) CUDA_CHECK(cudaMemset(L.recurrent.get(), 0, L.recurrent.bytes()));
        }
        CUDA_CHECK(cudaDeviceSynchronize());
    }

    class Snapshot final : public StateSnapshot {
    public:
        int64_t position() const override { return position_; }
        size_t bytes() const override {
            size_t n = 0;
            for (auto& l : conv) n += l.size() * 4;
            for (auto& l : recurrent) n += l.size() * 4;
            return n;
        }
        const CudaSequenceState* owner = nullptr;
        int64_t position_ = 0;
        std::vector<std::vector<float>> conv, recurrent;  // per layer (empty for attention layers)
    };

    std::unique_ptr<StateSnapshot> snapshot() const override {
        auto s = std::make_unique<Snapshot>();
        s->owner = this;
        s->position_ = position_;
        s->conv.resize(layers.size());
        s->recurrent.resize(layers.size());
        for (size_t i = 0; i < layers.size(); ++i) {
            const Layer& L = layers[i];
            if (!L.conv.get()) continue;
            s->conv[i].resize(L.conv.bytes() / 4);
            s->recurrent[i].resize(L.recurrent.bytes() / 4);
            CUDA_CHECK(cudaMemcpy(s->conv[i].data(), L.conv.get(), L.conv.bytes(), cudaMemcpyDeviceToHost));
            CUDA_CHECK(cudaMemcpy(s->recurrent[i].data(), L.recurrent.get(), L.recurrent.bytes(), cudaMemcpyDeviceToHost));
        }
        return s;
    }

    void restore(const StateSnapshot& snapshot) override {
        auto* s = dynamic_cast<const Snapshot*>(&snapshot);
        if (!s || s->owner != this || s->position_ > position_) {
            fail(ErrorKind::Internal, "snapshot does not belong to this sequence");
        }
        for (size_t i = 0; i < layers.size(); ++i) {
            Layer& L = layers[i];
            if (!L.conv.get()) continue;
            CUDA_CHECK(cudaMemcpy(L.conv.get(), s->conv[i].data(), L.conv.bytes(), cudaMemcpyHostToDevice));
            CUDA_CHECK(cudaMemcpy(L.recurrent.get(), s->recurrent[i].data(), L.recurrent.bytes(), cudaMemcpyHostToDevice));
        }
        position_ = s->position_;  // attention caches: rows past the position are simply ignored
    }

    size_t bytes() const override {
        size_t n = 0;
        for (const Layer& L : layers) n += L.keys.bytes() + L.values.bytes() + L.conv.bytes() + L.recurrent.bytes();
        return n;
    }

    // Makes room for `positions` rows in every attention cache (contents up to position() kept).
    void reserve_kv(int64_t positions, cudaStream_t stream) {
        if (positions <= capacity_) return;
        const int64_t cap = std::max<int64_t>({positions, capacity_ * 2, 256});
        const size_t row_bytes = size_t(kv_row_) * 4;
        for (Layer& L : layers) {
            if (L.conv.get()) continue;  // DeltaNet layer
            for (DeviceBuffer* b : {&L.keys, &L.values}) {
                DeviceBuffer grown(size_t(cap) * row_bytes);
                if (position_ > 0 && b->get()) {
                    CUDA_CHECK(cudaMemcpyAsync(grown.get(), b->get(), size_t(position_) * row_bytes,
                                               cudaMemcpyDeviceToDevice, stream));
                }
                CUDA_CHECK(cudaStreamSynchronize(stream));
                *b = std::move(grown);
            }
        }
        capacity_ = cap;
    }

    void advance(int64_t n) { position_ += n; }
    uint64_t id() const { return id_; }
    int64_t kv_capacity() const { return capacity_; }
    std::vector<Layer> layers;

private:
    static inline std::atomic<uint64_t> next_id_{1};
    uint64_t id_ = next_id_++;
    int device_;
    int64_t kv_row_;
    int64_t position_ = 0;
    int64_t capacity_ = 0;
};

// ---- construction: dense weights to VRAM ----

namespace {

enum Scratch : size_t {
    kX, kXn, kMix, kQ, kK, kV, kAtt, kQkv, kConv, kZ, kB, kA, kO, kProbs, kRouted, kAct,
    kSharedGate, kSharedY, kSharedG, kLogits, kScratchCount
};

int select_device(int device) {
    if (device_count() <= device) fail(ErrorKind::BadInput, "no CUDA device {} (found {})", device, device_count());
    CUDA_CHECK(cudaSetDevice(device));
    return device;
}

int32_t dformat(WeightFormat f) {
    switch (f) {
        case WeightFormat::F32: return kF32;
        case WeightFormat::F16: return kF16;
        case WeightFormat::BF16: return kBF16;
        case WeightFormat::Affine: return kAffine;
    }
    return kF32;
}

}  // namespace

DMat Qwen35MoeCuda::upload(const Matrix& m) {
    DMat d;
    d.format = dformat(m.format);
    d.bits = m.bits;
    d.group = m.group_size;
    d.scale_dtype = m.scale_dtype == DType::BF16 ? kBF16 : m.scale_dtype == DType::F16 ? kF16 : kF32;
    d.rows = m.rows;
    d.cols = m.cols;
    d.row_bytes = int64_t(m.row_bytes());
    auto put = [&](const void* src, size_t bytes) -> const void* {
        owned_.emplace_back(bytes);
        CUDA_CHECK(cudaMemcpy(owned_.back().get(), src, bytes, cudaMemcpyHostToDevice));
        return owned_.back().get();
    };
    if (m.rows == 0 || m.cols == 0) return d;
    d.data = put(m.data, m.data_bytes());
    if (m.format == WeightFormat::Affine) {
        d.scales = put(m.scales, m.scale_bytes());
        d.biases = put(m.biases, m.scale_bytes());
    }
    return d;
}

const float* Qwen35MoeCuda::upload(const std::vector<float>& v) {
    owned_.emplace_back(v.size() * 4);
    CUDA_CHECK(cudaMemcpy(owned_.back().get(), v.data(), v.size() * 4, cudaMemcpyHostToDevice));
    return owned_.back().as<float>();
}

Qwen35MoeCuda::Qwen35MoeCuda(const ModelConfig& config, const DenseWeights& w, ExpertSource& experts,
                             const CudaRunnerOptions& options)
    : config_(config), device_(select_device(options.device)) {
    const ModelConfig& c = config_;
    if (c.linear_conv_kernel > 8) fail(ErrorKind::BadModel, "the CUDA backend supports conv kernels up to 8, model has {}", c.linear_conv_kernel);
    if (c.head_dim > 512) fail(ErrorKind::BadModel, "the CUDA backend supports head_dim up to 512, model has {}", c.head_dim);
    if (c.linear_key_head_dim > 256) fail(ErrorKind::BadModel, "the CUDA backend supports DeltaNet key heads up to 256, model has {}", c.linear_key_head_dim);
    embed_ = upload(w.embed);
    lm_head_ = upload(w.lm_head);
    final_norm_ = upload(w.final_norm);
    layers_.resize(w.layers.size());
    for (size_t l = 0; l < w.layers.size(); ++l) {
        const LayerWeights& L = w.layers[l];
        DLayer& D = layers_[l];
        D.kind = L.kind;
        D.input_norm = upload(L.input_norm);
        D.post_norm = upload(L.post_norm);
        if (L.kind == LayerKind::Attention) {
            D.attention = {upload(L.attention.q_proj), upload(L.attention.k_proj), upload(L.attention.v_proj),
                           upload(L.attention.o_proj), upload(L.attention.q_norm), upload(L.attention.k_norm)};
        } else {
            const DeltaNetWeights& d = L.deltanet;
            D.deltanet = {upload(d.in_proj_qkv), upload(d.in_proj_z), upload(d.in_proj_b), upload(d.in_proj_a),
                          upload(d.out_proj), upload(d.conv1d), upload(d.A_log), upload(d.dt_bias), upload(d.norm)};
        }
        D.router = upload(L.moe.router);
        D.has_shared = L.moe.has_shared;
        if (D.has_shared) {
            D.shared_gate_proj = upload(L.moe.shared.gate);
            D.shared_up = upload(L.moe.shared.up);
            D.shared_down = upload(L.moe.shared.down);
            D.shared_gate = upload(L.moe.shared_gate);
        }
    }
    experts_ = std::make_unique<ExpertCache>(c, experts, ExpertCacheOptions{options.vram_bytes, options.host_bytes},
                                             stream_.get());
    scratch_.resize(kScratchCount);
    if (const char* env = std::getenv("FLASHMOE_CUDA_GRAPHS")) use_graphs_ = std::string(env) != "0";
    if (const char* env = std::getenv("FLASHMOE_CUDA_PREFETCH")) prefetch_ = std::string(env) != "0";
    if (const char* env = std::getenv("FLASHMOE_CUDA_PROFILE")) profile_ = std::string(env) != "0";
    if (profile_) use_graphs_ = false;  // events between kernels; graphs would hide them
    // The shared experts as one-entry expert tables (their single-token path runs the routed kernels).
    std::vector<ExpertJob> shared(layers_.size());
    for (size_t l = 0; l < layers_.size(); ++l) {
        shared[l].gate = layers_[l].shared_gate_proj;
        shared[l].up = layers_[l].shared_up;
        shared[l].down = layers_[l].shared_down;
    }
    d_shared_table_.reserve(shared.size() * sizeof(ExpertJob));
    CUDA_CHECK(cudaMemcpy(d_shared_table_.get(), shared.data(), shared.size() * sizeof(ExpertJob), cudaMemcpyHostToDevice));
    const int32_t zero = 0;
    const float one = 1.0f;
    d_shared_misc_.reserve(8);
    CUDA_CHECK(cudaMemcpy(d_shared_misc_.get(), &zero, 4, cudaMemcpyHostToDevice));
    CUDA_CHECK(cudaMemcpy(d_shared_misc_.as<uint8_t>() + 4, &one, 4, cudaMemcpyHostToDevice));
}

Qwen35MoeCuda::~Qwen35MoeCuda() {
    cudaStreamSynchronize(stream_.get());
    if (graph_) cudaGraphExecDestroy(graph_);
    if (profile_) {
        std::vector<std::pair<std::string, std::pair<double, uint64_t>>> rows(prof_totals_.begin(), prof_totals_.end());
        std::sort(rows.begin(), rows.end(), [](auto& a, auto& b) { return a.second.first > b.second.first; });
        std::fprintf(stderr, "FLASHMOE_CUDA_PROFILE: time between consecutive marks on the stream, by op\n");
        for (auto& [name, v] : rows)
            std::fprintf(stderr, "PROFILE %-28s %10.3f ms total %8llu calls %9.2f us/call\n", name.c_str(), v.first,
                         (unsigned long long)v.second, v.first * 1e3 / double(v.second));
    }
    for (cudaEvent_t e : prof_events_) cudaEventDestroy(e);
}

void Qwen35MoeCuda::prof(const char* name) {
    if (!profile_) return;
    if (prof_used_ == prof_events_.size()) {
        cudaEvent_t e;
        CUDA_CHECK(cudaEventCreate(&e));
        prof_events_.push_back(e);
        prof_names_.push_back(nullptr);
    }
    CUDA_CHECK(cudaEventRecord(prof_events_[prof_used_], stream_.get()));
    prof_names_[prof_used_] = name;
    ++prof_used_;
}

void Qwen35MoeCuda::prof_collect(int64_t n) {
    if (!profile_ || prof_used_ == 0) return;
    CUDA_CHECK(cudaStreamSynchronize(stream_.get()));
    const std::string prefix = n == 1 ? "decode " : "prefill ";
    for (size_t i = 1; i < prof_used_; ++i) {
        float ms = 0;
        CUDA_CHECK(cudaEventElapsedTime(&ms, prof_events_[i - 1], prof_events_[i]));
        auto& t = prof_totals_[prefix + prof_names_[i]];
        t.first += ms;
        t.second += 1;
    }
    prof_used_ = 0;
}

void Qwen35MoeCuda::make_resident() {
    resident_checked_ = true;
    if (!experts_->holds_all()) return;
    experts_->load_all();
    const ModelConfig& c = config_;
    // Per layer: its experts, then its shared expert (entry num_experts; empty without one).
    const int64_t row = c.num_experts + 1;
    std::vector<ExpertJob> table(size_t(c.num_layers * row));
    resident_tensor_cores_.clear();
    for (int64_t l = 0; l < c.num_layers; ++l) {
        bool tensor_cores = true;
        for (int64_t e = 0; e < c.num_experts; ++e) {
            ExpertMats m = experts_->resident(l, e);
            ExpertJob& j = table[size_t(l * row + e)];
            j.gate = m.gate;
            j.up = m.up;
            j.down = m.down;
            tensor_cores = tensor_cores && tensor_cores_take(j);
        }
        resident_tensor_cores_.push_back(tensor_cores);
        const DLayer& D = layers_[size_t(l)];
        if (D.has_shared) {
            ExpertJob& j = table[size_t(l * row + c.num_experts)];
            j.gate = D.shared_gate_proj;
            j.up = D.shared_up;
            j.down = D.shared_down;
        }
    }
    d_table_.reserve(table.size() * sizeof(ExpertJob));
    CUDA_CHECK(cudaMemcpy(d_table_.get(), table.data(), table.size() * sizeof(ExpertJob), cudaMemcpyHostToDevice));
    resident_ = true;
}

std::unique_ptr<ModelState> Qwen35MoeCuda::new_state() const {
    return std::make_unique<CudaSequenceState>(config_, device_);
}

void Qwen35MoeCuda::grow(DeviceBuffer& b, size_t bytes) {
    if (b.get() && b.bytes() >= bytes) return;
    CUDA_CHECK(cudaStreamSynchronize(stream_.get()));  // the old buffer may still be in use
    b.reserve(bytes);
    ++buffer_generation_;
}

void Qwen35MoeCuda::grow(PinnedBuffer& b, size_t bytes) {
    if (b.get() && b.bytes() >= bytes) return;
    CUDA_CHECK(cudaStreamSynchronize(stream_.get()));
    b.reserve(bytes);
    ++buffer_generation_;
}

void Qwen35MoeCuda::grow_shared_batch(int64_t n) {
    if (n <= shared_batch_tokens_) return;
    // [job | slot list [tokens] | ids [tokens] of 0 | weights [tokens] of 1]
    grow(d_shared_batch_, sizeof(ExpertJob) + size_t(n) * 12);
    shared_batch_tokens_ = n;
    uint8_t* ids = d_shared_batch_.as<uint8_t>() + sizeof(ExpertJob) + size_t(n) * 4;
    const std::vector<float> ones(size_t(n), 1.0f);
    CUDA_CHECK(cudaMemset(ids, 0, size_t(n) * 4));
    CUDA_CHECK(cudaMemcpy(ids + size_t(n) * 4, ones.data(), size_t(n) * 4, cudaMemcpyHostToDevice));
}

float* Qwen35MoeCuda::scratch(size_t index, size_t floats) {
    grow(scratch_[index], std::max<size_t>(floats, 1) * 4);
    return scratch_[index].as<float>();
}

// ---- the forward ----

void Qwen35MoeCuda::forward(ModelState& model_state, std::span<const int32_t> tokens, const ForwardOptions& options,
                            std::vector<float>* logits) {
    auto* st = dynamic_cast<CudaSequenceState*>(&model_state);
    if (!st) fail(ErrorKind::Internal, "the CUDA forward was given another backend's state");
    const ModelConfig& c = config_;
    const int64_t n = int64_t(tokens.size());
    if (n == 0) fail(ErrorKind::BadInput, "forward needs at least one token");
    const int64_t k = options.k > 0 ? options.k : c.num_experts_per_tok;
    if (k > c.num_experts) fail(ErrorKind::BadInput, "--k {} is more than the model's {} experts", k, c.num_experts);
    for (int32_t id : tokens) {
        if (id < 0 || id >= c.vocab_size) {
            fail(ErrorKind::BadInput, "token id {} is outside the vocabulary [0, {})", id, c.vocab_size);
        }
    }
    CUDA_CHECK(cudaSetDevice(device_));
    cudaStream_t s = stream_.get();
    if (!resident_checked_) make_resident();
    st->reserve_kv(st->position() + n, s);

    grow(h_position_, 8);
    grow(d_position_, 8);
    grow(h_tokens_, size_t(n) * 4);
    grow(d_tokens_, size_t(n) * 4);
    *h_position_.as<int64_t>() = st->position();
    std::memcpy(h_tokens_.get(), tokens.data(), size_t(n) * 4);
    CUDA_CHECK(cudaMemcpyAsync(d_position_.get(), h_position_.get(), 8, cudaMemcpyHostToDevice, s));
    CUDA_CHECK(cudaMemcpyAsync(d_tokens_.get(), h_tokens_.get(), size_t(n) * 4, cudaMemcpyHostToDevice, s));
    prof_used_ = 0;
    prof("start");

    const bool want_logits = logits && options.logits != LogitsFor::None;
    const int64_t first = !want_logits ? n : options.logits == LogitsFor::All ? 0 : n - 1;
    const int64_t rows = n - first;

    // With every expert resident the routing stays on the device (no host round trip); a decode step
    // is then replayed from a graph once the same configuration has run uncaptured (which sized
    // every buffer).
    const bool device_routing = resident_;
    if (device_routing && n == 1 && use_graphs_) {
        GraphKey key{st->id(), uint64_t(st->kv_capacity()), buffer_generation_, k, first, cuda_int8_activations()};
        if (!(graph_ && key == graph_key_) && key == warm_key_) {
            if (graph_) {
                CUDA_CHECK(cudaGraphExecDestroy(graph_));
                graph_ = nullptr;
            }
            cudaGraph_t graph = nullptr;
            CUDA_CHECK(cudaStreamBeginCapture(s, cudaStreamCaptureModeThreadLocal));
            try {
                run_layers(*st, n, k, true, first);
            } catch (...) {
                cudaStreamEndCapture(s, &graph);
                if (graph) cudaGraphDestroy(graph);
                throw;
            }
            CUDA_CHECK(cudaStreamEndCapture(s, &graph));
            cudaError_t e = cudaGraphInstantiate(&graph_, graph, 0);
            cudaGraphDestroy(graph);
            CUDA_CHECK(e);
            graph_key_ = key;
        }
        if (graph_ && key == graph_key_ && key.buffers == buffer_generation_) {
            CUDA_CHECK(cudaGraphLaunch(graph_, s));
            ++graph_launches_;
        } else {
            run_layers(*st, n, k, true, first);
            // buffers may have grown during the run: the key as they are now
            warm_key_ = GraphKey{st->id(), uint64_t(st->kv_capacity()), buffer_generation_, k, first, key.int8};
        }
    } else {
        run_layers(*st, n, k, device_routing, first);
    }
    st->advance(n);
    prof_collect(n);

    if (!want_logits) {
        CUDA_CHECK(cudaStreamSynchronize(s));
        return;
    }
    const size_t bytes = size_t(rows * c.vocab_size) * 4;
    grow(h_logits_, bytes);
    CUDA_CHECK(cudaMemcpyAsync(h_logits_.get(), scratch_[kLogits].get(), bytes, cudaMemcpyDeviceToHost, s));
    CUDA_CHECK(cudaStreamSynchronize(s));
    logits->resize(size_t(rows * c.vocab_size));
    std::memcpy(logits->data(), h_logits_.get(), bytes);
}

// Everything from the embeddings to the logits rows [logits_from, n) (none when logits_from == n),
// enqueued on the stream; no host synchronisation unless experts must be fetched.
void Qwen35MoeCuda::run_layers(CudaSequenceState& st, int64_t n, int64_t k, bool device_routing, int64_t logits_from) {
    const ModelConfig& c = config_;
    cudaStream_t s = stream_.get();
    const int64_t H = c.hidden_size;
    float* x = scratch(kX, size_t(n * H));
    float* xn = scratch(kXn, size_t(n * H));
    float* mix = scratch(kMix, size_t(n * H));
    embed_rows(embed_, d_tokens_.as<int32_t>(), n, x, s);
    prof("embed");
    const float eps = float(c.rms_norm_eps);
    rmsnorm(x, layers_[0].input_norm, n, H, eps, xn, s);
    prof("norm");
    for (int64_t l = 0; l < c.num_layers; ++l) {
        const DLayer& L = layers_[size_t(l)];
        // The mixer's output goes to mix; the MoE's input is x + mix normalised, and moe_finish adds
        // both to x with the next layer's norm (each residual add fused with a norm).
        if (L.kind == LayerKind::Attention) attention(l, st, n);
        else deltanet(l, st, n);
        moe(l, k, n, device_routing);
        const float* next_norm = l + 1 < c.num_layers ? layers_[size_t(l + 1)].input_norm : nullptr;
        moe_finish(scratch_[kRouted].as<float>(), n, k, L.has_shared ? finish_shared_y_ : nullptr,
                   scratch_[kSharedG].as<float>(), x, mix, next_norm, H, eps, xn, s);
        prof("moe finish + norm");
    }
    const int64_t rows = n - logits_from;
    if (rows <= 0) return;
    rmsnorm(x + logits_from * H, final_norm_, rows, H, eps, xn, s);
    matmul(lm_head_, xn, rows, scratch(kLogits, size_t(rows * c.vocab_size)), s);
    prof("lm_head");
}

void Qwen35MoeCuda::attention(int64_t layer, CudaSequenceState& st, int64_t n) {
    const ModelConfig& c = config_;
    const DAttention& w = layers_[size_t(layer)].attention;
    cudaStream_t s = stream_.get();
    const int64_t nh = c.num_heads, nkv = c.num_kv_heads, hd = c.head_dim;
    const int64_t qdim = nh * hd * 2, kvdim = nkv * hd;
    const float* xn = scratch_[kXn].as<float>();
    float* q = scratch(kQ, size_t(n * qdim));
    float* k = scratch(kK, size_t(n * kvdim));
    float* v = scratch(kV, size_t(n * kvdim));
    const DMat* ws[3] = {&w.q_proj, &w.k_proj, &w.v_proj};
    float* ys[3] = {q, k, v};
    matmul_multi(ws, ys, 3, xn, n, s);
    prof("attn qkv");
    AttentionShape shape{n, st.position(), nh, nkv, hd, c.rotary_dim, float(c.rope_theta), float(c.rms_norm_eps),
                         d_position_.as<int64_t>(), st.kv_capacity()};
    auto& L = st.layers[size_t(layer)];
    attention_prepare(shape, q, k, v, w.q_norm, w.k_norm, L.keys.as<float>(), L.values.as<float>(), s);
    prof("attn prepare+append");
    float* att = scratch(kAtt, size_t(n * nh * hd));
    cuda::attention(shape, q, L.keys.as<float>(), L.values.as<float>(), att, s);
    prof("attn core");
    matmul(w.o_proj, att, n, scratch_[kMix].as<float>(), s);
    prof("attn o_proj");
}

void Qwen35MoeCuda::deltanet(int64_t layer, CudaSequenceState& st, int64_t n) {
    const ModelConfig& c = config_;
    const DDeltaNet& w = layers_[size_t(layer)].deltanet;
    cudaStream_t s = stream_.get();
    const int64_t C = c.linear_conv_dim(), Hv = c.linear_num_value_heads, vd = c.linear_value_dim();
    const float* xn = scratch_[kXn].as<float>();
    float* qkv = scratch(kQkv, size_t(n * C));
    float* z = scratch(kZ, size_t(n * vd));
    float* b = scratch(kB, size_t(n * Hv));
    float* a = scratch(kA, size_t(n * Hv));
    const DMat* ws[4] = {&w.in_proj_qkv, &w.in_proj_z, &w.in_proj_b, &w.in_proj_a};
    float* ys[4] = {qkv, z, b, a};
    matmul_multi(ws, ys, 4, xn, n, s);
    prof("dn in_proj");
    auto& L = st.layers[size_t(layer)];
    float* conv = scratch(kConv, size_t(n * C));
    conv1d_silu(qkv, L.conv.as<float>(), w.conv1d, n, C, c.linear_conv_kernel, conv, s);
    prof("dn conv");
    float* o = scratch(kO, size_t(n * vd));
    DeltaNetArgs args;
    args.qkv = conv;
    args.b = b;
    args.a = a;
    args.A_log = w.A_log;
    args.dt_bias = w.dt_bias;
    args.state = L.recurrent.as<float>();
    args.out = o;
    args.n = n;
    args.conv_dim = C;
    args.value_heads = Hv;
    args.key_heads = c.linear_num_key_heads;
    args.key_dim = c.linear_key_head_dim;
    args.value_dim = c.linear_value_head_dim;
    deltanet_recurrence(args, s);
    prof("dn recurrence");
    gated_rmsnorm(o, z, w.norm, n * Hv, c.linear_value_head_dim, float(c.rms_norm_eps), s);
    prof("dn gated norm");
    matmul(w.out_proj, o, n, scratch_[kMix].as<float>(), s);
    prof("dn out_proj");
}

void Qwen35MoeCuda::moe(int64_t layer, int64_t k, int64_t n, bool device_routing) {
    const ModelConfig& c = config_;
    const DLayer& L = layers_[size_t(layer)];
    cudaStream_t s = stream_.get();
    const int64_t H = c.hidden_size, E = c.num_experts, I = c.moe_intermediate_size;
    float* xn = scratch_[kXn].as<float>();

    // A decode step through the tiers also applies the next layer's router to this layer's router
    // input: its top k (row 1 of probs and ids) guess the next layer's experts, which the cache
    // copies while this layer's experts and the next mixer compute.
    const bool guess = prefetch_ && n == 1 && !device_routing && layer + 1 < c.num_layers;
    const int64_t rows = guess ? 2 : n;
    float* probs = scratch(kProbs, size_t(rows * E));
    float* sg = scratch(kSharedG, size_t(n));
    // matmul_multi gives each matrix the bits of its own product
    const DMat* ws[3] = {&L.router};
    float* ys[3] = {probs};
    int count = 1;
    if (guess) {
        ws[count] = &layers_[size_t(layer + 1)].router;
        ys[count++] = probs + E;
    }
    if (L.has_shared) {
        ws[count] = &L.shared_gate;
        ys[count++] = sg;
    }
    // the MoE's input: x + mix normalised (x itself takes mix in moe_finish)
    rmsnorm(scratch_[kX].as<float>(), L.post_norm, n, H, float(c.rms_norm_eps), xn, s, scratch_[kMix].as<float>());
    prof("norm");
    matmul_multi(ws, ys, count, xn, n, s);
    prof("router matmul");
    const size_t slots = size_t(n * k);
    // A resident decode step runs the shared expert as one more slot of the routed launches (id E
    // of the layer's table, weight 1; token = slot / (k + 1) = 0): the same kernels as
    // shared_expert() uses for one token, so the same bits, two launches fewer.
    const bool shared_slot = device_routing && n == 1 && L.has_shared && c.shared_expert_intermediate_size == I;
    const size_t total = slots + (shared_slot ? 1 : 0);
    const size_t id_rows = size_t(rows * k);  // with the guess: k more
    grow(d_ids_, std::max(total, id_rows) * 4);
    grow(d_weights_, std::max(total, id_rows) * 4);
    router_top_k(probs, rows, E, k, d_ids_.as<int32_t>(), d_weights_.as<float>(), s, shared_slot ? int32_t(E) : -1);
    prof("router top-k");
    finish_shared_y_ = nullptr;
    bool shared_done = false;
    if (device_routing && n > 1) {
        // Grouped by expert on the device, then the kernels the tiers' waves run (the same bits).
        float* routed = scratch(kRouted, slots * size_t(H));
        float* act = scratch(kAct, slots * size_t(I));
        const size_t job_bytes = size_t(E) * sizeof(ExpertJob);
        grow(d_jobs_, job_bytes + slots * 4);
        auto* jobs = d_jobs_.as<ExpertJob>();
        auto* slot_list = reinterpret_cast<int32_t*>(d_jobs_.as<uint8_t>() + job_bytes);
        group_by_expert(d_table_.as<ExpertJob>() + layer * (E + 1), d_ids_.as<int32_t>(), int64_t(slots), E, jobs,
                        slot_list, s);
        // (n bounds every expert's count: a token takes an expert once)
        const MoeBatch batch{jobs, E, n, slot_list, k, H, I, n, !resident_tensor_cores_[size_t(layer)]};
        moe_gate_up(batch, xn, act, s);
        prof("experts gate_up");
        moe_down(batch, act, d_weights_.as<float>(), routed, s);
        prof("experts down");
    } else if (device_routing) {
        float* routed = scratch(kRouted, total * size_t(H));
        float* act = scratch(kAct, total * size_t(I));
        const ExpertJob* table = d_table_.as<ExpertJob>() + layer * (E + 1);
        moe_gate_up_routed(table, d_ids_.as<int32_t>(), int64_t(total), shared_slot ? k + 1 : k, H, I, xn, act, s);
        prof("experts gate_up");
        moe_down_routed(table, d_ids_.as<int32_t>(), int64_t(total), H, I, act, d_weights_.as<float>(), routed, s);
        if (shared_slot) finish_shared_y_ = routed + slots * size_t(H);
        prof("experts down");
    } else {
        // The ids go to the host; one token's shared expert computes while the host waits for them.
        grow(h_ids_, id_rows * 4);
        CUDA_CHECK(cudaMemcpyAsync(h_ids_.get(), d_ids_.get(), id_rows * 4, cudaMemcpyDeviceToHost, s));
        CUDA_CHECK(cudaEventRecord(ids_ready_.get(), s));
        if (n == 1 && L.has_shared) {
            shared_expert(layer, n);
            finish_shared_y_ = scratch_[kSharedY].as<float>();
            shared_done = true;
        }
        // Also: the previous layer's waves have run, so their staging buffers are free again.
        CUDA_CHECK(cudaEventSynchronize(ids_ready_.get()));
        routed_from_cache(layer, k, n);
        // Behind this layer's misses on the copy stream.
        if (guess) experts_->prefetch(layer + 1, std::span<const int32_t>(h_ids_.as<int32_t>() + slots, size_t(k)));
        prof("experts (tiers)");
    }
    if (L.has_shared && !shared_slot && !shared_done) {
        shared_expert(layer, n);
        finish_shared_y_ = scratch_[kSharedY].as<float>();
    }
}

void Qwen35MoeCuda::routed_from_cache(int64_t layer, int64_t k, int64_t n) {
    const ModelConfig& c = config_;
    cudaStream_t s = stream_.get();
    const int64_t H = c.hidden_size, I = c.moe_intermediate_size;
    const float* xn = scratch_[kXn].as<float>();
    const size_t slots = size_t(n * k);

    // Slots grouped by expert, experts in ascending order, slots ascending within an expert (as
    // the CPU forward): expert ids[j] serves order[first[j], first[j + 1]).
    const int32_t* chosen = h_ids_.as<int32_t>();
    std::vector<std::pair<int32_t, int32_t>> by_expert(slots);
    for (size_t i = 0; i < slots; ++i) by_expert[i] = {chosen[i], int32_t(i)};
    std::sort(by_expert.begin(), by_expert.end());
    std::vector<int32_t> ids, order(slots);
    std::vector<size_t> first;
    for (size_t i = 0; i < slots; ++i) {
        order[i] = by_expert[i].second;
        if (i == 0 || by_expert[i].first != by_expert[i - 1].first) {
            ids.push_back(by_expert[i].first);
            first.push_back(i);
        }
    }
    first.push_back(slots);

    float* routed = scratch(kRouted, slots * size_t(H));
    float* act = scratch(kAct, slots * size_t(I));
    // Each wave's jobs and slot list go up in one transfer, carved wave by wave (never reused in a
    // layer: a cudaMemcpyAsync may still be reading its part).
    constexpr size_t kStageAlign = 16;
    const size_t stage_bytes = ids.size() * (sizeof(ExpertJob) + kStageAlign) + slots * 4;
    grow(h_jobs_, stage_bytes);
    grow(d_jobs_, stage_bytes);
    size_t used = 0;
    experts_->run(layer, ids, [&](std::span<const size_t> which, std::span<const ExpertMats> mats) {
        uint8_t* host = h_jobs_.as<uint8_t>() + used;
        uint8_t* dev = d_jobs_.as<uint8_t>() + used;
        const size_t job_bytes = which.size() * sizeof(ExpertJob);
        uint8_t* slot_list = host + job_bytes;
        int64_t max_count = 0;
        int32_t filled = 0;
        bool needs_fp32 = false;
        for (size_t j = 0; j < which.size(); ++j) {
            const size_t e = which[j];
            ExpertJob job;
            job.gate = mats[j].gate;
            job.up = mats[j].up;
            job.down = mats[j].down;
            job.slot_begin = filled;
            job.count = int32_t(first[e + 1] - first[e]);
            std::memcpy(slot_list + size_t(filled) * 4, order.data() + first[e], size_t(job.count) * 4);
            filled += job.count;
            max_count = std::max<int64_t>(max_count, job.count);
            needs_fp32 = needs_fp32 || !tensor_cores_take(job);
            std::memcpy(host + j * sizeof(ExpertJob), &job, sizeof job);
        }
        const size_t bytes = job_bytes + size_t(filled) * 4;
        // A decode wave's few KiB ride in a kernel's parameters: a copy would queue behind the
        // expert copies on the copy engine.
        if (bytes <= kParamUploadBytes) upload_small(dev, host, bytes, s);
        else CUDA_CHECK(cudaMemcpyAsync(dev, host, bytes, cudaMemcpyHostToDevice, s));
        used += (bytes + kStageAlign - 1) / kStageAlign * kStageAlign;
        MoeBatch batch{reinterpret_cast<const ExpertJob*>(dev), int64_t(which.size()), max_count,
                       reinterpret_cast<const int32_t*>(dev + job_bytes), k, H, I, n, needs_fp32};
        prof("experts wave set-up");
        moe_gate_up(batch, xn, act, s);
        prof("experts gate_up");
        moe_down(batch, act, d_weights_.as<float>(), routed, s);
        prof("experts down");
    });
}

void Qwen35MoeCuda::shared_expert(int64_t layer, int64_t n) {
    const ModelConfig& c = config_;
    const DLayer& L = layers_[size_t(layer)];
    cudaStream_t s = stream_.get();
    const int64_t H = c.hidden_size;
    const float* xn = scratch_[kXn].as<float>();
    const int64_t S = c.shared_expert_intermediate_size;
    float* g = scratch(kSharedGate, size_t(n * S));
    float* y = scratch(kSharedY, size_t(n * H));
    // (its gate was computed with the router; moe_finish adds the gated output)
    if (n == 1) {
        // The single-token expert kernels over a one-entry table (id 0, weight 1).
        const ExpertJob* table = d_shared_table_.as<ExpertJob>() + layer;
        const int32_t* id0 = d_shared_misc_.as<int32_t>();
        const float* one = reinterpret_cast<const float*>(d_shared_misc_.as<uint8_t>() + 4);
        moe_gate_up_routed(table, id0, 1, 1, H, S, xn, g, s);
        moe_down_routed(table, id0, 1, H, S, g, one, y, s);
    } else {
        // The routed experts' batch kernels over one job that serves every token (gate and up share
        // their activations, SiLU in the epilogue), weights 1.
        const ExpertJob* table = d_shared_table_.as<ExpertJob>() + layer;
        grow_shared_batch(n);
        auto* job = d_shared_batch_.as<ExpertJob>();
        auto* slot_list = reinterpret_cast<int32_t*>(job + 1);
        const int32_t* zeros = slot_list + shared_batch_tokens_;
        const float* ones = reinterpret_cast<const float*>(zeros + shared_batch_tokens_);
        group_by_expert(table, zeros, n, 1, job, slot_list, s);
        const ExpertJob host_job{L.shared_gate_proj, L.shared_up, L.shared_down};
        const MoeBatch batch{job, 1, n, slot_list, 1, H, S, n, !tensor_cores_take(host_job)};
        moe_gate_up(batch, xn, g, s);
        moe_down(batch, g, ones, y, s);
    }
    prof("shared expert");
}

}  // namespace flashmoe::cuda
