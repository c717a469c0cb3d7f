// Kernel launches with programmatic dependent launch (PDL, sm_90 and later): a kernel launched by
// `launch` may start while the kernel before it on the stream is still running, so its launch
// latency and the fetch of its weights overlap its predecessor. In exchange every kernel launched
// this way follows one protocol:
//   1. before pdl_wait(): only reads of memory no kernel writes (weights), e.g. L2 prefetches;
//   2. pdl_wait(): returns once the previous kernel has completed and its writes are visible;
//   3. pdl_trigger() right after: lets the next kernel launch (it then waits in its own pdl_wait).
// Completion is transitive (each kernel waits for the one before it before it ends), so a kernel
// may read anything written earlier on the stream once its pdl_wait() returns. Kernels that skip
// pdl_trigger() are simply not overlapped; the attribute is not set where the device is older than
// sm_90 or FLASHMOE_CUDA_PDL=0 (then both calls are no-ops).
#pragma once

#include <cuda_runtime.h>

#include "kernels/cuda/cuda_util.h"

namespace flashmoe::cuda {

__device__ __forceinline__ void pdl_wait() {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
    asm volatile("griddepcontrol.wait;" ::: "memory");
#endif
}

__device__ __forceinline__ void pdl_trigger() {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
    asm volatile("griddepcontrol.launch_dependents;" ::: "memory");
#endif
}

// Asks L2 for the 128-byte lines of [p, p + bytes) this thread is given (thread `i` of `n`).
__device__ __forceinline__ void prefetch_l2(const void* p, int64_t bytes, int64_t i, int64_t n) {
    const char* c = static_cast<const char*>(p);
    for (int64_t off = i * 128; off < bytes; off += n * 128)
        asm volatile("prefetch.global.L2 [%0];" ::"l"(c + off));
}

// Dynamic shared memory above 48 KiB must be allowed per kernel (and device) before a launch.
template <class Kernel>
void allow_smem(Kernel kernel, int bytes) {
    CUDA_CHECK(cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, bytes));
}

// kernel<<<grid, block, smem, stream>>>(args...), with PDL where pdl_enabled(); a launch error is an
// Error naming `name`.
template <class... Params, class... Args>
void launch(const char* name, void (*kernel)(Params...), dim3 grid, dim3 block, size_t smem,
            cudaStream_t stream, Args&&... args) {
    cudaLaunchAttribute attr[1];
    attr[0].id = cudaLaunchAttributeProgrammaticStreamSerialization;
    attr[0].val.programmaticStreamSerializationAllowed = 1;
    cudaLaunchConfig_t cfg{};
    cfg.gridDim = grid;
    cfg.blockDim = block;
    cfg.dynamicSmemBytes = smem;
    cfg.stream = stream;
    cfg.attrs = attr;
    cfg.numAttrs = pdl_enabled() ? 1 : 0;
    const cudaError_t e = cudaLaunchKernelEx(&cfg, kernel, static_cast<Params>(args)...);
    if (e != cudaSuccess) throw_cuda_error(e, name, __FILE__, __LINE__);
}

}  // namespace flashmoe::cuda
