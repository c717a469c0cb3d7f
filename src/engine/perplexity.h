// Perplexity over fixed windows: ids[w*window, (w+1)*window) for every whole window, each run from
// an empty state with no prefix; positions 1..window-1 are predicted from their prefix. NLL is the
// mean natural-log loss, perplexity exp(NLL). (The same metric as tools/train_tiny/eval.py.)
#pragma once

#include "model/model_runner.h"

#include <functional>
#include <span>

namespace flashmoe {

struct PerplexityResult {
    int64_t windows = 0;
    int64_t predictions = 0;
    double nll = 0;
    double perplexity = 0;
};

// `progress(done, total)` is called after each window. Fails (BadInput) when ids hold no whole window.
PerplexityResult perplexity(ModelRunner& model, std::span<const int32_t> ids, int64_t window, int64_t k,
                            const std::function<void(int64_t, int64_t)>& progress = {});

}  // namespace flashmoe
