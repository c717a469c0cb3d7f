#include "util/half.h"
#include "util/thread_pool.h"

#include <gtest/gtest.h>

#include <atomic>
#include <cmath>
#include <random>
#include <stdexcept>
#include <vector>

using namespace flashmoe;

TEST(Half, Bf16RoundTripIsExactForBf16Values) {
    for (uint32_t h = 0; h < 0x10000; h += 7) {
        float f = bf16_to_float(uint16_t(h));
        if (std::isnan(f)) continue;
        EXPECT_EQ(float_to_bf16(f), uint16_t(h));
    }
}

TEST(Half, Bf16RoundsToNearestEven) {
    EXPECT_EQ(float_to_bf16(1.0f + 1.0f / 256), 0x3f80);          // halfway, even stays
    EXPECT_EQ(float_to_bf16(1.0f + 3.0f / 256), 0x3f82);          // halfway, odd rounds up
    EXPECT_EQ(float_to_bf16(1.0f + 1.0f / 256 + 1e-6f), 0x3f81);  // above halfway
}

TEST(Half, F16RoundTripIsExactForF16Values) {
    for (uint32_t h = 0; h < 0x10000; ++h) {
        if ((h & 0x7c00) == 0x7c00) continue;  // inf / nan
        EXPECT_EQ(float_to_f16(f16_to_float(uint16_t(h))), uint16_t(h)) << h;
    }
    EXPECT_FLOAT_EQ(f16_to_float(0x3c00), 1.0f);
    EXPECT_FLOAT_EQ(f16_to_float(0x0001), std::ldexp(1.0f, -24));
}

TEST(ThreadPool, CoversEveryIndexExactlyOnce) {
    ThreadPool pool(3);
    for (int64_t n : {1, 2, 7, 100, 1001}) {
        std::vector<std::atomic<int>> hits(n);
        pool.parallel_for(n, 3, [&](int64_t b, int64_t e) {
            for (int64_t i = b; i < e; ++i) hits[i]++;
        });
        for (auto& h : hits) EXPECT_EQ(h.load(), 1);
    }
}

TEST(ThreadPool, RethrowsChunkErrors) {
    ThreadPool pool(2);
    EXPECT_THROW(pool.parallel_for(100, 1,
                                   [](int64_t b, int64_t e) {
                                       if (b <= 50 && 50 < e) throw std::runtime_error("boom");
                                   }),
                 std::runtime_error);
    int64_t total = 0;
    pool.parallel_for(10, 100, [&](int64_t b, int64_t e) { total += e - b; });
    EXPECT_EQ(total, 10);
}
