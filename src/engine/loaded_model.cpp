#include "engine/loaded_model.h"

#include "model/cuda/cuda_runner.h"

#include "store/packed_writer.h"
#include "text/chat_template.h"
#include "text/tokenizer.h"
#include "util/error.h"
#include "util/thread_pool.h"

#include <fmt/format.h>

#include <filesystem>
#include <map>

namespace flashmoe {

LoadedModel::LoadedModel() = default;
LoadedModel::~LoadedModel() = default;

const Tokenizer& LoadedModel::tokenizer() {
    std::lock_guard<std::mutex> lock(text_mutex_);
    if (!tokenizer_) {
        if (!std::filesystem::exists(std::filesystem::path(path_) / "tokenizer.json")) {
            fail(ErrorKind::BadModel, "{} has no tokenizer.json: give token ids with --ids instead of text", path_);
        }
        tokenizer_ = std::make_unique<Tokenizer>(Tokenizer::load(path_));
    }
    return *tokenizer_;
}

const ChatTemplate& LoadedModel::chat_template() {
    std::lock_guard<std::mutex> lock(text_mutex_);
    if (!chat_template_) chat_template_ = std::make_unique<ChatTemplate>(ChatTemplate::from_model_dir(path_));
    return *chat_template_;
}

const GenerationDefaults& LoadedModel::generation_defaults() {
    const Tokenizer* tok = nullptr;
    if (std::filesystem::exists(std::filesystem::path(path_) / "tokenizer.json")) tok = &tokenizer();
    std::lock_guard<std::mutex> lock(text_mutex_);
    if (!generation_defaults_) {
        generation_defaults_ = std::make_unique<GenerationDefaults>(load_generation_defaults(path_, config(), tok));
    }
    return *generation_defaults_;
}

Device parse_device(const std::string& text) {
    if (text == "cpu") return Device::Cpu;
    if (text == "cuda") return Device::Cuda;
    if (text == "auto") return Device::Auto;
    fail(ErrorKind::BadInput, "--device: '{}' is not one of cpu, cuda, auto", text);
}

#ifndef FLASHMOE_HAS_CUDA
int cuda_device_count() { return 0; }
std::unique_ptr<ModelRunner> make_cuda_runner(const ModelConfig&, const DenseWeights&, ExpertSource&,
                                              const CudaRunnerOptions&) {
    fail(ErrorKind::BadInput, "--device cuda: this flashmoe was built without CUDA");
}
#endif

std::unique_ptr<LoadedModel> LoadedModel::open(const std::string& path, const ExpertStoreOptions& options,
                                               const RunnerOptions& runner) {
    auto m = std::make_unique<LoadedModel>();
    m->path_ = path;
    m->device_ = runner.device;
    if (m->device_ == Device::Auto) m->device_ = cuda_device_count() > 0 ? Device::Cuda : Device::Cpu;
    if (m->device_ == Device::Cuda && cuda_device_count() == 0) {
        fail(ErrorKind::BadInput, "--device cuda: no CUDA device found");
    }
    ExpertStoreOptions store = options;
    CudaRunnerOptions cuda{.device = 0, .vram_bytes = runner.vram_bytes, .host_bytes = options.cache_bytes};
    if (m->device_ == Device::Cuda) store.cache_bytes = std::min(options.cache_bytes, size_t(256) << 20);
    const DenseWeights* dense;
    ExpertSource* experts;
    if (is_packed_model(path)) {
        m->packed_ = PackedModel::open(path, store);
        m->config_ = &m->packed_->config();
        dense = &m->packed_->dense();
        experts = &m->packed_->experts();
    } else {
        m->checkpoint_ = HfCheckpoint::open(path);
        m->config_ = &m->checkpoint_->config();
        dense = &m->checkpoint_->dense();
        experts = &m->checkpoint_->experts();
    }
    if (m->device_ == Device::Cuda) m->forward_ = make_cuda_runner(*m->config_, *dense, *experts, cuda);
    else m->forward_ = std::make_unique<Qwen35Moe>(*m->config_, *dense, *experts, &default_pool());
    return m;
}

std::string LoadedModel::layout_description() const {
    if (packed_) return fmt::format("flashmoe packed v{} (experts streamed from disk)", kPackedVersion);
    return std::string(name_layout_name(checkpoint_->layout()));
}

WeightSummary LoadedModel::summary() const {
    WeightSummary s;
    std::map<std::string, size_t> formats;  // "dtype" -> bytes, over used tensors
    if (packed_) {
        for (auto& [name, t] : packed_->dense_tensors().tensors()) {
            if (name.rfind("__pad.", 0) == 0) continue;
            ++s.tensor_count;
            s.dense_bytes += t.bytes;
        }
        s.tensor_count += size_t(config().num_layers) * 3;  // stacked gate, up, down per layer
        s.expert_bytes = packed_->expert_bytes();
        s.quantization = packed_->manifest().value("info", nlohmann::json::object()).value("quantization", "unknown");
        return s;
    }
    for (auto& [name, t] : checkpoint_->tensors().tensors()) {
        ++s.tensor_count;
        if (name.find("visual.") != std::string::npos || name.rfind("mtp.", 0) == 0 ||
            name.find(".mtp.") != std::string::npos) {
            s.ignored_bytes += t.bytes;
            continue;
        }
        bool expert = name.find(".mlp.experts.") != std::string::npos || name.find(".switch_mlp.") != std::string::npos;
        (expert ? s.expert_bytes : s.dense_bytes) += t.bytes;
        formats[std::string(dtype_name(t.dtype))] += t.bytes;
    }
    const ModelConfig& c = config();
    if (c.quantization) {
        s.quantization = fmt::format("mlx affine {}-bit, group {}", c.quantization->defaults.bits,
                                     c.quantization->defaults.group_size);
        size_t overrides = 0;
        for (auto& [path, q] : c.quantization->overrides) overrides += q ? 1 : 0;
        if (overrides) s.quantization += fmt::format(" ({} per-layer overrides)", overrides);
    } else {
        std::string list;
        for (auto& [dt, bytes] : formats) list += (list.empty() ? "" : ", ") + dt;
        s.quantization = "none (" + list + ")";
    }
    return s;
}

}  // namespace flashmoe
