// Sampling defaults and stop tokens of a model, from its generation_config.json (as transformers
// reads it: do_sample false means greedy) and its tokenizer's end tokens. Flags and request fields
// override these; a missing file gives transformers' own defaults.
#pragma once

#include "engine/sampler.h"

#include <cstdint>
#include <string>
#include <vector>

namespace flashmoe {

class Tokenizer;
struct ModelConfig;

struct GenerationDefaults {
    SamplingParams sampling;
    int64_t max_new_tokens = 512;
    std::vector<int32_t> stop_tokens;  // eos ids of the config, generation_config, <|im_end|>, <|endoftext|>
};

// `tokenizer` may be null (no tokenizer in the model directory). Bad JSON is an Error (BadModel).
GenerationDefaults load_generation_defaults(const std::string& model_dir, const ModelConfig& config,
                                            const Tokenizer* tokenizer);

}  // namespace flashmoe
