#include "store/packed_model.h"

#include "model/binder.h"
#include "store/packed_writer.h"
#include "util/error.h"

#include <filesystem>

namespace flashmoe {

namespace fs = std::filesystem;

std::unique_ptr<PackedModel> PackedModel::open(const std::string& dir, const ExpertStoreOptions& options) {
    auto m = std::make_unique<PackedModel>();
    m->manifest_ = read_packed_manifest(dir);
    const std::string manifest_path = (fs::path(dir) / "model.json").string();
    if (!m->manifest_.contains("config")) fail(ErrorKind::BadModel, "{}: missing field config", manifest_path);
    m->config_ = ModelConfig::from_json(m->manifest_["config"], manifest_path);
    m->dense_tensors_ = SafetensorsSet::open_file((fs::path(dir) / "dense.safetensors").string());
    Binder b(m->dense_tensors_, m->config_);
    m->dense_ = bind_dense(b, m->config_, "model.", "lm_head", true);

    const auto& ex = m->manifest_.value("experts", nlohmann::json::object());
    if (!ex.contains("layout")) fail(ErrorKind::BadModel, "{}: missing field experts.layout", manifest_path);
    ExpertRecordLayout layout = ExpertRecordLayout::from_json(ex["layout"], manifest_path);
    const ModelConfig& c = m->config_;
    const auto& g = layout.matrices[0];
    const auto& d = layout.matrices[2];
    if (g.rows != c.moe_intermediate_size || g.cols != c.hidden_size || d.rows != c.hidden_size ||
        d.cols != c.moe_intermediate_size) {
        fail(ErrorKind::BadModel, "{}: expert records hold [{}, {}] gate matrices but the config needs [{}, {}]",
             manifest_path, g.rows, g.cols, c.moe_intermediate_size, c.hidden_size);
    }
    m->experts_ = std::make_unique<ExpertStore>(dir, c.num_layers, c.num_experts, layout, options);
    return m;
}

size_t PackedModel::expert_bytes() const {
    return size_t(config_.num_layers) * size_t(config_.num_experts) * experts_->layout().record_bytes;
}

}  // namespace flashmoe
