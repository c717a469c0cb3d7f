#include "kernels/cuda/cuda_util.h"

#include "kernels/cpu/matmul.h"
#include "util/error.h"

#include <algorithm>
#include <array>
#include <map>
#include <mutex>
#include <set>
#include <utility>
#include <atomic>
#include <cstdlib>
#include <string>

namespace flashmoe::cuda {

void throw_cuda_error(cudaError_t code, const char* call, const char* file, int line) {
    const ErrorKind kind = code == cudaErrorMemoryAllocation ? ErrorKind::OutOfMemory : ErrorKind::Internal;
    throw Error(kind, fmt::format("CUDA call {} failed: {} ({}) at {}:{}", call, cudaGetErrorString(code),
                                  cudaGetErrorName(code), file, line));
}

bool pdl_enabled() {
    static const bool off = [] {
        const char* e = std::getenv("FLASHMOE_CUDA_PDL");
        return e && std::string(e) == "0";
    }();
    if (off) return false;
    static std::array<std::atomic<int>, 64> known{};  // 0 unknown, 1 no, 2 yes
    int dev = 0;
    if (cudaGetDevice(&dev) != cudaSuccess || dev < 0 || dev >= int(known.size())) return false;
    int v = known[size_t(dev)].load(std::memory_order_relaxed);
    if (v == 0) {
        int major = 0;
        v = cudaDeviceGetAttribute(&major, cudaDevAttrComputeCapabilityMajor, dev) == cudaSuccess && major >= 9 ? 2 : 1;
        known[size_t(dev)].store(v, std::memory_order_relaxed);
    }
    return v == 2;
}

bool cuda_int8_activations() { return matmul_activations_for(true) == MatmulActivations::Int8; }

void* stream_scratch(cudaStream_t stream, Scratch purpose, size_t bytes) {
    static std::mutex mutex;
    static auto* buffers = new std::map<std::pair<cudaStream_t, Scratch>, DeviceBuffer>();
    std::lock_guard<std::mutex> lock(mutex);
    DeviceBuffer& b = (*buffers)[{stream, purpose}];
    if (!b.get() || b.bytes() < bytes) {
        CUDA_CHECK(cudaStreamSynchronize(stream));
        b.reserve(std::max(bytes, b.bytes() * 2));
    }
    return b.get();
}

unsigned* stream_counters(cudaStream_t stream, int64_t count) {
    // (a fixed size, so that a captured launch and the uncaptured one before it share the buffer)
    constexpr int64_t kCounters = 4096;
    if (count > kCounters) CUDA_CHECK(cudaErrorInvalidValue);  // more counters than anything needs
    static std::mutex mutex;
    static auto* zeroed = new std::set<cudaStream_t>();
    void* p = stream_scratch(stream, Scratch::Counters, kCounters * sizeof(unsigned));
    std::lock_guard<std::mutex> lock(mutex);
    if (zeroed->insert(stream).second) {
        CUDA_CHECK(cudaMemsetAsync(p, 0, kCounters * sizeof(unsigned), stream));
        CUDA_CHECK(cudaStreamSynchronize(stream));
    }
    return static_cast<unsigned*>(p);
}

int device_count() {
    int n = 0;
    if (cudaGetDeviceCount(&n) != cudaSuccess) {
        cudaGetLastError();  // clear the sticky "no driver" error
        return 0;
    }
    return n;
}

DeviceBuffer::DeviceBuffer(size_t bytes) { reserve(bytes); }

DeviceBuffer::~DeviceBuffer() {
    if (ptr_) cudaFree(ptr_);
}

DeviceBuffer& DeviceBuffer::operator=(DeviceBuffer&& o) noexcept {
    if (this != &o) {
        if (ptr_) cudaFree(ptr_);
        ptr_ = std::exchange(o.ptr_, nullptr);
        bytes_ = std::exchange(o.bytes_, 0);
    }
    return *this;
}

void DeviceBuffer::reserve(size_t bytes) {
    if (bytes <= bytes_ && ptr_) return;
    if (ptr_) CUDA_CHECK(cudaFree(ptr_));
    ptr_ = nullptr;
    bytes_ = 0;
    CUDA_CHECK(cudaMalloc(&ptr_, bytes ? bytes : 1));
    bytes_ = bytes;
}

PinnedBuffer::PinnedBuffer(size_t bytes) { reserve(bytes); }

PinnedBuffer::~PinnedBuffer() {
    if (ptr_) cudaFreeHost(ptr_);
}

PinnedBuffer& PinnedBuffer::operator=(PinnedBuffer&& o) noexcept {
    if (this != &o) {
        if (ptr_) cudaFreeHost(ptr_);
        ptr_ = std::exchange(o.ptr_, nullptr);
        bytes_ = std::exchange(o.bytes_, 0);
    }
    return *this;
}

void PinnedBuffer::reserve(size_t bytes) {
    if (bytes <= bytes_ && ptr_) return;
    if (ptr_) CUDA_CHECK(cudaFreeHost(ptr_));
    ptr_ = nullptr;
    bytes_ = 0;
    CUDA_CHECK(cudaHostAlloc(&ptr_, bytes ? bytes : 1, cudaHostAllocDefault));
    bytes_ = bytes;
}

Stream::Stream() { CUDA_CHECK(cudaStreamCreateWithFlags(&s_, cudaStreamNonBlocking)); }
Stream::~Stream() {
    if (s_) cudaStreamDestroy(s_);
}
void Stream::synchronize() const { CUDA_CHECK(cudaStreamSynchronize(s_)); }

Event::Event() { CUDA_CHECK(cudaEventCreateWithFlags(&e_, cudaEventDisableTiming)); }
Event::~Event() {
    if (e_) cudaEventDestroy(e_);
}

}  // namespace flashmoe::cuda
