#include "store/quantize.h"

#include "util/error.h"
#include "util/half.h"

#include <algorithm>
#include <cmath>
#include <cstring>

namespace flashmoe {

void quantize_row_affine(const float* row, int64_t cols, int bits, int group_size, uint8_t* codes, uint16_t* scales,
                         uint16_t* biases) {
    if (group_size <= 0 || cols % group_size != 0 || (cols * bits) % 32 != 0 || bits < 1 || bits > 8) {
        fail(ErrorKind::Internal, "cannot quantise {} columns to {}-bit groups of {}", cols, bits, group_size);
    }
    const float n_bins = float((1 << bits) - 1);
    std::memset(codes, 0, size_t(cols * bits / 8));
    for (int64_t g = 0; g < cols / group_size; ++g) {
        const float* w = row + g * group_size;
        float lo = w[0], hi = w[0];
        for (int i = 1; i < group_size; ++i) {
            lo = std::min(lo, w[i]);
            hi = std::max(hi, w[i]);
        }
        const bool min_is_edge = std::fabs(lo) > std::fabs(hi);
        float scale = std::max((hi - lo) / n_bins, 1e-7f);
        scale = min_is_edge ? scale : -scale;
        const float edge = min_is_edge ? lo : hi;
        const float q0 = std::nearbyint(edge / scale);
        if (q0 != 0) scale = edge / q0;
        const float bias = q0 == 0 ? 0.0f : edge;
        for (int i = 0; i < group_size; ++i) {
            float q = std::clamp(std::nearbyint((w[i] - bias) / scale), 0.0f, n_bins);
            uint64_t bit = uint64_t(g * group_size + i) * uint64_t(bits);
            uint32_t v = uint32_t(q) << (bit % 8);
            for (size_t b = bit / 8; v != 0; ++b, v >>= 8) codes[b] |= uint8_t(v & 0xff);
        }
        scales[g] = float_to_bf16(scale);
        biases[g] = float_to_bf16(bias);
    }
}

}  // namespace flashmoe
