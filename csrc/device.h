// Device memory and availability, the only place host code touches the CUDA runtime for
// allocation, copies, fills and frees. In a build without CUDA every device function throws a
// clear error.
//
// Stream order: Beaver's kernels run on each Context's non-blocking stream, which the legacy
// default stream is not ordered against. So nothing here uses the legacy stream on its own:
// the *_async functions queue on the stream they are given (a cudaStream_t, opaque so that host
// code needs no CUDA headers), and the context-free device_memcpy / device_memset wait for all
// work queued on the device before and after they run. A CTest (check_stream_order) fails when
// cudaMemcpy(, cudaMemset( or cudaFree( appear anywhere but csrc/device.cpp.
#pragma once

#include <cstddef>
#include <string>

#include "csrc/tensor.h"

namespace beaver {

// True when this build has the CUDA backend and a usable device is present. Otherwise false,
// with the reason in *why (no CUDA in the build, no device, driver too old, ...).
bool cuda_available(std::string* why = nullptr);

// Total memory of CUDA device `index` (throws without CUDA or without that device).
size_t device_total_memory(int index);
// Physical memory of this host.
size_t host_total_memory();

void* device_malloc(size_t bytes);
// Waits for all work queued on the device (any stream may still read p), then frees.
void device_free(void* p) noexcept;

// Ordered on `stream` only; the host does not wait. A host source must stay valid and
// unchanged until the copy ran (pinned memory) or is consumed before the call returns
// (pageable memory, which the driver stages).
void device_copy_async(void* dst, const void* src, size_t bytes, void* stream);
void device_fill_async(void* p, int value, size_t bytes, void* stream);
void stream_synchronize(void* stream);

// Context-free copy and fill for setup paths (loading, initialisation, tests): ordered
// against all work on every stream of the device (it waits for the device, runs, and waits
// again), so a kernel queued earlier has finished and a kernel queued later sees the result.
// Per-step copies use Context::copy / Context::zero, which stay on the context's stream.
void device_memcpy(void* dst, Device dst_dev, const void* src, Device src_dev, size_t bytes);
void device_memset(void* p, int value, size_t bytes);
void device_synchronize();

// Page-locked host memory (the staging area of Context copies).
void* pinned_malloc(size_t bytes);
void pinned_free(void* p) noexcept;

// Host-device copies on one stream staged through a pinned buffer, so that the small copies
// the engine makes every step are true asynchronous DMA. Uploads are packed one after another
// into the buffer; a region is reused only after an event recorded behind the copies that read
// it has completed, so the host never overwrites data a queued copy still reads. Copies larger
// than kMaxStagedBytes go directly (the driver stages pageable memory itself).
class PinnedStaging {
 public:
  static constexpr size_t kMaxStagedBytes = size_t(8) << 20;
  explicit PinnedStaging(void* stream) : stream_(stream) {}
  ~PinnedStaging();
  PinnedStaging(const PinnedStaging&) = delete;
  PinnedStaging& operator=(const PinnedStaging&) = delete;

  // Host to device: returns once src is no longer needed; the copy is queued on the stream.
  void upload(void* dst, const void* src, size_t bytes);
  // Device to host: returns once dst holds the data (waits for the stream).
  void download(void* dst, const void* src, size_t bytes);

 private:
  // Pinned space for `bytes`, reusing the buffer once earlier copies from it are done.
  void* reserve(size_t bytes);
  void* stream_;
  void* buf_ = nullptr;
  size_t capacity_ = 0;
  size_t used_ = 0;
  void* done_ = nullptr;  // cudaEvent_t recorded behind the last upload from buf_
};

}  // namespace beaver
