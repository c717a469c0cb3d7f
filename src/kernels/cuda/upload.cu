#include "kernels/cuda/cuda_util.h"
#include "kernels/cuda/upload.h"

#include <cstring>

namespace flashmoe::cuda {

namespace {

struct UploadPayload {
    alignas(16) unsigned char bytes[kParamUploadBytes];
};

__global__ void upload_kernel(const __grid_constant__ UploadPayload payload, unsigned char* dst, unsigned bytes) {
    for (unsigned i = threadIdx.x; i < bytes; i += blockDim.x) dst[i] = payload.bytes[i];
}

}  // namespace

void upload_small(void* dst, const void* src, size_t bytes, cudaStream_t stream) {
    auto* d = static_cast<unsigned char*>(dst);
    auto* s = static_cast<const unsigned char*>(src);
    for (size_t done = 0; done < bytes; done += kParamUploadBytes) {
        const size_t part = bytes - done < kParamUploadBytes ? bytes - done : kParamUploadBytes;
        UploadPayload payload;
        std::memcpy(payload.bytes, s + done, part);
        upload_kernel<<<1, 256, 0, stream>>>(payload, d + done, unsigned(part));
        CUDA_CHECK_LAUNCH("upload_kernel");
    }
}

}  // namespace flashmoe::cuda
