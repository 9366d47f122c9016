#include "csrc/device.h"

#ifdef BEAVER_WITH_CUDA
#include "csrc/cuda_check.h"
#endif

namespace beaver {

#ifdef BEAVER_WITH_CUDA

bool cuda_available(std::string* why) {
  int n = 0;
  const cudaError_t err = cudaGetDeviceCount(&n);
  if (err != cudaSuccess) {
    if (why) *why = cat("no usable CUDA device: ", cudaGetErrorString(err));
    cudaGetLastError();  // clear the sticky error state
    return false;
  }
  if (n == 0) {
    if (why) *why = "no CUDA device present";
    return false;
  }
  return true;
}

void* device_malloc(size_t bytes) {
  void* p = nullptr;
  const cudaError_t err = cudaMalloc(&p, bytes);
  if (err != cudaSuccess)
    BEAVER_FAIL("cudaMalloc of ", bytes, " bytes failed: ", cudaGetErrorString(err));
  return p;
}

void device_free(void* p) noexcept { cudaFree(p); }

void device_memcpy(void* dst, Device dst_dev, const void* src, Device src_dev, size_t bytes) {
  cudaMemcpyKind kind = cudaMemcpyDefault;
  if (dst_dev == Device::CPU && src_dev == Device::CUDA) kind = cudaMemcpyDeviceToHost;
  if (dst_dev == Device::CUDA && src_dev == Device::CPU) kind = cudaMemcpyHostToDevice;
  if (dst_dev == Device::CUDA && src_dev == Device::CUDA) kind = cudaMemcpyDeviceToDevice;
  BEAVER_CUDA_CHECK(cudaMemcpy(dst, src, bytes, kind));
}

void device_memset(void* p, int value, size_t bytes) {
  BEAVER_CUDA_CHECK(cudaMemset(p, value, bytes));
}

void device_synchronize() { BEAVER_CUDA_CHECK(cudaDeviceSynchronize()); }

#else

namespace {
[[noreturn]] void no_cuda(const char* what) {
  BEAVER_FAIL(what, ": this build of Beaver has no CUDA backend (configure with nvcc present "
                    "or -DBEAVER_CUDA=ON)");
}
}  // namespace

bool cuda_available(std::string* why) {
  if (why) *why = "this build of Beaver has no CUDA backend";
  return false;
}
void* device_malloc(size_t) { no_cuda("device_malloc"); }
void device_free(void*) noexcept {}
void device_memcpy(void*, Device, const void*, Device, size_t) { no_cuda("device_memcpy"); }
void device_memset(void*, int, size_t) { no_cuda("device_memset"); }
void device_synchronize() {}

#endif

}  // namespace beaver
