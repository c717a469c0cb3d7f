#include "engine/perplexity.h"

#include "util/error.h"

#include <algorithm>
#include <cmath>

namespace flashmoe {

PerplexityResult perplexity(ModelRunner& model, std::span<const int32_t> ids, int64_t window, int64_t k,
                            const std::function<void(int64_t, int64_t)>& progress) {
    if (window < 2) fail(ErrorKind::BadInput, "the perplexity window must be at least 2 tokens");
    const int64_t windows = int64_t(ids.size()) / window;
    if (windows == 0) fail(ErrorKind::BadInput, "{} ids hold no whole window of {}", ids.size(), window);
    const int64_t V = model.config().vocab_size;
    PerplexityResult r;
    double total = 0;
    std::vector<float> logits;
    for (int64_t w = 0; w < windows; ++w) {
        auto tokens = ids.subspan(size_t(w * window), size_t(window));
        auto state = model.new_state();
        model.forward(*state, tokens, ForwardOptions{.k = k, .logits = LogitsFor::All}, &logits);
        for (int64_t t = 1; t < window; ++t) {
            const float* row = &logits[size_t((t - 1) * V)];
            const float mx = *std::max_element(row, row + V);
            double sum = 0;
            for (int64_t v = 0; v < V; ++v) sum += std::exp(double(row[v]) - mx);
            total += (std::log(sum) + mx) - double(row[tokens[size_t(t)]]);
            ++r.predictions;
        }
        if (progress) progress(w + 1, windows);
    }
    r.windows = windows;
    r.nll = total / double(r.predictions);
    r.perplexity = std::exp(r.nll);
    return r;
}

}  // namespace flashmoe
