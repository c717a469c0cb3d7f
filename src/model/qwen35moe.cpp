#include "model/qwen35moe.h"

#include "kernels/cpu/matmul.h"
#include "ops/cpu_ops.h"
#include "util/error.h"
#include "util/thread_pool.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <map>

namespace flashmoe {

namespace {

void parallel(ThreadPool* pool, int64_t n, const std::function<void(int64_t, int64_t)>& fn) {
    if (pool) pool->parallel_for(n, 1, fn);
    else fn(0, n);
}

}  // namespace

Qwen35Moe::Qwen35Moe(const ModelConfig& config, const DenseWeights& weights, ExpertSource& experts,
                     ThreadPool* pool)
    : config_(config), weights_(weights), experts_(experts), pool_(pool) {}

void Qwen35Moe::forward(ModelState& model_state, std::span<const int32_t> tokens, const ForwardOptions& options,
                        std::vector<float>* logits) {
    auto* cpu_state = dynamic_cast<SequenceState*>(&model_state);
    if (!cpu_state) fail(ErrorKind::Internal, "the CPU forward was given another backend's state");
    SequenceState& state = *cpu_state;
    const ModelConfig& c = config_;
    const int64_t n = int64_t(tokens.size()), H = c.hidden_size;
    if (n == 0) fail(ErrorKind::BadInput, "forward needs at least one token");
    if (int64_t(state.layers.size()) != c.num_layers) fail(ErrorKind::Internal, "sequence state has the wrong layer count");
    const int64_t k = options.k > 0 ? options.k : c.num_experts_per_tok;
    if (k > c.num_experts) {
        fail(ErrorKind::BadInput, "--k {} is more than the model's {} experts", k, c.num_experts);
    }

    std::vector<float> x(size_t(n * H)), xn(size_t(n * H)), mix(size_t(n * H));
    for (int64_t t = 0; t < n; ++t) {
        int32_t id = tokens[size_t(t)];
        if (id < 0 || id >= c.vocab_size) {
            fail(ErrorKind::BadInput, "token id {} is outside the vocabulary [0, {})", id, c.vocab_size);
        }
        dequantize_row(weights_.embed, id, &x[size_t(t * H)]);
    }

    for (int64_t l = 0; l < c.num_layers; ++l) {
        if (options.cancel && options.cancel->load(std::memory_order_relaxed)) throw ForwardCancelled();
        const LayerWeights& L = weights_.layers[size_t(l)];
        const bool prefetch = n == 1 && experts_.wants_prefetch();
        if (prefetch) prefetch_experts(l, k, x.data());
        for (int64_t t = 0; t < n; ++t) cpu::rmsnorm(&x[size_t(t * H)], L.input_norm.data(), H, c.rms_norm_eps, &xn[size_t(t * H)]);
        if (L.kind == LayerKind::Attention) attention(l, state.layers[size_t(l)], state.position(), n, xn.data(), mix.data());
        else deltanet(l, state.layers[size_t(l)], n, xn.data(), mix.data());
        for (size_t i = 0; i < x.size(); ++i) x[i] += mix[i];
        // Guess the next layer's experts before this layer's experts run, so their reads overlap
        // this layer's expert compute too; the guess at the next layer's start adds what it missed.
        if (prefetch && l + 1 < c.num_layers) prefetch_experts(l + 1, k, x.data());

        for (int64_t t = 0; t < n; ++t) cpu::rmsnorm(&x[size_t(t * H)], L.post_norm.data(), H, c.rms_norm_eps, &xn[size_t(t * H)]);
        moe(l, k, n, xn.data(), mix.data());
        for (size_t i = 0; i < x.size(); ++i) x[i] += mix[i];
    }
    state.advance(n);

    if (!logits || options.logits == LogitsFor::None) return;
    const int64_t first = options.logits == LogitsFor::All ? 0 : n - 1;
    const int64_t rows = n - first;
    for (int64_t t = first; t < n; ++t) {
        cpu::rmsnorm(&x[size_t(t * H)], weights_.final_norm.data(), H, c.rms_norm_eps, &xn[size_t((t - first) * H)]);
    }
    logits->resize(size_t(rows * c.vocab_size));
    matmul(weights_.lm_head, xn.data(), rows, logits->data(), pool_);
}

void Qwen35Moe::prefetch_experts(int64_t layer, int64_t k, const float* x) {
    // The residual stream changes little from one block to the next, so a layer's router applied to
    // an earlier point of the stream already names most of the experts it will pick; reading them
    // now overlaps the disk with compute. A wrong guess costs one read, never correctness.
    const ModelConfig& c = config_;
    const MoeWeights& w = weights_.layers[size_t(layer)].moe;
    std::vector<float> xn(static_cast<size_t>(c.hidden_size)), probs(static_cast<size_t>(c.num_experts));
    cpu::rmsnorm(x, weights_.layers[size_t(layer)].post_norm.data(), c.hidden_size, c.rms_norm_eps, xn.data());
    matmul(w.router, xn.data(), 1, probs.data(), pool_);
    std::vector<int32_t> guess(static_cast<size_t>(k));
    cpu::top_k(probs, k, guess.data());
    experts_.prefetch(layer, guess);
}

void Qwen35Moe::attention(int64_t layer, LayerState& st, int64_t position, int64_t n, const float* x, float* out) {
    const ModelConfig& c = config_;
    const AttentionWeights& w = weights_.layers[size_t(layer)].attention;
    const int64_t nh = c.num_heads, nkv = c.num_kv_heads, hd = c.head_dim;
    const int64_t qdim = nh * hd * 2, kvdim = nkv * hd;

    std::vector<float> q(size_t(n * qdim)), k(size_t(n * kvdim)), v(size_t(n * kvdim));
    matmul(w.q_proj, x, n, q.data(), pool_);
    matmul(w.k_proj, x, n, k.data(), pool_);
    matmul(w.v_proj, x, n, v.data(), pool_);

    // Norm and rotate the query halves and the keys; append keys/values to the cache.
    for (int64_t t = 0; t < n; ++t) {
        for (int64_t h = 0; h < nh; ++h) {
            float* qh = &q[size_t(t * qdim + h * 2 * hd)];
            cpu::rmsnorm(qh, w.q_norm.data(), hd, c.rms_norm_eps, qh);
            cpu::rope(qh, c.rotary_dim, position + t, c.rope_theta);
        }
        for (int64_t h = 0; h < nkv; ++h) {
            float* kh = &k[size_t(t * kvdim + h * hd)];
            cpu::rmsnorm(kh, w.k_norm.data(), hd, c.rms_norm_eps, kh);
            cpu::rope(kh, c.rotary_dim, position + t, c.rope_theta);
        }
    }
    st.keys.insert(st.keys.end(), k.begin(), k.end());
    st.values.insert(st.values.end(), v.begin(), v.end());

    // Causal softmax attention with grouped KV heads; the output is gated by sigmoid(gate).
    const int64_t group = nh / nkv;
    const float scale = 1.0f / std::sqrt(float(hd));
    std::vector<float> attn(size_t(n * nh * hd));
    parallel(pool_, n * nh, [&](int64_t begin, int64_t end) {
        std::vector<float> scores;
        for (int64_t job = begin; job < end; ++job) {
            const int64_t t = job / nh, h = job % nh, kvh = h / group;
            const int64_t len = position + t + 1;
            const float* qh = &q[size_t(t * qdim + h * 2 * hd)];
            scores.resize(static_cast<size_t>(len));
            for (int64_t p = 0; p < len; ++p) {
                const float* kp = &st.keys[size_t((p * nkv + kvh) * hd)];
                float s = 0;
                for (int64_t d = 0; d < hd; ++d) s += qh[d] * kp[d];
                scores[size_t(p)] = s * scale;
            }
            cpu::softmax(scores.data(), len);
            float* o = &attn[size_t((t * nh + h) * hd)];
            std::fill(o, o + hd, 0.0f);
            for (int64_t p = 0; p < len; ++p) {
                const float* vp = &st.values[size_t((p * nkv + kvh) * hd)];
                const float a = scores[size_t(p)];
                for (int64_t d = 0; d < hd; ++d) o[d] += a * vp[d];
            }
            const float* gate = qh + hd;
            for (int64_t d = 0; d < hd; ++d) o[d] *= cpu::sigmoid(gate[d]);
        }
    });
    matmul(w.o_proj, attn.data(), n, out, pool_);
}

void Qwen35Moe::deltanet(int64_t layer, LayerState& st, int64_t n, const float* x, float* out) {
    const ModelConfig& c = config_;
    const DeltaNetWeights& w = weights_.layers[size_t(layer)].deltanet;
    const int64_t C = c.linear_conv_dim(), K = c.linear_conv_kernel;
    const int64_t Hv = c.linear_num_value_heads, Hk = c.linear_num_key_heads;
    const int64_t Dk = c.linear_key_head_dim, Dv = c.linear_value_head_dim;
    const int64_t kd = c.linear_key_dim(), vd = c.linear_value_dim();

    std::vector<float> qkv(size_t(n * C)), z(size_t(n * vd)), b(size_t(n * Hv)), a(size_t(n * Hv));
    matmul(w.in_proj_qkv, x, n, qkv.data(), pool_);
    matmul(w.in_proj_z, x, n, z.data(), pool_);
    matmul(w.in_proj_b, x, n, b.data(), pool_);
    matmul(w.in_proj_a, x, n, a.data(), pool_);

    // Causal depthwise convolution over [state (K-1 rows) ; new rows], then SiLU.
    std::vector<float> window(size_t((K - 1 + n) * C));
    std::copy(st.conv.begin(), st.conv.end(), window.begin());
    std::copy(qkv.begin(), qkv.end(), window.begin() + (K - 1) * C);
    parallel(pool_, C, [&](int64_t begin, int64_t end) {
        for (int64_t ch = begin; ch < end; ++ch) {
            const float* taps = &w.conv1d[size_t(ch * K)];
            for (int64_t t = 0; t < n; ++t) {
                float s = 0;
                for (int64_t j = 0; j < K; ++j) s += taps[j] * window[size_t((t + j) * C + ch)];
                qkv[size_t(t * C + ch)] = cpu::silu(s);
            }
        }
    });
    std::copy(window.end() - (K - 1) * C, window.end(), st.conv.begin());

    // Gated delta rule per value head, token by token; then the gated RMSNorm.
    std::vector<float> o(size_t(n * vd));
    const int64_t ratio = Hv / Hk;
    const float q_scale = 1.0f / std::sqrt(float(Dk));
    parallel(pool_, Hv, [&](int64_t begin, int64_t end) {
        std::vector<float> q(static_cast<size_t>(Dk)), k(static_cast<size_t>(Dk)), mem(static_cast<size_t>(Dv));
        for (int64_t h = begin; h < end; ++h) {
            float* S = &st.recurrent[size_t(h * Dk * Dv)];
            const int64_t kh = h / ratio;
            const float A = std::exp(w.A_log[size_t(h)]);
            for (int64_t t = 0; t < n; ++t) {
                const float* row = &qkv[size_t(t * C)];
                std::copy(row + kh * Dk, row + (kh + 1) * Dk, q.begin());
                std::copy(row + kd + kh * Dk, row + kd + (kh + 1) * Dk, k.begin());
                const float* v = row + 2 * kd + h * Dv;
                cpu::l2norm(q.data(), Dk, 1e-6f);
                cpu::l2norm(k.data(), Dk, 1e-6f);
                for (auto& e : q) e *= q_scale;
                const float beta = cpu::sigmoid(b[size_t(t * Hv + h)]);
                const float g = -A * cpu::softplus(a[size_t(t * Hv + h)] + w.dt_bias[size_t(h)]);
                const float decay = std::exp(g);

                std::fill(mem.begin(), mem.end(), 0.0f);
                for (int64_t i = 0; i < Dk; ++i) {
                    float* Si = S + i * Dv;
                    const float ki = k[size_t(i)];
                    for (int64_t j = 0; j < Dv; ++j) {
                        Si[j] *= decay;
                        mem[size_t(j)] += Si[j] * ki;
                    }
                }
                for (int64_t j = 0; j < Dv; ++j) mem[size_t(j)] = (v[j] - mem[size_t(j)]) * beta;  // delta
                float* oh = &o[size_t(t * vd + h * Dv)];
                std::fill(oh, oh + Dv, 0.0f);
                for (int64_t i = 0; i < Dk; ++i) {
                    float* Si = S + i * Dv;
                    const float ki = k[size_t(i)], qi = q[size_t(i)];
                    for (int64_t j = 0; j < Dv; ++j) {
                        Si[j] += ki * mem[size_t(j)];
                        oh[j] += Si[j] * qi;
                    }
                }
                cpu::rmsnorm(oh, w.norm.data(), Dv, c.rms_norm_eps, oh);
                const float* zh = &z[size_t(t * vd + h * Dv)];
                for (int64_t j = 0; j < Dv; ++j) oh[j] *= cpu::silu(zh[j]);
            }
        }
    });
    matmul(w.out_proj, o.data(), n, out, pool_);
}

void Qwen35Moe::moe(int64_t layer, int64_t k, int64_t n, const float* x, float* out) {
    const ModelConfig& c = config_;
    const MoeWeights& w = weights_.layers[size_t(layer)].moe;
    const int64_t H = c.hidden_size, E = c.num_experts;

    // Router: softmax over all experts in fp32, top-k, renormalised over the k.
    std::vector<float> probs(size_t(n * E));
    matmul(w.router, x, n, probs.data(), pool_);
    std::vector<int32_t> chosen(size_t(n * k));
    std::vector<float> weight(size_t(n * k));
    for (int64_t t = 0; t < n; ++t) {
        float* p = &probs[size_t(t * E)];
        cpu::softmax(p, E);
        cpu::top_k({p, size_t(E)}, k, &chosen[size_t(t * k)]);
        float sum = 0;
        for (int64_t j = 0; j < k; ++j) sum += p[chosen[size_t(t * k + j)]];
        for (int64_t j = 0; j < k; ++j) weight[size_t(t * k + j)] = p[chosen[size_t(t * k + j)]] / sum;
    }

    // Group the (token, slot) pairs by expert so that each expert runs once over all its tokens.
    std::map<int32_t, std::vector<int64_t>> by_expert;  // expert -> slots t*k+j, ascending
    for (int64_t s = 0; s < n * k; ++s) by_expert[chosen[size_t(s)]].push_back(s);
    std::vector<int32_t> ids;
    std::vector<const std::vector<int64_t>*> slots;
    for (auto& [e, list] : by_expert) {
        ids.push_back(e);
        slots.push_back(&list);
    }

    // Each slot's expert output lands in its own row, summed in slot order afterwards, so the result
    // does not depend on the order in which experts arrive.
    std::vector<float> routed(size_t(n * k * H));
    const int64_t I = c.moe_intermediate_size;
    experts_.with_experts(layer, ids, [&](size_t i, const ExpertWeights& ew) {
        const auto& list = *slots[i];
        const int64_t m = int64_t(list.size());
        std::vector<float> xin(size_t(m * H)), gate(size_t(m * I)), up(size_t(m * I)), y(size_t(m * H));
        for (int64_t r = 0; r < m; ++r) {
            const int64_t t = list[size_t(r)] / k;
            std::copy(x + t * H, x + (t + 1) * H, &xin[size_t(r * H)]);
        }
        matmul_pair(ew.gate, ew.up, xin.data(), m, gate.data(), up.data(), pool_);
        for (size_t j = 0; j < gate.size(); ++j) gate[j] = cpu::silu(gate[j]) * up[j];
        matmul(ew.down, gate.data(), m, y.data(), pool_);
        for (int64_t r = 0; r < m; ++r) {
            const int64_t s = list[size_t(r)];
            const float wt = weight[size_t(s)];
            float* dst = &routed[size_t(s * H)];
            const float* src = &y[size_t(r * H)];
            for (int64_t d = 0; d < H; ++d) dst[d] = src[d] * wt;
        }
    });

    std::fill(out, out + n * H, 0.0f);
    for (int64_t t = 0; t < n; ++t) {
        float* o = out + t * H;
        for (int64_t j = 0; j < k; ++j) {
            const float* r = &routed[size_t((t * k + j) * H)];
            for (int64_t d = 0; d < H; ++d) o[d] += r[d];
        }
    }

    if (!w.has_shared) return;
    const int64_t S = c.shared_expert_intermediate_size;
    std::vector<float> gate(size_t(n * S)), up(size_t(n * S)), y(size_t(n * H)), g(static_cast<size_t>(n));
    matmul_pair(w.shared.gate, w.shared.up, x, n, gate.data(), up.data(), pool_);
    for (size_t j = 0; j < gate.size(); ++j) gate[j] = cpu::silu(gate[j]) * up[j];
    matmul(w.shared.down, gate.data(), n, y.data(), pool_);
    matmul(w.shared_gate, x, n, g.data(), pool_);
    for (int64_t t = 0; t < n; ++t) {
        const float s = cpu::sigmoid(g[size_t(t)]);
        for (int64_t d = 0; d < H; ++d) out[t * H + d] += s * y[size_t(t * H + d)];
    }
}

}  // namespace flashmoe
