// Converting an HF (float) or MLX (affine-quantised) snapshot into a packed model. Float experts are
// quantised (q4 = MLX affine 4-bit group 64, q8 = 8-bit group 64) or kept as bf16; MLX experts are
// copied bit for bit. Dense matrices are copied as the source stores them, or, from a float source
// with `dense_quant`, quantised too (MLX affine group 64; the router and shared-expert gate at 8 bits,
// as MLX's own 4-bit Qwen3.5 releases keep them; norms and other vectors stay fp32). Writes through
// PackedWriter, so an interrupted conversion leaves no directory under the final name.
// Single caller; uses the default thread pool for quantisation. Errors name the tensor or file.
#pragma once

#include <cstdint>
#include <functional>
#include <string>

namespace flashmoe {

struct ConvertOptions {
    std::string quant = "auto";  // auto (MLX: keep, float: q4) | q4 | q8 | bf16
    std::string dense_quant = "none";  // none | q8 | q4
    bool overwrite = false;
    // Called now and then with bytes written so far and the total.
    std::function<void(uint64_t done, uint64_t total)> progress;
};

void convert_to_packed(const std::string& source_dir, const std::string& out_dir, const ConvertOptions& options);

// Where `run`/`chat`/`serve`/`bench` keep the packed copy of a snapshot they were pointed at:
// $FLASHMOE_CACHE, else $XDG_CACHE_HOME/flashmoe, else ~/.cache/flashmoe; the name identifies the
// source (path, file sizes and times) and the quantisation.
std::string packed_cache_path(const std::string& source_dir, const std::string& quant,
                              const std::string& dense_quant = "none");

}  // namespace flashmoe
