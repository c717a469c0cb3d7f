// Where routed experts come from. The forward asks for the experts a layer's router picked and
// runs each one as soon as the source hands it over; the source decides whether that is a view into
// resident memory, a cache hit, or a read from disk. Implementations are used by one forward at a
// time unless they say otherwise. Failures (I/O, bad records) are thrown as flashmoe::Error.
#pragma once

#include "model/weights.h"

#include <cstdint>
#include <functional>
#include <span>

namespace flashmoe {

class ExpertSource {
public:
    virtual ~ExpertSource() = default;

    // Calls `use(i, weights)` once for each i in [0, ids.size()), in any order, with the weights of
    // expert ids[i] of `layer`; the views are valid only during the call. Returns after all calls.
    virtual void with_experts(int64_t layer, std::span<const int32_t> ids,
                              const std::function<void(size_t, const ExpertWeights&)>& use) = 0;

    // A hint that `ids` of `layer` will be asked for soon: a source that reads from disk may start
    // reading them now. Returns at once; never throws for I/O (a failed read is retried on demand).
    virtual void prefetch(int64_t /*layer*/, std::span<const int32_t> /*ids*/) {}
    // Whether prefetch() does anything (so callers can skip computing hints).
    virtual bool wants_prefetch() const { return false; }
};

// Experts that are views into memory the caller keeps alive (e.g. a mapped checkpoint).
class ResidentExperts final : public ExpertSource {
public:
    explicit ResidentExperts(std::vector<std::vector<ExpertWeights>> experts) : experts_(std::move(experts)) {}
    void with_experts(int64_t layer, std::span<const int32_t> ids,
                      const std::function<void(size_t, const ExpertWeights&)>& use) override {
        for (size_t i = 0; i < ids.size(); ++i) use(i, experts_[size_t(layer)][size_t(ids[i])]);
    }
    const std::vector<std::vector<ExpertWeights>>& experts() const { return experts_; }

private:
    std::vector<std::vector<ExpertWeights>> experts_;  // [layer][expert]
};

}  // namespace flashmoe
