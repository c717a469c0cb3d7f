// Flag parsing shared by the subcommands: token id lists and sampling flags.
#pragma once

#include "engine/sampler.h"

#include <CLI/CLI.hpp>

#include <string>
#include <vector>

namespace flashmoe::cli {

// "1,2,3" -> {1, 2, 3}; fails (BadInput) naming the bad entry.
std::vector<int32_t> parse_ids(const std::string& text);

// --temp --top-p --top-k --min-p --seed --repeat-penalty --presence-penalty --frequency-penalty
void add_sampling_flags(CLI::App* app, SamplingParams& params);

}  // namespace flashmoe::cli
