// Small host -> device uploads carried in a kernel's parameters instead of by a copy engine: they
// never queue behind bulk host -> device copies of other streams (the expert cache's streaming),
// and the host memory may be reused as soon as the call returns.
#pragma once

#include <cuda_runtime_api.h>

#include <cstddef>

namespace flashmoe::cuda {

// The most bytes one launch carries (kernel parameters are limited to 4 KiB).
constexpr size_t kParamUploadBytes = 3968;

// dst[0, bytes) = src[0, bytes), in stream order; dst is device memory, src host memory of any kind.
// One launch per kParamUploadBytes: meant for a few KiB (larger data is better sent by cudaMemcpyAsync
// from pinned memory).
void upload_small(void* dst, const void* src, size_t bytes, cudaStream_t stream);

}  // namespace flashmoe::cuda
