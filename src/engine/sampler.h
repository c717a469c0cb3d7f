// Choosing the next token from logits. Temperature 0 is greedy (argmax, lowest id on ties).
// Otherwise, in order: repetition penalty (HF/llama.cpp style: positive logits divided, negative
// multiplied, for every token seen), presence and frequency penalties (OpenAI style, over generated
// tokens), temperature, top-k, top-p (nucleus), min-p, then a draw from a seeded generator, so a
// seed reproduces a generation. One Sampler per sequence; not thread-safe.
#pragma once

#include <cstdint>
#include <random>
#include <span>
#include <unordered_map>
#include <vector>

namespace flashmoe {

struct SamplingParams {
    float temperature = 1.0f;
    float top_p = 1.0f;
    int64_t top_k = 0;  // 0 = off
    float min_p = 0.0f;
    float presence_penalty = 0.0f;
    float frequency_penalty = 0.0f;
    float repetition_penalty = 1.0f;
    uint64_t seed = 0;

    // Fails (BadInput) naming the first field outside its range.
    void validate() const;
};

class Sampler {
public:
    explicit Sampler(const SamplingParams& params);

    // Tokens of the prompt count for the repetition penalty only.
    void add_prompt(std::span<const int32_t> tokens);
    // Picks the next token from `logits` [vocab] (modified in place) and records it.
    int32_t sample(std::span<float> logits);

private:
    SamplingParams params_;
    std::mt19937_64 rng_;
    std::unordered_map<int32_t, int32_t> generated_counts_;
    std::vector<int32_t> seen_;  // prompt + generated, for the repetition penalty
    std::vector<uint8_t> seen_mask_;
};

}  // namespace flashmoe
