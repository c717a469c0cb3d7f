#include "model/config.h"

#include "util/error.h"
#include "util/mapped_file.h"

namespace flashmoe {

using nlohmann::json;

namespace {

class Fields {
public:
    Fields(const json& obj, const std::string& source, std::string where)
        : obj_(obj), source_(source), where_(std::move(where)) {}

    int64_t integer(const char* name) const {
        const json* v = find(name);
        if (!v) fail(ErrorKind::BadModel, "{}: missing field {}{}", source_, where_, name);
        return as_int(*v, name);
    }
    int64_t integer_or(const char* name, int64_t fallback) const {
        const json* v = find(name);
        return v ? as_int(*v, name) : fallback;
    }
    double number_or(const char* name, double fallback) const {
        const json* v = find(name);
        if (!v) return fallback;
        if (!v->is_number()) fail(ErrorKind::BadModel, "{}: field {}{} must be a number", source_, where_, name);
        return v->get<double>();
    }
    const json* find(const char* name) const {
        auto it = obj_.find(name);
        if (it == obj_.end() || it->is_null()) return nullptr;
        return &*it;
    }

private:
    int64_t as_int(const json& v, const char* name) const {
        if (!v.is_number_integer()) {
            fail(ErrorKind::BadModel, "{}: field {}{} must be an integer, found {}", source_, where_, name, v.dump());
        }
        return v.get<int64_t>();
    }
    const json& obj_;
    const std::string& source_;
    std::string where_;
};

QuantParams parse_quant_params(const json& j, const QuantParams& defaults, const std::string& source,
                               const std::string& path) {
    QuantParams q = defaults;
    if (auto it = j.find("bits"); it != j.end()) {
        if (!it->is_number_integer()) fail(ErrorKind::BadModel, "{}: quantization {}.bits must be an integer", source, path);
        q.bits = it->get<int>();
    }
    if (auto it = j.find("group_size"); it != j.end()) {
        if (!it->is_number_integer()) {
            fail(ErrorKind::BadModel, "{}: quantization {}.group_size must be an integer", source, path);
        }
        q.group_size = it->get<int>();
    }
    if (auto it = j.find("mode"); it != j.end() && it->is_string() && it->get<std::string>() != "affine") {
        fail(ErrorKind::BadModel, "{}: quantization mode '{}' at {} is not supported (only affine)", source,
             it->get<std::string>(), path.empty() ? "top level" : path);
    }
    static const int kBits[] = {2, 3, 4, 5, 6, 8};
    if (std::find(std::begin(kBits), std::end(kBits), q.bits) == std::end(kBits)) {
        fail(ErrorKind::BadModel, "{}: quantization bits {} at {} is not supported (2, 3, 4, 5, 6 or 8)", source, q.bits,
             path.empty() ? "top level" : path);
    }
    if (q.group_size != 32 && q.group_size != 64 && q.group_size != 128) {
        fail(ErrorKind::BadModel, "{}: quantization group_size {} at {} is not supported (32, 64 or 128)", source,
             q.group_size, path.empty() ? "top level" : path);
    }
    return q;
}

QuantConfig parse_quantization(const json& j, const std::string& source) {
    if (!j.is_object()) fail(ErrorKind::BadModel, "{}: 'quantization' must be an object", source);
    QuantConfig qc;
    qc.defaults = parse_quant_params(j, QuantParams{}, source, "");
    if (!j.contains("bits") || !j.contains("group_size")) {
        fail(ErrorKind::BadModel, "{}: 'quantization' needs 'bits' and 'group_size'", source);
    }
    for (auto& [key, value] : j.items()) {
        if (value.is_object()) {
            qc.overrides[key] = parse_quant_params(value, qc.defaults, source, key);
        } else if (value.is_boolean()) {
            if (!value.get<bool>()) qc.overrides[key] = std::nullopt;
        }
    }
    return qc;
}

}  // namespace

ModelConfig ModelConfig::from_json(const json& root, const std::string& source) {
    if (!root.is_object()) fail(ErrorKind::BadModel, "{}: config is not a JSON object", source);
    const json* text = &root;
    std::string where;
    if (auto it = root.find("text_config"); it != root.end() && it->is_object()) {
        text = &*it;
        where = "text_config.";
    }
    Fields f(*text, source, where);
    ModelConfig c;
    c.source = source;

    if (auto* act = f.find("hidden_act"); act && (!act->is_string() || act->get<std::string>() != "silu")) {
        fail(ErrorKind::BadModel, "{}: hidden_act {} is not supported (silu)", source, act->dump());
    }
    c.vocab_size = f.integer("vocab_size");
    c.hidden_size = f.integer("hidden_size");
    c.num_layers = f.integer("num_hidden_layers");
    c.num_heads = f.integer("num_attention_heads");
    c.num_kv_heads = f.integer("num_key_value_heads");
    c.head_dim = f.integer_or("head_dim", c.num_heads > 0 ? c.hidden_size / c.num_heads : 0);
    c.linear_num_key_heads = f.integer("linear_num_key_heads");
    c.linear_num_value_heads = f.integer("linear_num_value_heads");
    c.linear_key_head_dim = f.integer("linear_key_head_dim");
    c.linear_value_head_dim = f.integer("linear_value_head_dim");
    c.linear_conv_kernel = f.integer_or("linear_conv_kernel_dim", 4);
    c.num_experts = f.integer("num_experts");
    c.num_experts_per_tok = f.integer("num_experts_per_tok");
    c.moe_intermediate_size = f.integer("moe_intermediate_size");
    c.shared_expert_intermediate_size = f.integer("shared_expert_intermediate_size");
    c.rms_norm_eps = f.number_or("rms_norm_eps", 1e-6);
    c.max_position_embeddings = f.integer_or("max_position_embeddings", 262144);
    if (auto* t = f.find("tie_word_embeddings")) {
        c.tie_word_embeddings = t->is_boolean() && t->get<bool>();
    } else if (auto it = root.find("tie_word_embeddings"); it != root.end() && it->is_boolean()) {
        c.tie_word_embeddings = it->get<bool>();
    }

    // Rope: `rope_parameters` (transformers 5), `rope_scaling` or flat fields.
    const json* rope = f.find("rope_parameters");
    if (!rope) rope = f.find("rope_scaling");
    double partial = 0.25;
    c.rope_theta = 0;
    if (rope && rope->is_object()) {
        Fields r(*rope, source, where + "rope_parameters.");
        c.rope_theta = r.number_or("rope_theta", 0);
        partial = r.number_or("partial_rotary_factor", partial);
        if (auto* type = r.find("rope_type"); type && type->is_string()) {
            std::string t = type->get<std::string>();
            if (t != "default" && t != "mrope") {
                fail(ErrorKind::BadModel, "{}: rope_type '{}' is not supported (default)", source, t);
            }
        }
    }
    if (c.rope_theta == 0) c.rope_theta = f.number_or("rope_theta", 0);
    partial = f.number_or("partial_rotary_factor", partial);
    if (c.rope_theta <= 0) fail(ErrorKind::BadModel, "{}: missing field {}rope_parameters.rope_theta", source, where);
    c.rotary_dim = int64_t(double(c.head_dim) * partial);

    // Layer kinds.
    if (const json* lt = f.find("layer_types")) {
        if (!lt->is_array()) fail(ErrorKind::BadModel, "{}: layer_types must be a list", source);
        for (auto& v : *lt) {
            std::string s = v.is_string() ? v.get<std::string>() : v.dump();
            if (s == "linear_attention") c.layer_kinds.push_back(LayerKind::DeltaNet);
            else if (s == "full_attention") c.layer_kinds.push_back(LayerKind::Attention);
            else fail(ErrorKind::BadModel, "{}: unknown layer type '{}' in layer_types", source, s);
        }
        if (int64_t(c.layer_kinds.size()) != c.num_layers) {
            fail(ErrorKind::BadModel, "{}: layer_types lists {} layers but num_hidden_layers is {}", source,
                 c.layer_kinds.size(), c.num_layers);
        }
    } else {
        int64_t interval = f.integer_or("full_attention_interval", 4);
        if (interval <= 0) fail(ErrorKind::BadModel, "{}: full_attention_interval must be positive", source);
        for (int64_t i = 0; i < c.num_layers; ++i) {
            c.layer_kinds.push_back((i + 1) % interval == 0 ? LayerKind::Attention : LayerKind::DeltaNet);
        }
    }

    // EOS ids: from the text config or the root.
    const json* eos = f.find("eos_token_id");
    if (!eos) {
        if (auto it = root.find("eos_token_id"); it != root.end() && !it->is_null()) eos = &*it;
    }
    if (eos) {
        if (eos->is_number_integer()) c.eos_token_ids.push_back(eos->get<int64_t>());
        else if (eos->is_array())
            for (auto& e : *eos)
                if (e.is_number_integer()) c.eos_token_ids.push_back(e.get<int64_t>());
    }

    if (auto it = root.find("quantization"); it != root.end() && !it->is_null()) {
        c.quantization = parse_quantization(*it, source);
    } else if (auto it2 = root.find("quantization_config"); it2 != root.end() && it2->is_object() &&
                                                           it2->contains("group_size")) {
        c.quantization = parse_quantization(*it2, source);
    }

    // Structural checks: every divisibility the forward relies on.
    auto require = [&](bool ok, const std::string& what) {
        if (!ok) fail(ErrorKind::BadModel, "{}: {}", source, what);
    };
    require(c.vocab_size > 0 && c.hidden_size > 0 && c.num_layers > 0, "vocab_size, hidden_size and num_hidden_layers must be positive");
    require(c.num_heads > 0 && c.num_kv_heads > 0 && c.num_heads % c.num_kv_heads == 0,
            "num_attention_heads must be a positive multiple of num_key_value_heads");
    require(c.head_dim > 0 && c.rotary_dim >= 0 && c.rotary_dim <= c.head_dim && c.rotary_dim % 2 == 0,
            "head_dim * partial_rotary_factor must be an even number of dims within head_dim");
    require(c.linear_num_key_heads > 0 && c.linear_num_value_heads > 0 &&
                c.linear_num_value_heads % c.linear_num_key_heads == 0,
            "linear_num_value_heads must be a positive multiple of linear_num_key_heads");
    require(c.linear_key_head_dim > 0 && c.linear_value_head_dim > 0, "linear head dims must be positive");
    require(c.linear_conv_kernel >= 1, "linear_conv_kernel_dim must be positive");
    require(c.num_experts > 0 && c.num_experts_per_tok > 0 && c.num_experts_per_tok <= c.num_experts,
            "num_experts_per_tok must be between 1 and num_experts");
    require(c.moe_intermediate_size > 0, "moe_intermediate_size must be positive");
    require(c.shared_expert_intermediate_size >= 0, "shared_expert_intermediate_size must not be negative");
    return c;
}

ModelConfig ModelConfig::from_file(const std::string& path) {
    json j;
    try {
        j = json::parse(read_text_file(path));
    } catch (const json::exception& e) {
        fail(ErrorKind::BadModel, "{}: not valid JSON: {}", path, e.what());
    }
    return from_json(j, path);
}

json ModelConfig::to_json() const {
    json j;
    j["model_type"] = "qwen3_5_moe_text";
    j["vocab_size"] = vocab_size;
    j["hidden_size"] = hidden_size;
    j["num_hidden_layers"] = num_layers;
    json kinds = json::array();
    for (auto k : layer_kinds) kinds.push_back(k == LayerKind::Attention ? "full_attention" : "linear_attention");
    j["layer_types"] = kinds;
    j["num_attention_heads"] = num_heads;
    j["num_key_value_heads"] = num_kv_heads;
    j["head_dim"] = head_dim;
    j["rope_parameters"] = {{"rope_type", "default"},
                            {"rope_theta", rope_theta},
                            {"partial_rotary_factor", double(rotary_dim) / double(head_dim)}};
    j["linear_num_key_heads"] = linear_num_key_heads;
    j["linear_num_value_heads"] = linear_num_value_heads;
    j["linear_key_head_dim"] = linear_key_head_dim;
    j["linear_value_head_dim"] = linear_value_head_dim;
    j["linear_conv_kernel_dim"] = linear_conv_kernel;
    j["num_experts"] = num_experts;
    j["num_experts_per_tok"] = num_experts_per_tok;
    j["moe_intermediate_size"] = moe_intermediate_size;
    j["shared_expert_intermediate_size"] = shared_expert_intermediate_size;
    j["rms_norm_eps"] = rms_norm_eps;
    j["tie_word_embeddings"] = tie_word_embeddings;
    j["max_position_embeddings"] = max_position_embeddings;
    j["eos_token_id"] = eos_token_ids;
    return j;
}

}  // namespace flashmoe
