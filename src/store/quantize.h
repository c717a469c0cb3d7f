// MLX-compatible affine quantisation of weight rows (mx.quantize, mode "affine"), used by
// `flashmoe convert` to turn float checkpoints into packed 4- or 8-bit models. Per group of
// `group_size` consecutive values: the edge of larger magnitude (min or max) is made exact, the
// scale spans max - min over 2^bits - 1 steps (negative when the max is the edge), codes are
// rounded and clamped; scales and biases are stored as bf16. Pure functions, thread-safe.
#pragma once

#include <cstdint>

namespace flashmoe {

// Quantises one row of `cols` values. `codes` receives cols*bits/8 bytes (little-endian bit stream),
// `scales`/`biases` receive cols/group_size bf16 values each. cols must be a multiple of group_size
// and cols*bits a multiple of 32 (callers check; violations are an Error of kind Internal).
void quantize_row_affine(const float* row, int64_t cols, int bits, int group_size, uint8_t* codes, uint16_t* scales,
                         uint16_t* biases);

}  // namespace flashmoe
