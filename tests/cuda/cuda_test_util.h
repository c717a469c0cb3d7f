// Helpers for the CUDA tests: skip without a device, device copies of host data and of random
// weight matrices (tests/kernels/kernel_test_util.h), and a reader of device results.
#pragma once

#include "../kernels/kernel_test_util.h"
#include "kernels/cuda/cuda_util.h"
#include "kernels/cuda/dmat.h"

#include <gtest/gtest.h>

#include <memory>
#include <vector>

namespace flashmoe::test {

#define SKIP_WITHOUT_CUDA()                                                        \
    do {                                                                           \
        if (::flashmoe::cuda::device_count() == 0) GTEST_SKIP() << "no CUDA device"; \
    } while (0)

// Device copies that live as long as the holder.
struct DeviceData {
    std::vector<std::unique_ptr<cuda::DeviceBuffer>> owned;

    template <typename T>
    T* put(const std::vector<T>& v) { return static_cast<T*>(put_bytes(v.data(), v.size() * sizeof(T))); }
    void* put_bytes(const void* p, size_t bytes) {
        owned.push_back(std::make_unique<cuda::DeviceBuffer>(bytes));
        if (bytes) CUDA_CHECK(cudaMemcpy(owned.back()->get(), p, bytes, cudaMemcpyHostToDevice));
        return owned.back()->get();
    }
    // Uninitialised device floats, poisoned with NaN so that an unwritten output fails.
    float* floats(size_t count) {
        owned.push_back(std::make_unique<cuda::DeviceBuffer>(count * 4));
        CUDA_CHECK(cudaMemset(owned.back()->get(), 0xff, count * 4));
        return owned.back()->as<float>();
    }
    cuda::DMat put(const Matrix& m) {
        cuda::DMat d;
        d.format = m.format == WeightFormat::F32 ? cuda::kF32 : m.format == WeightFormat::F16 ? cuda::kF16
                 : m.format == WeightFormat::BF16 ? cuda::kBF16 : cuda::kAffine;
        d.bits = m.bits;
        d.group = m.group_size;
        d.scale_dtype = m.scale_dtype == DType::BF16 ? cuda::kBF16 : m.scale_dtype == DType::F16 ? cuda::kF16 : cuda::kF32;
        d.rows = m.rows;
        d.cols = m.cols;
        d.row_bytes = int64_t(m.row_bytes());
        d.data = put_bytes(m.data, m.data_bytes());
        if (m.format == WeightFormat::Affine) {
            d.scales = put_bytes(m.scales, m.scale_bytes());
            d.biases = put_bytes(m.biases, m.scale_bytes());
        }
        return d;
    }
};

template <typename T>
std::vector<T> to_host(const T* d, size_t count) {
    CUDA_CHECK(cudaDeviceSynchronize());
    std::vector<T> v(count);
    CUDA_CHECK(cudaMemcpy(v.data(), d, count * sizeof(T), cudaMemcpyDeviceToHost));
    return v;
}

inline std::vector<float> random_floats(size_t n, std::mt19937_64& rng, float sd = 1.0f) {
    std::normal_distribution<float> normal(0.0f, sd);
    std::vector<float> v(n);
    for (auto& e : v) e = normal(rng);
    return v;
}

}  // namespace flashmoe::test
