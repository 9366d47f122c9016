#include "csrc/device.h"

#include <unistd.h>

#include <algorithm>
#include <cstring>

#ifdef BEAVER_WITH_CUDA
#include "csrc/cuda_check.h"
#endif

namespace beaver {

#ifdef BEAVER_WITH_CUDA

namespace {
cudaStream_t as_stream(void* s) { return static_cast<cudaStream_t>(s); }
}  // namespace

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

size_t device_total_memory(int index) {
  cudaDeviceProp prop{};
  const cudaError_t err = cudaGetDeviceProperties(&prop, index);
  if (err != cudaSuccess) {
    cudaGetLastError();
    BEAVER_FAIL("CUDA device ", index, ": cannot read its memory size (",
                cudaGetErrorString(err), "); pass --device_memory");
  }
  return prop.totalGlobalMem;
}

void* device_malloc(size_t bytes) {
  void* p = nullptr;
  const cudaError_t err = cudaMalloc(&p, bytes);
  if (err != cudaSuccess)
    BEAVER_FAIL("cudaMalloc of ", bytes, " bytes failed: ", cudaGetErrorString(err));
  return p;
}

void device_free(void* p) noexcept {
  if (p == nullptr) return;
  // Explicit rather than relying on cudaFree's implicit synchronisation: kernels queued on any
  // stream may still read or write p.
  cudaDeviceSynchronize();
  cudaFree(p);
}

void device_copy_async(void* dst, const void* src, size_t bytes, void* stream) {
  if (bytes == 0) return;
  BEAVER_CUDA_CHECK(cudaMemcpyAsync(dst, src, bytes, cudaMemcpyDefault, as_stream(stream)));
}

void device_fill_async(void* p, int value, size_t bytes, void* stream) {
  if (bytes == 0) return;
  BEAVER_CUDA_CHECK(cudaMemsetAsync(p, value, bytes, as_stream(stream)));
}

void stream_synchronize(void* stream) {
  BEAVER_CUDA_CHECK(cudaStreamSynchronize(as_stream(stream)));
}

void device_memcpy(void* dst, Device dst_dev, const void* src, Device src_dev, size_t bytes) {
  if (bytes == 0) return;
  cudaMemcpyKind kind = cudaMemcpyDefault;
  if (dst_dev == Device::CPU && src_dev == Device::CUDA) kind = cudaMemcpyDeviceToHost;
  if (dst_dev == Device::CUDA && src_dev == Device::CPU) kind = cudaMemcpyHostToDevice;
  if (dst_dev == Device::CUDA && src_dev == Device::CUDA) kind = cudaMemcpyDeviceToDevice;
  BEAVER_CUDA_CHECK(cudaDeviceSynchronize());
  BEAVER_CUDA_CHECK(cudaMemcpy(dst, src, bytes, kind));
  BEAVER_CUDA_CHECK(cudaDeviceSynchronize());
}

void device_memset(void* p, int value, size_t bytes) {
  if (bytes == 0) return;
  BEAVER_CUDA_CHECK(cudaDeviceSynchronize());
  BEAVER_CUDA_CHECK(cudaMemset(p, value, bytes));
  BEAVER_CUDA_CHECK(cudaDeviceSynchronize());
}

void device_synchronize() { BEAVER_CUDA_CHECK(cudaDeviceSynchronize()); }

void* pinned_malloc(size_t bytes) {
  void* p = nullptr;
  const cudaError_t err = cudaMallocHost(&p, bytes);
  if (err != cudaSuccess)
    BEAVER_FAIL("cudaMallocHost of ", bytes, " bytes failed: ", cudaGetErrorString(err));
  return p;
}

void pinned_free(void* p) noexcept {
  if (p) cudaFreeHost(p);
}

PinnedStaging::~PinnedStaging() {
  if (done_) {
    cudaEventSynchronize(static_cast<cudaEvent_t>(done_));
    cudaEventDestroy(static_cast<cudaEvent_t>(done_));
  }
  pinned_free(buf_);
}

void* PinnedStaging::reserve(size_t bytes) {
  const size_t need = (bytes + 255) / 256 * 256;
  if (used_ + need <= capacity_) {
    void* p = static_cast<char*>(buf_) + used_;
    used_ += need;
    return p;
  }
  // Wrap around: every earlier copy from the buffer must have run before it is rewritten.
  if (done_) BEAVER_CUDA_CHECK(cudaEventSynchronize(static_cast<cudaEvent_t>(done_)));
  if (need > capacity_) {
    pinned_free(buf_);
    buf_ = nullptr;
    capacity_ = 0;
    const size_t cap = std::max<size_t>(size_t(1) << 20, 4 * need);
    buf_ = pinned_malloc(cap);
    capacity_ = cap;
  }
  used_ = need;
  return buf_;
}

void PinnedStaging::upload(void* dst, const void* src, size_t bytes) {
  if (bytes == 0) return;
  if (bytes > kMaxStagedBytes) {
    device_copy_async(dst, src, bytes, stream_);
    return;
  }
  void* staged = reserve(bytes);
  std::memcpy(staged, src, bytes);
  device_copy_async(dst, staged, bytes, stream_);
  if (!done_) {
    cudaEvent_t e = nullptr;
    BEAVER_CUDA_CHECK(cudaEventCreateWithFlags(&e, cudaEventDisableTiming));
    done_ = e;
  }
  BEAVER_CUDA_CHECK(cudaEventRecord(static_cast<cudaEvent_t>(done_), as_stream(stream_)));
}

void PinnedStaging::download(void* dst, const void* src, size_t bytes) {
  if (bytes == 0) return;
  if (bytes > kMaxStagedBytes) {
    device_copy_async(dst, src, bytes, stream_);
    stream_synchronize(stream_);
    return;
  }
  void* staged = reserve(bytes);
  device_copy_async(staged, src, bytes, stream_);
  stream_synchronize(stream_);  // also completes every earlier upload from the buffer
  std::memcpy(dst, staged, bytes);
  used_ = 0;
}

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
size_t device_total_memory(int) { no_cuda("device_total_memory"); }
void* device_malloc(size_t) { no_cuda("device_malloc"); }
void device_free(void*) noexcept {}
void device_copy_async(void*, const void*, size_t, void*) { no_cuda("device_copy_async"); }
void device_fill_async(void*, int, size_t, void*) { no_cuda("device_fill_async"); }
void stream_synchronize(void*) { no_cuda("stream_synchronize"); }
void device_memcpy(void*, Device, const void*, Device, size_t) { no_cuda("device_memcpy"); }
void device_memset(void*, int, size_t) { no_cuda("device_memset"); }
void device_synchronize() {}
void* pinned_malloc(size_t) { no_cuda("pinned_malloc"); }
void pinned_free(void*) noexcept {}
PinnedStaging::~PinnedStaging() = default;
void* PinnedStaging::reserve(size_t) { no_cuda("PinnedStaging"); }
void PinnedStaging::upload(void*, const void*, size_t) { no_cuda("PinnedStaging::upload"); }
void PinnedStaging::download(void*, const void*, size_t) { no_cuda("PinnedStaging::download"); }

#endif

size_t host_total_memory() {
  const long pages = sysconf(_SC_PHYS_PAGES), size = sysconf(_SC_PAGESIZE);
  BEAVER_CHECK(pages > 0 && size > 0, "cannot read this host's memory size; pass --device_memory");
  return size_t(pages) * size_t(size);
}

}  // namespace beaver
