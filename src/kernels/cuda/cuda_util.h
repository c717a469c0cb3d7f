// Small RAII owners for CUDA resources (device memory, pinned host memory, streams, events) and the
// one way a failed CUDA call becomes a flashmoe::Error: CUDA_CHECK(call) throws Error (kind
// OutOfMemory for allocation failures, Internal otherwise) naming the call, the CUDA error and the
// source line. Owners are move-only; destructors never throw (a failure while freeing is ignored).
// Thread-safety: none beyond CUDA's own (one owner per thread at a time).
#pragma once

#include <cuda_runtime_api.h>

#include <cstddef>
#include <cstdint>
#include <utility>

namespace flashmoe::cuda {

[[noreturn]] void throw_cuda_error(cudaError_t code, const char* call, const char* file, int line);

#define CUDA_CHECK(call)                                                                   \
    do {                                                                                   \
        cudaError_t cuda_check_code_ = (call);                                             \
        if (cuda_check_code_ != cudaSuccess)                                               \
            ::flashmoe::cuda::throw_cuda_error(cuda_check_code_, #call, __FILE__, __LINE__); \
    } while (0)

// After a kernel launch: a launch error (bad configuration, no device) as an Error naming the kernel.
#define CUDA_CHECK_LAUNCH(name)                                                                \
    do {                                                                                       \
        cudaError_t cuda_launch_code_ = cudaGetLastError();                                    \
        if (cuda_launch_code_ != cudaSuccess)                                                  \
            ::flashmoe::cuda::throw_cuda_error(cuda_launch_code_, "launch of " name, __FILE__, __LINE__); \
    } while (0)

// Whether kernel launches on the current device use programmatic dependent launch (sm_90 and later,
// unless FLASHMOE_CUDA_PDL=0); see kernels/cuda/launch.cuh.
bool pdl_enabled();

// Whether the single-token weight products quantise their activations to int8 (the CPU's
// MatmulActivations::Int8 semantics): matmul_activations_for(true), i.e. the process's chosen mode,
// else int8. Read at launch time (a captured graph keeps the mode it was captured with).
bool cuda_int8_activations();

// Device scratch per (stream, purpose), grown to the largest request so far after synchronising the
// stream (work in flight may still use the old buffer); never shrinks. Never freed: a static
// destructor would run cudaFree after the CUDA runtime has begun its own teardown at exit. A captured
// graph keeps the pointer it saw, so a user must size its scratch with an uncaptured run first.
enum class Scratch { TensorCoreActivations, AttentionSplits, DeltaChunks, Counters };
void* stream_scratch(cudaStream_t stream, Scratch purpose, size_t bytes);
// At least `count` zeroed counters per stream for kernels whose last block to finish does the
// launch's final step (each launch leaves its counters at zero again); the same rules as
// stream_scratch.
unsigned* stream_counters(cudaStream_t stream, int64_t count);

// Number of usable CUDA devices; 0 when there is no driver or no device (never throws).
int device_count();

// Device memory of `bytes` bytes (cudaMalloc), freed on destruction.
class DeviceBuffer {
public:
    DeviceBuffer() = default;
    explicit DeviceBuffer(size_t bytes);
    ~DeviceBuffer();
    DeviceBuffer(DeviceBuffer&& o) noexcept : ptr_(std::exchange(o.ptr_, nullptr)), bytes_(std::exchange(o.bytes_, 0)) {}
    DeviceBuffer& operator=(DeviceBuffer&& o) noexcept;
    DeviceBuffer(const DeviceBuffer&) = delete;
    DeviceBuffer& operator=(const DeviceBuffer&) = delete;

    void* get() const { return ptr_; }
    template <typename T> T* as() const { return static_cast<T*>(ptr_); }
    size_t bytes() const { return bytes_; }
    // Grows to at least `bytes` (contents are not kept).
    void reserve(size_t bytes);

private:
    void* ptr_ = nullptr;
    size_t bytes_ = 0;
};

// Page-locked host memory (cudaHostAlloc), freed on destruction.
class PinnedBuffer {
public:
    PinnedBuffer() = default;
    explicit PinnedBuffer(size_t bytes);
    ~PinnedBuffer();
    PinnedBuffer(PinnedBuffer&& o) noexcept : ptr_(std::exchange(o.ptr_, nullptr)), bytes_(std::exchange(o.bytes_, 0)) {}
    PinnedBuffer& operator=(PinnedBuffer&& o) noexcept;
    PinnedBuffer(const PinnedBuffer&) = delete;
    PinnedBuffer& operator=(const PinnedBuffer&) = delete;

    void* get() const { return ptr_; }
    template <typename T> T* as() const { return static_cast<T*>(ptr_); }
    size_t bytes() const { return bytes_; }
    void reserve(size_t bytes);  // grows; contents are not kept

private:
    void* ptr_ = nullptr;
    size_t bytes_ = 0;
};

class Stream {
public:
    Stream();  // non-blocking with respect to the legacy default stream
    ~Stream();
    Stream(const Stream&) = delete;
    Stream& operator=(const Stream&) = delete;
    cudaStream_t get() const { return s_; }
    void synchronize() const;

private:
    cudaStream_t s_ = nullptr;
};

class Event {
public:
    Event();  // timing disabled
    ~Event();
    Event(Event&& o) noexcept : e_(std::exchange(o.e_, nullptr)) {}
    Event& operator=(Event&&) = delete;
    Event(const Event&) = delete;
    Event& operator=(const Event&) = delete;
    cudaEvent_t get() const { return e_; }

private:
    cudaEvent_t e_ = nullptr;
};

}  // namespace flashmoe::cuda
