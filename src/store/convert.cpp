#include "store/convert.h"

#include "kernels/cpu/matmul.h"
#include "model/hf_checkpoint.h"
#include "store/packed_writer.h"
#include "store/quantize.h"
#include "util/error.h"
#include "util/half.h"
#include "util/thread_pool.h"

#include <fmt/format.h>

#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <functional>

namespace flashmoe {

namespace fs = std::filesystem;

namespace {

DType dense_dtype(WeightFormat f) {
    switch (f) {
        case WeightFormat::F32: return DType::F32;
        case WeightFormat::F16: return DType::F16;
        case WeightFormat::BF16: return DType::BF16;
        case WeightFormat::Affine: return DType::U32;
    }
    return DType::F32;
}

// The dense tensors of a model in packed naming, each with its bytes.
struct DenseItem {
    DenseTensorSpec spec;
    const void* data = nullptr;
    std::vector<uint8_t> owned;  // bytes made here (converted vectors, quantised matrices)
};

class DenseList {
public:
    explicit DenseList(int quant_bits) : quant_bits_(quant_bits) {}

    // `bits`: what a float matrix is quantised to when dense quantisation is on (0 = the list's choice).
    void matrix(const std::string& base, const Matrix& m, int bits = 0) {
        if (bits == 0) bits = quant_bits_;
        if (m.format != WeightFormat::Affine && quant_bits_ > 0 && m.cols % kDenseGroup == 0) {
            quantised(base, m, bits);
            return;
        }
        if (m.format != WeightFormat::Affine) {
            add(base + ".weight", dense_dtype(m.format), {m.rows, m.cols}, m.data);
            return;
        }
        add(base + ".weight", DType::U32, {m.rows, m.cols * m.bits / 32}, m.data);
        add(base + ".scales", m.scale_dtype, {m.rows, m.cols / m.group_size}, m.scales);
        add(base + ".biases", m.scale_dtype, {m.rows, m.cols / m.group_size}, m.biases);
    }
    // `minus_one`: the value is a (1 + w) multiplier stored back as w.
    void vector(const std::string& name, const std::vector<float>& v, std::vector<int64_t> shape, bool minus_one) {
        DenseItem item;
        item.spec = {name, DType::F32, std::move(shape)};
        std::vector<float> values = v;
        if (minus_one)
            for (auto& x : values) x -= 1.0f;
        item.owned.resize(values.size() * sizeof(float));
        std::memcpy(item.owned.data(), values.data(), item.owned.size());
        items.push_back(std::move(item));
    }
    std::vector<DenseItem> items;

private:
    static constexpr int kDenseGroup = 64;

    void add(const std::string& name, DType dtype, std::vector<int64_t> shape, const void* data) {
        DenseItem item;
        item.spec = {name, dtype, std::move(shape)};
        item.data = data;
        items.push_back(std::move(item));
    }
    void quantised(const std::string& base, const Matrix& m, int bits) {
        const int64_t groups = m.cols / kDenseGroup;
        const size_t row_bytes = size_t(m.cols * bits / 8);
        DenseItem w, s, b;
        w.spec = {base + ".weight", DType::U32, {m.rows, m.cols * bits / 32}};
        s.spec = {base + ".scales", DType::BF16, {m.rows, groups}};
        b.spec = {base + ".biases", DType::BF16, {m.rows, groups}};
        w.owned.resize(size_t(m.rows) * row_bytes);
        s.owned.resize(size_t(m.rows * groups) * 2);
        b.owned.resize(size_t(m.rows * groups) * 2);
        default_pool().parallel_for(m.rows, 64, [&](int64_t begin, int64_t end) {
            std::vector<float> row(static_cast<size_t>(m.cols));
            for (int64_t r = begin; r < end; ++r) {
                dequantize_row(m, r, row.data());
                quantize_row_affine(row.data(), m.cols, bits, kDenseGroup, w.owned.data() + size_t(r) * row_bytes,
                                    reinterpret_cast<uint16_t*>(s.owned.data()) + r * groups,
                                    reinterpret_cast<uint16_t*>(b.owned.data()) + r * groups);
            }
        });
        items.push_back(std::move(w));
        items.push_back(std::move(s));
        items.push_back(std::move(b));
    }

    int quant_bits_;
};

DenseList collect_dense(const ModelConfig& c, const DenseWeights& d, int quant_bits) {
    DenseList out(quant_bits);
    const int64_t H = c.hidden_size;
    out.matrix("model.embed_tokens", d.embed);
    out.vector("model.norm.weight", d.final_norm, {H}, true);
    if (!c.tie_word_embeddings) out.matrix("lm_head", d.lm_head);
    for (int64_t i = 0; i < c.num_layers; ++i) {
        const LayerWeights& L = d.layers[size_t(i)];
        std::string p = "model.layers." + std::to_string(i) + ".";
        out.vector(p + "input_layernorm.weight", L.input_norm, {H}, true);
        out.vector(p + "post_attention_layernorm.weight", L.post_norm, {H}, true);
        if (L.kind == LayerKind::Attention) {
            const auto& a = L.attention;
            out.matrix(p + "self_attn.q_proj", a.q_proj);
            out.matrix(p + "self_attn.k_proj", a.k_proj);
            out.matrix(p + "self_attn.v_proj", a.v_proj);
            out.matrix(p + "self_attn.o_proj", a.o_proj);
            out.vector(p + "self_attn.q_norm.weight", a.q_norm, {c.head_dim}, true);
            out.vector(p + "self_attn.k_norm.weight", a.k_norm, {c.head_dim}, true);
        } else {
            const auto& n = L.deltanet;
            std::string q = p + "linear_attn.";
            out.matrix(q + "in_proj_qkv", n.in_proj_qkv);
            out.matrix(q + "in_proj_z", n.in_proj_z);
            out.matrix(q + "in_proj_b", n.in_proj_b);
            out.matrix(q + "in_proj_a", n.in_proj_a);
            out.matrix(q + "out_proj", n.out_proj);
            out.vector(q + "conv1d.weight", n.conv1d, {c.linear_conv_dim(), 1, c.linear_conv_kernel}, false);
            out.vector(q + "A_log", n.A_log, {c.linear_num_value_heads}, false);
            out.vector(q + "dt_bias", n.dt_bias, {c.linear_num_value_heads}, false);
            out.vector(q + "norm.weight", n.norm, {c.linear_value_head_dim}, false);
        }
        std::string mp = p + "mlp.";
        out.matrix(mp + "gate", L.moe.router, 8);
        if (L.moe.has_shared) {
            out.matrix(mp + "shared_expert.gate_proj", L.moe.shared.gate);
            out.matrix(mp + "shared_expert.up_proj", L.moe.shared.up);
            out.matrix(mp + "shared_expert.down_proj", L.moe.shared.down);
            out.matrix(mp + "shared_expert_gate", L.moe.shared_gate, 8);
        }
    }
    return out;
}

ExpertRecordLayout::Storage storage_of(const Matrix& m) {
    ExpertRecordLayout::Storage s;
    s.format = m.format;
    if (m.format == WeightFormat::Affine) {
        s.bits = m.bits;
        s.group_size = m.group_size;
        s.scale_dtype = m.scale_dtype;
    }
    return s;
}

bool same_storage(const ExpertRecordLayout::Storage& a, const ExpertRecordLayout::Storage& b) {
    return a.format == b.format && a.bits == b.bits && a.group_size == b.group_size && a.scale_dtype == b.scale_dtype;
}

// Writes matrix `src` into a record slot laid out as `dst`: a byte copy when the storage matches,
// otherwise through fp32 (quantising or converting to bf16).
void place(const Matrix& src, const RecordMatrix& dst, uint8_t* record) {
    const bool copy = src.format == dst.format &&
                      (src.format != WeightFormat::Affine ||
                       (src.bits == dst.bits && src.group_size == dst.group_size && src.scale_dtype == dst.scale_dtype));
    if (copy) {
        std::memcpy(record + dst.data_offset, src.data, src.data_bytes());
        if (src.format == WeightFormat::Affine) {
            std::memcpy(record + dst.scales_offset, src.scales, src.scale_bytes());
            std::memcpy(record + dst.biases_offset, src.biases, src.scale_bytes());
        }
        return;
    }
    std::vector<float> row(static_cast<size_t>(src.cols));
    Matrix out = dst.view(record);
    for (int64_t r = 0; r < src.rows; ++r) {
        dequantize_row(src, r, row.data());
        uint8_t* data = const_cast<uint8_t*>(static_cast<const uint8_t*>(out.data)) + size_t(r) * out.row_bytes();
        if (dst.format == WeightFormat::Affine) {
            const int64_t groups = src.cols / dst.group_size;
            auto* scales = reinterpret_cast<uint16_t*>(const_cast<void*>(out.scales)) + r * groups;
            auto* biases = reinterpret_cast<uint16_t*>(const_cast<void*>(out.biases)) + r * groups;
            quantize_row_affine(row.data(), src.cols, dst.bits, dst.group_size, data, scales, biases);
        } else if (dst.format == WeightFormat::BF16) {
            for (int64_t c = 0; c < src.cols; ++c) {
                uint16_t h = float_to_bf16(row[size_t(c)]);
                std::memcpy(data + 2 * c, &h, 2);
            }
        } else {
            fail(ErrorKind::Internal, "experts cannot be converted to {}", weight_format_name(dst.format));
        }
    }
}

}  // namespace

void convert_to_packed(const std::string& source_dir, const std::string& out_dir, const ConvertOptions& options) {
    int dense_bits = 0;
    if (options.dense_quant == "q4" || options.dense_quant == "q8") {
        dense_bits = options.dense_quant == "q8" ? 8 : 4;
    } else if (options.dense_quant != "none") {
        fail(ErrorKind::BadInput, "--dense-quant '{}' is not one of none, q8, q4", options.dense_quant);
    }
    auto ck = HfCheckpoint::open(source_dir);
    const ModelConfig& c = ck->config();
    const auto& experts = ck->experts().experts();
    const ExpertWeights& first = experts[0][0];
    const bool source_quantised = first.gate.format == WeightFormat::Affine;

    // Choose how experts are stored.
    std::array<ExpertRecordLayout::Storage, 3> storage;
    std::string quant_text;
    if (options.quant == "auto" && source_quantised) {
        storage = {storage_of(first.gate), storage_of(first.up), storage_of(first.down)};
        quant_text = fmt::format("mlx affine {}-bit group {} (copied)", first.gate.bits, first.gate.group_size);
    } else if (source_quantised) {
        fail(ErrorKind::BadInput, "{} is already quantised; convert copies its bits (leave --quant at auto)", source_dir);
    } else if (options.quant == "auto" || options.quant == "q4" || options.quant == "q8") {
        int bits = options.quant == "q8" ? 8 : 4;
        ExpertRecordLayout::Storage s{WeightFormat::Affine, bits, 64, DType::BF16};
        if (c.hidden_size % 64 != 0 || c.moe_intermediate_size % 64 != 0) {
            fail(ErrorKind::BadInput, "--quant q{}: hidden ({}) and expert intermediate ({}) sizes must be multiples of 64",
                 bits, c.hidden_size, c.moe_intermediate_size);
        }
        storage = {s, s, s};
        quant_text = fmt::format("experts affine {}-bit group 64 (bf16 scales); dense as in the source", bits);
    } else if (options.quant == "bf16") {
        ExpertRecordLayout::Storage s{WeightFormat::BF16, 0, 0, DType::BF16};
        storage = {s, s, s};
        quant_text = "experts bf16; dense as in the source";
    } else {
        fail(ErrorKind::BadInput, "--quant '{}' is not one of auto, q4, q8, bf16", options.quant);
    }
    ExpertRecordLayout layout = ExpertRecordLayout::make(c.hidden_size, c.moe_intermediate_size, storage);
    // Every expert must share one storage when copying bits.
    if (options.quant == "auto" && source_quantised) {
        for (auto& layer : experts)
            for (auto& e : layer)
                if (!same_storage(storage_of(e.gate), storage[0]) || !same_storage(storage_of(e.up), storage[1]) ||
                    !same_storage(storage_of(e.down), storage[2])) {
                    fail(ErrorKind::BadModel, "{}: experts are quantised differently across layers; not supported",
                         source_dir);
                }
    }

    if (dense_bits > 0) {
        if (source_quantised)
            fail(ErrorKind::BadInput, "{} is already quantised; --dense-quant applies to float snapshots", source_dir);
        quant_text = quant_text.substr(0, quant_text.find("; dense as in the source")) +
                     fmt::format("; dense matrices affine {}-bit group 64 (router and shared-expert gate 8-bit)",
                                 dense_bits);
    }
    DenseList dense = collect_dense(c, ck->dense(), dense_bits);
    uint64_t total = uint64_t(c.num_layers) * uint64_t(c.num_experts) * layout.record_bytes, done = 0;
    for (auto& item : dense.items) total += item.spec.bytes();

    PackedWriter writer(out_dir, options.overwrite);
    std::vector<DenseTensorSpec> specs;
    for (auto& item : dense.items) specs.push_back(item.spec);
    writer.declare_dense(specs);
    for (auto& item : dense.items) {
        const void* data = item.owned.empty() ? item.data : item.owned.data();
        writer.write_dense(item.spec.name, data, item.spec.bytes());
        done += item.spec.bytes();
    }
    if (options.progress) options.progress(done, total);

    writer.set_experts(c.num_layers, c.num_experts, layout);
    const int64_t batch = 16;  // experts converted in parallel, then written in order
    std::vector<std::vector<uint8_t>> records(size_t(batch), std::vector<uint8_t>(layout.record_bytes));
    for (int64_t l = 0; l < c.num_layers; ++l) {
        for (int64_t e0 = 0; e0 < c.num_experts; e0 += batch) {
            const int64_t n = std::min(batch, c.num_experts - e0);
            default_pool().parallel_for(n, 1, [&](int64_t b, int64_t end) {
                for (int64_t i = b; i < end; ++i) {
                    auto& rec = records[size_t(i)];
                    std::fill(rec.begin(), rec.end(), 0);
                    const ExpertWeights& ew = experts[size_t(l)][size_t(e0 + i)];
                    place(ew.gate, layout.matrices[0], rec.data());
                    place(ew.up, layout.matrices[1], rec.data());
                    place(ew.down, layout.matrices[2], rec.data());
                }
            });
            for (int64_t i = 0; i < n; ++i) writer.write_expert(l, e0 + i, records[size_t(i)].data());
            done += uint64_t(n) * layout.record_bytes;
            if (options.progress) options.progress(done, total);
        }
    }

    for (const char* name : {"tokenizer.json", "tokenizer_config.json", "chat_template.jinja", "generation_config.json",
                             "special_tokens_map.json"}) {
        fs::path p = fs::path(source_dir) / name;
        if (fs::exists(p)) writer.copy_file(p.string(), name);
    }
    nlohmann::json info = {{"quantization", quant_text},
                           {"source", fs::absolute(source_dir).string()},
                           {"source_layout", std::string(name_layout_name(ck->layout()))}};
    writer.finish(c, info);
}

std::string packed_cache_path(const std::string& source_dir, const std::string& quant, const std::string& dense_quant) {
    fs::path base;
    if (const char* env = std::getenv("FLASHMOE_CACHE"); env && *env) base = env;
    else if (const char* xdg = std::getenv("XDG_CACHE_HOME"); xdg && *xdg) base = fs::path(xdg) / "flashmoe";
    else if (const char* home = std::getenv("HOME"); home && *home) base = fs::path(home) / ".cache" / "flashmoe";
    else base = fs::temp_directory_path() / "flashmoe";
    // Identify the source by its absolute path and the size and time of each file in it.
    fs::path src = fs::absolute(source_dir);
    const std::string variant = dense_quant == "none" ? quant : quant + "-dense-" + dense_quant;
    std::string fingerprint = src.string() + "|" + variant;
    std::vector<std::string> entries;
    std::error_code ec;
    for (auto& e : fs::directory_iterator(src, ec)) {
        if (!e.is_regular_file()) continue;
        auto t = e.last_write_time(ec).time_since_epoch().count();
        entries.push_back(fmt::format("{}:{}:{}", e.path().filename().string(), e.file_size(ec), t));
    }
    std::sort(entries.begin(), entries.end());
    for (auto& s : entries) fingerprint += "|" + s;
    uint64_t h = 1469598103934665603ull;  // FNV-1a
    for (unsigned char ch : fingerprint) h = (h ^ ch) * 1099511628211ull;
    return (base / fmt::format("{}-{}-{:016x}.fmoe", src.filename().string(), variant, h)).string();
}

}  // namespace flashmoe
