// Binding named safetensors tensors to weight views, checking dtype and shape against what the
// model needs; a mismatch is an Error (BadModel) naming the tensor, what was expected and what the
// file has. Dense matrices may be f32/bf16/f16; quantised ones are MLX affine (u32 `.weight` with
// `.scales` and `.biases`), their bits and group size read off the shapes and cross-checked against
// config.json's quantization when present. Views borrow from the SafetensorsSet.
#pragma once

#include "model/config.h"
#include "model/weights.h"
#include "store/safetensors.h"
#include "util/error.h"
#include "util/half.h"

#include <algorithm>
#include <cstring>
#include <string>
#include <vector>

namespace flashmoe {

class Binder {
public:
    Binder(const SafetensorsSet& st, const ModelConfig& cfg) : st_(st), cfg_(cfg) {}

    // A linear layer `base` ("...q_proj"): dense `base.weight` [rows, cols], or affine
    // `base.weight` (u32) + `base.scales` + `base.biases`.
    Matrix linear(const std::string& base, int64_t rows, int64_t cols) const {
        return slice(base, -1, 0, rows, rows, cols);
    }

    // Expert `expert` of a stacked tensor `base.weight` [E, total_rows, ...], rows [row0, row0 + rows).
    Matrix stacked(const std::string& base, int64_t expert, int64_t row0, int64_t rows, int64_t total_rows,
                   int64_t cols) const {
        return slice(base, expert, row0, rows, total_rows, cols);
    }
    // Same for a stacked tensor with no ".weight" suffix (HF fused experts).
    Matrix stacked_raw(const std::string& name, int64_t expert, int64_t row0, int64_t rows, int64_t total_rows,
                       int64_t cols) const {
        const TensorRef& w = st_.get(name);
        check_shape(w, {cfg_.num_experts, total_rows, cols});
        Matrix m = dense_view(w, rows, cols);
        m.data = w.data + (size_t(expert) * size_t(total_rows) + size_t(row0)) * m.row_bytes();
        return m;
    }

    std::vector<float> vector(const std::string& name, int64_t n, bool plus_one) const {
        const TensorRef& t = st_.get(name);
        if (t.numel() != n) {
            fail(ErrorKind::BadModel, "{}: expected {} values, file has {} {} ({})", name, n, dtype_name(t.dtype),
                 t.shape_string(), *t.file);
        }
        std::vector<float> out(static_cast<size_t>(n));
        for (int64_t i = 0; i < n; ++i) out[size_t(i)] = element(t, i);
        if (plus_one)
            for (auto& v : out) v = 1.0f + v;
        return out;
    }

    bool has(const std::string& name) const { return st_.find(name) != nullptr; }

private:
    static float element(const TensorRef& t, int64_t i) {
        const uint8_t* p = t.data + size_t(i) * dtype_size(t.dtype);
        uint16_t h;
        float f;
        switch (t.dtype) {
            case DType::F32: std::memcpy(&f, p, 4); return f;
            case DType::BF16: std::memcpy(&h, p, 2); return bf16_to_float(h);
            case DType::F16: std::memcpy(&h, p, 2); return f16_to_float(h);
            default:
                fail(ErrorKind::BadModel, "{}: dtype {} is not a float type (f32, bf16 or f16) ({})", t.name,
                     dtype_name(t.dtype), *t.file);
        }
    }

    void check_shape(const TensorRef& t, std::vector<int64_t> want) const {
        if (t.shape != want) {
            TensorRef fake;
            fake.shape = want;
            fail(ErrorKind::BadModel, "{}: expected shape {}, file has {} {} ({})", t.name, fake.shape_string(),
                 dtype_name(t.dtype), t.shape_string(), *t.file);
        }
    }

    Matrix dense_view(const TensorRef& w, int64_t rows, int64_t cols) const {
        Matrix m;
        switch (w.dtype) {
            case DType::F32: m.format = WeightFormat::F32; break;
            case DType::BF16: m.format = WeightFormat::BF16; break;
            case DType::F16: m.format = WeightFormat::F16; break;
            default:
                fail(ErrorKind::BadModel, "{}: dtype {} is not supported for a weight matrix (f32, bf16, f16) ({})",
                     w.name, dtype_name(w.dtype), *w.file);
        }
        m.rows = rows;
        m.cols = cols;
        m.data = w.data;
        return m;
    }

    // expert < 0: an unstacked tensor [total_rows, ...].
    Matrix slice(const std::string& base, int64_t expert, int64_t row0, int64_t rows, int64_t total_rows,
                 int64_t cols) const {
        const TensorRef& w = st_.get(base + ".weight");
        std::vector<int64_t> lead;
        if (expert >= 0) lead.push_back(cfg_.num_experts);
        lead.push_back(total_rows);
        const TensorRef* scales = st_.find(base + ".scales");
        if (!scales) {
            auto want = lead;
            want.push_back(cols);
            check_shape(w, want);
            Matrix m = dense_view(w, rows, cols);
            size_t index = (expert >= 0 ? size_t(expert) * size_t(total_rows) : 0) + size_t(row0);
            m.data = w.data + index * m.row_bytes();
            return m;
        }
        const TensorRef& biases = st_.get(base + ".biases");
        if (w.dtype != DType::U32) {
            fail(ErrorKind::BadModel, "{}: quantised weights must be u32, file has {} ({})", w.name,
                 dtype_name(w.dtype), *w.file);
        }
        if (w.shape.size() != lead.size() + 1 || scales->shape.size() != lead.size() + 1) {
            fail(ErrorKind::BadModel, "{}: expected {} dimensions, file has {} ({})", w.name, lead.size() + 1,
                 w.shape_string(), *w.file);
        }
        int64_t words = w.shape.back(), groups = scales->shape.back();
        if (groups <= 0 || cols % groups != 0 || (words * 32) % cols != 0) {
            fail(ErrorKind::BadModel, "{}: {} words and {} groups per row do not fit {} input columns ({})", w.name,
                 words, groups, cols, *w.file);
        }
        Matrix m;
        m.format = WeightFormat::Affine;
        m.rows = rows;
        m.cols = cols;
        m.bits = int(words * 32 / cols);
        m.group_size = int(cols / groups);
        check_quant(base, m.bits, m.group_size);
        auto want_w = lead, want_s = lead;
        want_w.push_back(words);
        want_s.push_back(groups);
        check_shape(w, want_w);
        check_shape(*scales, want_s);
        check_shape(biases, want_s);
        if (scales->dtype != biases.dtype ||
            (scales->dtype != DType::BF16 && scales->dtype != DType::F16 && scales->dtype != DType::F32)) {
            fail(ErrorKind::BadModel, "{}: scales/biases must both be bf16, f16 or f32, file has {} and {}",
                 base, dtype_name(scales->dtype), dtype_name(biases.dtype));
        }
        m.scale_dtype = scales->dtype;
        size_t index = (expert >= 0 ? size_t(expert) * size_t(total_rows) : 0) + size_t(row0);
        m.data = w.data + index * m.row_bytes();
        size_t scale_row = size_t(groups) * dtype_size(m.scale_dtype);
        m.scales = scales->data + index * scale_row;
        m.biases = biases.data + index * scale_row;
        return m;
    }

    // Cross-checks bits/group inferred from shapes against config.json's quantization, if any.
    void check_quant(const std::string& base, int bits, int group) const {
        static const int kBits[] = {2, 3, 4, 5, 6, 8};
        if (std::find(std::begin(kBits), std::end(kBits), bits) == std::end(kBits) ||
            (group != 32 && group != 64 && group != 128)) {
            fail(ErrorKind::BadModel, "{}: {}-bit codes in groups of {} are not supported", base, bits, group);
        }
        if (!cfg_.quantization) return;
        const QuantConfig& q = *cfg_.quantization;
        QuantParams want = q.defaults;
        if (auto it = q.overrides.find(base); it != q.overrides.end() && it->second) want = *it->second;
        if (want.bits != bits || want.group_size != group) {
            fail(ErrorKind::BadModel,
                 "{}: config.json says {}-bit groups of {}, but the tensor shapes give {}-bit groups of {}", base,
                 want.bits, want.group_size, bits, group);
        }
    }

    const SafetensorsSet& st_;
    const ModelConfig& cfg_;
};


// The dense (non-expert) weights named `prefix`layers.N...., `prefix`embed_tokens, `prefix`norm and
// `head` (lm_head). `norms_plus_one`: the five zero-centred norms are stored as w (HF), not 1 + w (MLX).
DenseWeights bind_dense(const Binder& b, const ModelConfig& c, const std::string& prefix, const std::string& head,
                        bool norms_plus_one);

}  // namespace flashmoe
