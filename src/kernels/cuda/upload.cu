#include "kernels/cuda/cuda_util.h"
#include "kernels/cuda/upload.h"

#include <cstring>

namespace flashmoe::cuda {

namespace {

template <size_t N>
struct UploadPayload {
    alignas(16) unsigned char bytes[N];
};

template <size_t N>
__global__ void upload_kernel(const __grid_constant__ UploadPayload<N> payload, unsigned char* dst, unsigned bytes) {
    for (unsigned i = threadIdx.x; i < bytes; i += blockDim.x) dst[i] = payload.bytes[i];
}

// The parameters a launch passes are as large as the payload type: the smallest that fits.
template <size_t N>
void launch(unsigned char* dst, const unsigned char* src, size_t bytes, cudaStream_t stream) {
    UploadPayload<N> payload;
    std::memcpy(payload.bytes, src, bytes);
    upload_kernel<N><<<1, 256, 0, stream>>>(payload, dst, unsigned(bytes));
    CUDA_CHECK_LAUNCH("upload_kernel");
}

}  // namespace

void upload_small(void* dst, const void* src, size_t bytes, cudaStream_t stream) {
    auto* d = static_cast<unsigned char*>(dst);
    auto* s = static_cast<const unsigned char*>(src);
    for (size_t done = 0; done < bytes; done += kParamUploadBytes) {
        const size_t part = bytes - done < kParamUploadBytes ? bytes - done : kParamUploadBytes;
        if (part <= 512) launch<512>(d + done, s + done, part, stream);
        else if (part <= 2048) launch<2048>(d + done, s + done, part, stream);
        else launch<kParamUploadBytes>(d + done, s + done, part, stream);
    }
}

}  // namespace flashmoe::cuda
