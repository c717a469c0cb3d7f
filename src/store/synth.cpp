#include "store/synth.h"

#include "store/packed_format.h"
#include "store/packed_writer.h"
#include "util/error.h"
#include "util/half.h"
#include "util/thread_pool.h"

#include <fmt/format.h>
#include <fcntl.h>
#include <unistd.h>

#include <algorithm>
#include <bit>
#include <chrono>
#include <cerrno>
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <future>
#include <memory>
#include <new>

namespace flashmoe {

namespace fs = std::filesystem;

// Random bytes are produced as 64-bit words and copied out in memory order.
static_assert(std::endian::native == std::endian::little, "synth assumes a little-endian host");

namespace {

using Clock = std::chrono::steady_clock;
using Storage = ExpertRecordLayout::Storage;

// ---- counter-based random numbers -------------------------------------------------------------
// SplitMix64's output function over a counter: draw(key, i) needs no state, so any slice of a
// stream can be generated on any thread and the bytes never depend on how the work was split.

constexpr uint64_t kGolden = 0x9e3779b97f4a7c15ull;

inline uint64_t mix64(uint64_t z) {
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

inline uint64_t draw(uint64_t key, uint64_t i) { return mix64(key + (i + 1) * kGolden); }

inline double unit(uint64_t v) { return double(v >> 11) * 0x1.0p-53; }  // [0, 1)

// The key of one stream: (seed, what, which, part) -> 64 bits.
uint64_t stream_key(uint64_t seed, uint64_t what, uint64_t which, uint64_t part) {
    uint64_t k = mix64(seed + kGolden);
    k = mix64(k ^ (what * 0xd1b54a32d192ed03ull));
    k = mix64(k ^ (which + 0x632be59bd9b4e019ull));
    return mix64(k ^ (part * 0x8cb92ba72f3d8dd7ull + 1));
}

enum StreamTag : uint64_t { kDenseTag = 1, kExpertTag = 2 };
enum StreamPart : uint64_t { kCodes = 0, kScales = 1, kValues = 2 };

// Bytes [begin, end) of stream `key` into base[begin, end).
void fill_bytes(uint8_t* base, uint64_t key, size_t begin, size_t end) {
    size_t pos = begin;
    while (pos < end && pos % 8 != 0) {  // leading partial word
        uint64_t v = draw(key, pos / 8);
        base[pos] = uint8_t(v >> (8 * (pos % 8)));
        ++pos;
    }
    for (; pos + 8 <= end; pos += 8) {
        uint64_t v = draw(key, pos / 8);
        std::memcpy(base + pos, &v, 8);
    }
    if (pos < end) {
        uint64_t v = draw(key, pos / 8);
        std::memcpy(base + pos, &v, end - pos);
    }
}

// ---- matrices ---------------------------------------------------------------------------------

struct MatrixBuffers {
    uint8_t* data = nullptr;
    uint8_t* scales = nullptr;  // affine only
    uint8_t* biases = nullptr;
};

size_t matrix_row_bytes(const Storage& st, int64_t cols) {
    return st.format == WeightFormat::Affine ? size_t(cols) * size_t(st.bits) / 8 : size_t(cols) * 2;
}

// Rows [r0, r1) of a [rows, cols] matrix whose dequantised values have standard deviation ~`stddev`.
// Affine: uniform codes (random bytes are uniform codes for any bit width); each group's scale is
// the base scale times U(0.75, 1.25) so groups differ, and the bias centres the codes on zero.
// BF16: uniform values in [-sqrt(3) std, sqrt(3) std].
void fill_matrix(const Storage& st, int64_t cols, double stddev, uint64_t key, int64_t r0, int64_t r1,
                 const MatrixBuffers& out) {
    const size_t row_bytes = matrix_row_bytes(st, cols);
    if (st.format == WeightFormat::Affine) {
        fill_bytes(out.data, stream_key(key, 0, 0, kCodes), size_t(r0) * row_bytes, size_t(r1) * row_bytes);
        const double levels = std::ldexp(1.0, st.bits);
        const double code_std = std::sqrt((levels * levels - 1) / 12);
        const double base = stddev / code_std, half_range = (levels - 1) / 2;
        const uint64_t skey = stream_key(key, 0, 0, kScales);
        const int64_t groups = cols / st.group_size;
        for (int64_t g = r0 * groups; g < r1 * groups; ++g) {
            uint16_t s = float_to_bf16(float(base * (0.75 + 0.5 * unit(draw(skey, uint64_t(g))))));
            uint16_t b = float_to_bf16(float(-double(bf16_to_float(s)) * half_range));
            std::memcpy(out.scales + 2 * size_t(g), &s, 2);
            std::memcpy(out.biases + 2 * size_t(g), &b, 2);
        }
        return;
    }
    const uint64_t vkey = stream_key(key, 0, 0, kValues);
    const double a = std::sqrt(3.0) * stddev;
    const uint64_t e0 = uint64_t(r0) * uint64_t(cols), e1 = uint64_t(r1) * uint64_t(cols);
    for (uint64_t e = e0; e < e1; ++e) {
        uint64_t v = draw(vkey, e / 4) >> (16 * (e % 4));
        double u = (double(v & 0xffff) + 0.5) / 65536.0;  // (0, 1), symmetric about 1/2
        uint16_t h = float_to_bf16(float((2 * u - 1) * a));
        std::memcpy(out.data + 2 * e, &h, 2);
    }
}

// ---- the dense tensor list ----------------------------------------------------------------------

enum class VectorInit { Uniform, LogUniform };

struct DenseItem {
    std::string name;  // matrices: the base ("model.layers.0.mlp.gate"); vectors: the full name
    bool matrix = false;
    int64_t rows = 0, cols = 0;  // matrices
    Storage storage;
    std::vector<int64_t> shape;  // vectors (f32)
    VectorInit init = VectorInit::Uniform;
    double lo = 0, hi = 0;  // vectors: U(lo, hi), or log(U(lo, hi))
};

Storage matrix_storage(SynthQuant q) {
    Storage st;
    if (q == SynthQuant::BF16) {
        st.format = WeightFormat::BF16;
        return st;
    }
    st.format = WeightFormat::Affine;
    st.bits = q == SynthQuant::Q8 ? 8 : 4;
    st.group_size = 64;
    st.scale_dtype = DType::BF16;
    return st;
}

// The router and the shared-expert gate are 8-bit in MLX's 4-bit releases; they are tiny.
Storage gate_storage(SynthQuant q) { return matrix_storage(q == SynthQuant::Q4 ? SynthQuant::Q8 : q); }

std::vector<DenseItem> dense_items(const ModelConfig& c, SynthQuant q) {
    std::vector<DenseItem> items;
    auto matrix = [&](std::string name, int64_t rows, int64_t cols, Storage st) {
        DenseItem d;
        d.name = std::move(name);
        d.matrix = true;
        d.rows = rows;
        d.cols = cols;
        d.storage = st;
        items.push_back(std::move(d));
    };
    auto vector = [&](std::string name, std::vector<int64_t> shape, double lo, double hi,
                      VectorInit init = VectorInit::Uniform) {
        DenseItem d;
        d.name = std::move(name);
        d.shape = std::move(shape);
        d.lo = lo;
        d.hi = hi;
        d.init = init;
        items.push_back(std::move(d));
    };
    const Storage st = matrix_storage(q), gate = gate_storage(q);
    const int64_t H = c.hidden_size;
    const double norm_w = 0.05;  // zero-centred norms: multiplier 1 +- 5%

    matrix("model.embed_tokens", c.vocab_size, H, st);
    for (int64_t i = 0; i < c.num_layers; ++i) {
        const std::string p = fmt::format("model.layers.{}.", i);
        vector(p + "input_layernorm.weight", {H}, -norm_w, norm_w);
        vector(p + "post_attention_layernorm.weight", {H}, -norm_w, norm_w);
        if (c.layer_kinds[size_t(i)] == LayerKind::Attention) {
            const std::string a = p + "self_attn.";
            matrix(a + "q_proj", c.num_heads * c.head_dim * 2, H, st);
            matrix(a + "k_proj", c.num_kv_heads * c.head_dim, H, st);
            matrix(a + "v_proj", c.num_kv_heads * c.head_dim, H, st);
            matrix(a + "o_proj", H, c.num_heads * c.head_dim, st);
            vector(a + "q_norm.weight", {c.head_dim}, -norm_w, norm_w);
            vector(a + "k_norm.weight", {c.head_dim}, -norm_w, norm_w);
        } else {
            const std::string a = p + "linear_attn.";
            const int64_t Hv = c.linear_num_value_heads, conv = c.linear_conv_dim();
            matrix(a + "in_proj_qkv", conv, H, st);
            matrix(a + "in_proj_z", c.linear_value_dim(), H, st);
            matrix(a + "in_proj_b", Hv, H, st);
            matrix(a + "in_proj_a", Hv, H, st);
            matrix(a + "out_proj", H, c.linear_value_dim(), st);
            // Taps with std 1/sqrt(kernel) keep the conv's output on the scale of its input.
            const double tap = std::sqrt(3.0 / double(c.linear_conv_kernel));
            vector(a + "conv1d.weight", {conv, 1, c.linear_conv_kernel}, -tap, tap);
            vector(a + "A_log", {Hv}, 1.0, 16.0, VectorInit::LogUniform);
            vector(a + "dt_bias", {Hv}, -0.1, 0.1);
            vector(a + "norm.weight", {c.linear_value_head_dim}, 1 - norm_w, 1 + norm_w);  // plain multiplier
        }
        const std::string m = p + "mlp.";
        matrix(m + "gate", c.num_experts, H, gate);
        if (c.shared_expert_intermediate_size > 0) {
            const int64_t S = c.shared_expert_intermediate_size;
            matrix(m + "shared_expert.gate_proj", S, H, st);
            matrix(m + "shared_expert.up_proj", S, H, st);
            matrix(m + "shared_expert.down_proj", H, S, st);
            matrix(m + "shared_expert_gate", 1, H, gate);
        }
    }
    vector("model.norm.weight", {H}, -norm_w, norm_w);
    matrix("lm_head", c.vocab_size, H, st);
    return items;
}

std::vector<DenseTensorSpec> specs_of(const DenseItem& d) {
    if (!d.matrix) return {{d.name, DType::F32, d.shape}};
    if (d.storage.format != WeightFormat::Affine) return {{d.name + ".weight", DType::BF16, {d.rows, d.cols}}};
    const int64_t words = d.cols * d.storage.bits / 32, groups = d.cols / d.storage.group_size;
    return {{d.name + ".weight", DType::U32, {d.rows, words}},
            {d.name + ".scales", d.storage.scale_dtype, {d.rows, groups}},
            {d.name + ".biases", d.storage.scale_dtype, {d.rows, groups}}};
}

// Every matrix must split into whole groups and whole u32 words; presets are built so, but a bad
// preset edit should fail loudly rather than write a model the loader refuses.
void check_shapes(const std::vector<DenseItem>& items, const ModelConfig& c, const Storage& st) {
    auto check = [](const std::string& name, int64_t cols, const Storage& s) {
        if (s.format != WeightFormat::Affine) return;
        if (cols % s.group_size != 0 || (cols * s.bits) % 32 != 0) {
            fail(ErrorKind::Internal, "synth: {} has {} columns, not a multiple of the group size {}", name, cols,
                 s.group_size);
        }
    };
    for (auto& d : items)
        if (d.matrix) check(d.name, d.cols, d.storage);
    check("experts", c.hidden_size, st);
    check("experts", c.moe_intermediate_size, st);
}

// ---- progress ---------------------------------------------------------------------------------

class Progress {
public:
    Progress(std::FILE* out, uint64_t total) : out_(out), total_(total), start_(Clock::now()), last_(start_) {
        tty_ = out_ && ::isatty(::fileno(out_));
    }

    void advance(uint64_t bytes) {
        done_ += bytes;
        if (!out_) return;
        auto now = Clock::now();
        double since = std::chrono::duration<double>(now - last_).count();
        if (since < (tty_ ? 0.25 : 5.0) && done_ < total_) return;
        last_ = now;
        print(now);
    }

    void note(const std::string& text) {
        if (!out_) return;
        if (tty_) fmt::print(out_, "\r\033[K{}", text);
        else fmt::print(out_, "{}\n", text);
        std::fflush(out_);
    }

    void end_line() {
        if (out_ && tty_) {
            fmt::print(out_, "\n");
            std::fflush(out_);
        }
    }

private:
    void print(Clock::time_point now) {
        double secs = std::max(1e-9, std::chrono::duration<double>(now - start_).count());
        double rate = double(done_) / secs;
        double eta = rate > 0 ? double(total_ - std::min(done_, total_)) / rate : 0;
        note(fmt::format("synth: {:.2f} / {:.2f} GB  {:.0f} MB/s  ETA {}:{:02d}", double(done_) / 1e9,
                         double(total_) / 1e9, rate / 1e6, int64_t(eta) / 60, int64_t(eta) % 60));
    }

    std::FILE* out_;
    bool tty_ = false;
    uint64_t total_, done_ = 0;
    Clock::time_point start_, last_;
};

void check_cancel(const std::atomic<bool>* cancel) {
    if (cancel && cancel->load(std::memory_order_relaxed)) {
        fail(ErrorKind::BadInput, "interrupted; the partial output was removed");
    }
}

// ---- expert records -----------------------------------------------------------------------------

struct FreeDeleter {
    void operator()(uint8_t* p) const { std::free(p); }
};
using AlignedBuffer = std::unique_ptr<uint8_t, FreeDeleter>;

AlignedBuffer zeroed_aligned(size_t bytes) {  // bytes: a multiple of kExpertAlignment
    AlignedBuffer b(static_cast<uint8_t*>(std::aligned_alloc(kExpertAlignment, bytes)));
    if (!b) throw std::bad_alloc();
    std::memset(b.get(), 0, bytes);  // record padding stays zero, so files are deterministic
    return b;
}

// The expert files PackedWriter created, written again with O_DIRECT: buffered writes on this kind
// of machine top out at a third of what the disk takes (the page-cache copy is the bottleneck), and
// a benchmark wants a cold cache anyway. Whole runs of records are written at once; their stride is
// a 4 KiB multiple and the buffers are 4 KiB aligned, as O_DIRECT requires. A filesystem that
// refuses O_DIRECT (tmpfs, some network mounts) turns it off: write() then returns false and the
// caller goes through PackedWriter. The writer's own fsync at finish() covers these writes (same inode).
class DirectExpertFiles {
public:
    DirectExpertFiles(std::string dir, bool enabled) : dir_(std::move(dir)), disabled_(!enabled) {}
    ~DirectExpertFiles() { close_fd(); }
    DirectExpertFiles(const DirectExpertFiles&) = delete;
    DirectExpertFiles& operator=(const DirectExpertFiles&) = delete;

    bool write(int64_t layer, uint64_t offset, const uint8_t* data, size_t bytes) {
        if (disabled_) return false;
        const std::string path = dir_ + "/" + expert_file_name(layer);
        if (layer != layer_) {
            close_fd();
            fd_ = ::open(path.c_str(), O_WRONLY | O_DIRECT | O_CLOEXEC);
            if (fd_ < 0 && errno == EINVAL) return disable();
            if (fd_ < 0) fail(ErrorKind::Io, "cannot open {}: {}", path, std::strerror(errno));
            layer_ = layer;
            wrote_ = false;
        }
        while (bytes > 0) {
            ssize_t n = ::pwrite(fd_, data, bytes, off_t(offset));
            if (n < 0 && errno == EINTR) continue;
            if (n < 0 && errno == EINVAL && !wrote_) return disable();
            if (n <= 0) fail(ErrorKind::Io, "cannot write {}: {}", path, n < 0 ? std::strerror(errno) : "no space written");
            wrote_ = true;
            data += n;
            bytes -= size_t(n);
            offset += uint64_t(n);
        }
        return true;
    }

private:
    bool disable() {
        close_fd();
        disabled_ = true;
        return false;
    }
    void close_fd() {
        if (fd_ >= 0) ::close(fd_);
        fd_ = -1;
        layer_ = -1;
    }

    std::string dir_;
    bool disabled_;
    int fd_ = -1;
    int64_t layer_ = -1;
    bool wrote_ = false;
};

// Every record of every layer, in runs of up to ~32 MiB within a layer; the next run is generated on
// the pool while this one is written.
void write_experts(PackedWriter& writer, const ModelConfig& c, const ExpertRecordLayout& layout, const Storage& st,
                   const SynthOptions& options, ThreadPool& pool, Progress& progress) {
    const uint64_t seed = options.seed;
    struct Run {
        int64_t layer, first, count;
    };
    const size_t stride = layout.record_stride;
    const int64_t per_run = std::clamp<int64_t>(int64_t((size_t(32) << 20) / stride), 1, c.num_experts);
    std::vector<Run> runs;
    for (int64_t l = 0; l < c.num_layers; ++l)
        for (int64_t e = 0; e < c.num_experts; e += per_run) runs.push_back({l, e, std::min(per_run, c.num_experts - e)});

    AlignedBuffer buffers[2] = {zeroed_aligned(size_t(per_run) * stride), zeroed_aligned(size_t(per_run) * stride)};
    auto generate = [&](size_t r) {
        const Run run = runs[r];
        uint8_t* base = buffers[r % 2].get();
        pool.parallel_for(run.count, 1, [&](int64_t j0, int64_t j1) {
            for (int64_t j = j0; j < j1; ++j) {
                const uint64_t id = uint64_t(run.layer * c.num_experts + run.first + j);
                uint8_t* rec = base + size_t(j) * stride;
                for (size_t m = 0; m < 3; ++m) {
                    const RecordMatrix& rm = layout.matrices[m];
                    MatrixBuffers mb{rec + rm.data_offset, rec + rm.scales_offset, rec + rm.biases_offset};
                    fill_matrix(st, rm.cols, 1.0 / std::sqrt(double(rm.cols)), stream_key(seed, kExpertTag, id, m), 0,
                                rm.rows, mb);
                }
            }
        });
    };
    DirectExpertFiles direct(writer.temp_dir(), options.direct_io);
    // Declared after the buffers: if a write throws, the pending generation finishes before they go.
    std::future<void> pending = std::async(std::launch::async, generate, size_t(0));
    for (size_t r = 0; r < runs.size(); ++r) {
        pending.get();
        check_cancel(options.cancel);
        if (r + 1 < runs.size()) pending = std::async(std::launch::async, generate, r + 1);
        const Run& run = runs[r];
        const uint8_t* base = buffers[r % 2].get();
        if (!direct.write(run.layer, uint64_t(run.first) * stride, base, size_t(run.count) * stride)) {
            for (int64_t j = 0; j < run.count; ++j) writer.write_expert(run.layer, run.first + j, base + size_t(j) * stride);
        }
        progress.advance(uint64_t(run.count) * layout.record_bytes);
    }
}

// ---- presets ------------------------------------------------------------------------------------

struct Preset {
    const char* name;
    int64_t vocab, hidden, layers, heads, kv_heads, head_dim;
    int64_t v_heads, qk_heads, linear_head_dim;
    int64_t experts, top_k, intermediate, shared;
    bool real;  // a released size: carries the real special-token ids
};

constexpr Preset kPresets[] = {
    {"qwen3.5-35b-a3b", 248320, 2048, 40, 16, 2, 256, 32, 16, 128, 256, 8, 512, 512, true},
    {"qwen3.5-122b-a10b", 248320, 3072, 48, 32, 2, 256, 64, 16, 128, 256, 8, 1024, 1024, true},
    {"qwen3.5-397b-a17b", 248320, 4096, 60, 32, 2, 256, 64, 16, 128, 512, 10, 1024, 1024, true},
    {"tiny", 4096, 256, 4, 4, 2, 64, 4, 2, 64, 32, 4, 128, 128, false},
};

std::string join_presets() {
    std::string s;
    for (auto& p : kPresets) s += (s.empty() ? "" : ", ") + std::string(p.name);
    return s;
}

}  // namespace

SynthQuant parse_synth_quant(const std::string& text) {
    if (text == "q4") return SynthQuant::Q4;
    if (text == "q8") return SynthQuant::Q8;
    if (text == "bf16") return SynthQuant::BF16;
    fail(ErrorKind::BadInput, "--quant '{}' is not one of q4, q8, bf16", text);
}

std::string synth_quant_name(SynthQuant quant) {
    switch (quant) {
        case SynthQuant::Q4: return "q4";
        case SynthQuant::Q8: return "q8";
        case SynthQuant::BF16: return "bf16";
    }
    return "?";
}

std::string synth_quant_description(SynthQuant quant) {
    switch (quant) {
        case SynthQuant::Q4:
            return "affine 4-bit group 64 (bf16 scales), router and shared-expert gate 8-bit, random weights";
        case SynthQuant::Q8: return "affine 8-bit group 64 (bf16 scales), random weights";
        case SynthQuant::BF16: return "bf16 (not quantised), random weights";
    }
    return "?";
}

std::vector<std::string> synth_preset_names() {
    std::vector<std::string> names;
    for (auto& p : kPresets) names.emplace_back(p.name);
    return names;
}

ModelConfig synth_config(const std::string& preset, int64_t layers) {
    const Preset* p = nullptr;
    for (auto& candidate : kPresets)
        if (preset == candidate.name) p = &candidate;
    if (!p) fail(ErrorKind::BadInput, "--preset '{}' is not one of {}", preset, join_presets());
    if (layers < 0 || layers > 1000) fail(ErrorKind::BadInput, "--layers {} is not between 1 and 1000", layers);

    ModelConfig c;
    c.source = "synth preset " + preset;
    c.vocab_size = p->vocab;
    c.hidden_size = p->hidden;
    c.num_layers = layers > 0 ? layers : p->layers;
    for (int64_t i = 0; i < c.num_layers; ++i) {  // full_attention_interval 4: layers 3, 7, 11, ...
        c.layer_kinds.push_back((i + 1) % 4 == 0 ? LayerKind::Attention : LayerKind::DeltaNet);
    }
    c.num_heads = p->heads;
    c.num_kv_heads = p->kv_heads;
    c.head_dim = p->head_dim;
    c.rotary_dim = p->head_dim / 4;  // partial_rotary_factor 0.25
    c.rope_theta = 1e7;
    c.linear_num_key_heads = p->qk_heads;
    c.linear_num_value_heads = p->v_heads;
    c.linear_key_head_dim = p->linear_head_dim;
    c.linear_value_head_dim = p->linear_head_dim;
    c.linear_conv_kernel = 4;
    c.num_experts = p->experts;
    c.num_experts_per_tok = p->top_k;
    c.moe_intermediate_size = p->intermediate;
    c.shared_expert_intermediate_size = p->shared;
    c.rms_norm_eps = 1e-6;
    c.tie_word_embeddings = false;
    c.max_position_embeddings = 262144;
    if (p->real) c.eos_token_ids = {248046, 248044};  // <|im_end|>, <|endoftext|>
    return c;
}

double SynthResult::mb_per_second() const {
    double t = total_seconds();
    return t > 0 ? double(dense_bytes + expert_bytes) / t / 1e6 : 0;
}

SynthResult write_synth_model(const SynthOptions& options, ThreadPool* pool_arg) {
    ThreadPool& pool = pool_arg ? *pool_arg : default_pool();
    const ModelConfig c = synth_config(options.preset, options.layers);
    if (options.out_dir.empty()) fail(ErrorKind::BadInput, "synth needs an output directory (-o)");
    // --force replaces a model, never an arbitrary directory (think `-o ~ --force`).
    if (options.force && fs::exists(options.out_dir) && !is_packed_model(options.out_dir) &&
        !(fs::is_directory(options.out_dir) && fs::is_empty(options.out_dir))) {
        fail(ErrorKind::BadInput, "{} exists and is not a flashmoe packed model; refusing to replace it",
             options.out_dir);
    }

    const Storage st = matrix_storage(options.quant);
    const std::vector<DenseItem> items = dense_items(c, options.quant);
    check_shapes(items, c, st);
    const ExpertRecordLayout layout = ExpertRecordLayout::make(c.hidden_size, c.moe_intermediate_size, {st, st, st});

    std::vector<DenseTensorSpec> specs;
    SynthResult result;
    for (auto& d : items)
        for (auto& s : specs_of(d)) {
            result.dense_bytes += s.bytes();
            specs.push_back(std::move(s));
        }
    const uint64_t records = uint64_t(c.num_layers) * uint64_t(c.num_experts);
    result.expert_bytes = records * layout.record_bytes;
    const uint64_t total = result.dense_bytes + result.expert_bytes;

    PackedWriter writer(options.out_dir, options.force);  // refuses an existing output without force
    {
        std::error_code ec;
        auto space = fs::space(writer.temp_dir(), ec);
        const uint64_t need = total + records * (layout.record_stride - layout.record_bytes);
        if (!ec && space.available < need) {
            fail(ErrorKind::Io, "{} needs {:.2f} GB but only {:.2f} GB are free there", options.out_dir,
                 double(need) / 1e9, double(space.available) / 1e9);
        }
    }

    Progress progress(options.progress, total);
    const auto start = Clock::now();

    // Dense tensors: each generated whole (the writer takes a tensor in one piece), rows in parallel.
    writer.declare_dense(specs);
    std::vector<uint8_t> data, scales, biases;
    for (size_t i = 0; i < items.size(); ++i) {
        check_cancel(options.cancel);
        const DenseItem& d = items[i];
        const uint64_t key = stream_key(options.seed, kDenseTag, i, 0);
        const auto item_specs = specs_of(d);
        if (!d.matrix) {
            std::vector<float> v(item_specs[0].bytes() / 4);
            for (size_t e = 0; e < v.size(); ++e) {
                double u = unit(draw(key, e));
                v[e] = d.init == VectorInit::LogUniform ? float(std::log(d.lo + (d.hi - d.lo) * u))
                                                        : float(d.lo + (d.hi - d.lo) * u);
            }
            writer.write_dense(d.name, v.data(), v.size() * 4);
            progress.advance(v.size() * 4);
            continue;
        }
        data.resize(item_specs[0].bytes());
        MatrixBuffers buf{data.data(), nullptr, nullptr};
        if (item_specs.size() == 3) {
            scales.resize(item_specs[1].bytes());
            biases.resize(item_specs[2].bytes());
            buf.scales = scales.data();
            buf.biases = biases.data();
        }
        const double stddev = 1.0 / std::sqrt(double(d.cols));
        const int64_t grain = std::max<int64_t>(1, int64_t((size_t(1) << 20) / matrix_row_bytes(d.storage, d.cols)));
        pool.parallel_for(d.rows, grain, [&](int64_t r0, int64_t r1) {
            fill_matrix(d.storage, d.cols, stddev, key, r0, r1, buf);
        });
        for (size_t s = 0; s < item_specs.size(); ++s) {
            const auto& bytes = s == 0 ? data : s == 1 ? scales : biases;
            writer.write_dense(item_specs[s].name, bytes.data(), item_specs[s].bytes());
            progress.advance(item_specs[s].bytes());
        }
    }
    std::vector<uint8_t>().swap(data);  // the embedding-sized buffers are not needed any more
    std::vector<uint8_t>().swap(scales);
    std::vector<uint8_t>().swap(biases);

    writer.set_experts(c.num_layers, c.num_experts, layout);
    write_experts(writer, c, layout, st, options, pool, progress);
    result.write_seconds = std::chrono::duration<double>(Clock::now() - start).count();

    progress.note("synth: flushing to disk ...");
    const auto flush_start = Clock::now();
    std::string source = fmt::format("synth --preset {}", options.preset);
    if (options.layers > 0) source += fmt::format(" --layers {}", options.layers);
    source += fmt::format(" --quant {} --seed {}", synth_quant_name(options.quant), options.seed);
    writer.finish(c, {{"quantization", synth_quant_description(options.quant)}, {"source", source}});
    result.flush_seconds = std::chrono::duration<double>(Clock::now() - flush_start).count();
    progress.note(fmt::format("synth: wrote {:.2f} GB in {:.1f} s ({:.0f} MB/s, of which flushing {:.1f} s)",
                              double(total) / 1e9, result.total_seconds(), result.mb_per_second(),
                              result.flush_seconds));
    progress.end_line();
    return result;
}

}  // namespace flashmoe
