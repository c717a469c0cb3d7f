// Flag parsing shared by the subcommands: token id lists and sampling flags.
#pragma once

#include "engine/sampler.h"

#include <CLI/CLI.hpp>

#include <memory>
#include <optional>

#include <string>
#include <vector>

namespace flashmoe::cli {

// "1,2,3" -> {1, 2, 3}; fails (BadInput) naming the bad entry.
std::vector<int32_t> parse_ids(const std::string& text);

// Sampling flags; those not given fall back to the model's generation_config.json.
struct SamplingFlags {
    std::optional<float> temperature, top_p, min_p, repetition_penalty, presence_penalty, frequency_penalty;
    std::optional<int64_t> top_k;
    std::optional<uint64_t> seed;
};

// --temp --top-p --top-k --min-p --seed --repeat-penalty --presence-penalty --frequency-penalty
void add_sampling_flags(CLI::App* app, SamplingFlags& flags);
// The defaults with every given flag applied; no --seed means a random seed. Validated.
SamplingParams resolve_sampling(const SamplingFlags& flags, SamplingParams defaults);

}  // namespace flashmoe::cli

namespace flashmoe {
class LoadedModel;
}

namespace flashmoe::cli {

// How run/chat/serve/bench open a model: expert I/O and cache, and what to do with a snapshot.
struct ModelFlags {
    std::string io = "page-cache";
    std::string cache = "2GiB";
    int io_threads = 8;
    int threads = 0;  // compute threads; 0 = all cores
    std::string quant = "auto";
    std::string dense_quant = "none";
    bool no_convert = false;
    std::string device = "auto";  // cpu | cuda | auto (cuda when a GPU is present)
    std::string vram = "6GiB";    // CUDA: routed-expert VRAM cache
};

// --io --cache --io-threads --threads --quant --dense-quant --no-convert --device --vram
void add_model_flags(CLI::App* app, ModelFlags& flags);

// Opens `path`: a packed model as is; an HF/MLX snapshot is converted into the packed cache on first
// use (progress on stderr) and the packed copy opened, unless --no-convert keeps it resident.
std::unique_ptr<LoadedModel> open_model(const std::string& path, const ModelFlags& flags);

}  // namespace flashmoe::cli
