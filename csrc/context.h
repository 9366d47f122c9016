// The execution context every op takes first: which backend runs it, and that backend's
// resources. CPU: the OpenMP thread count (fixed, so reductions are reproducible).
// CUDA: one stream, cuBLAS and cuBLASLt handles bound to it, and a scratch area that grows only
// when a larger request arrives (so the steady state allocates nothing).
#pragma once

#include <cstddef>
#include <memory>
#include <typeindex>
#include <typeinfo>
#include <unordered_map>

#include "csrc/tensor.h"

namespace beaver {

struct CudaResources;  // defined in csrc/context.cpp (pimpl: host code needs no CUDA headers)

class Context {
 public:
  // threads = 0: OpenMP's default thread count.
  static Context cpu(int threads = 0);
  // Throws (with the reason) when this build has no CUDA backend or no device is present.
  static Context cuda(int device_index = 0);

  Context(Context&&) noexcept;
  Context& operator=(Context&&) noexcept;
  ~Context();

  Device device() const { return device_; }
  bool is_cpu() const { return device_ == Device::CPU; }
  int threads() const { return threads_; }
  int device_index() const { return device_index_; }

  // CUDA only (throw on a CPU context). Opaque so that host code needs no CUDA headers:
  // stream() is a cudaStream_t, cublas() a cublasHandle_t, cublaslt() a cublasLtHandle_t.
  void* stream() const;
  void* cublas() const;
  void* cublaslt() const;
  // cuBLASLt workspace (fixed size).
  void* gemm_workspace() const;
  size_t gemm_workspace_bytes() const;
  // What a context on `d` allocates for the GEMM workspace (0 on the CPU).
  static size_t planned_gemm_workspace_bytes(Device d) { return d == Device::CUDA ? size_t(32) << 20 : 0; }

  // Scratch memory on this context's device, valid until the next call to scratch().
  void* scratch(size_t bytes);

  // Waits for all work queued on this context (no-op on CPU).
  void synchronize() const;
  // Copies (sizes and dtypes must match) and zero-fills ordered on this context's stream
  // (copy_tensor / zero_tensor instead wait for the whole device before and after). Host
  // memory is staged through a pinned buffer the context owns. A copy into host memory waits
  // for the stream (the host reads the result next); host-to-device and device-to-device copies
  // do not block the host, and the host source may be reused as soon as copy() returns.
  void copy(const Tensor& dst, const Tensor& src) const;
  void zero(const Tensor& t) const;

  // State a backend keeps between calls on this context (kernel attributes already set,
  // cuBLASLt plans per GEMM shape, occupancy figures), one T per type, default-constructed on
  // first use and dropped with the context. Not thread-safe, like the rest of a Context.
  template <typename T>
  T& backend_cache() {
    std::shared_ptr<void>& slot = caches_[std::type_index(typeid(T))];
    if (!slot) slot = std::make_shared<T>();
    return *static_cast<T*>(slot.get());
  }

 private:
  explicit Context(Device d);
  Device device_ = Device::CPU;
  int threads_ = 1;
  int device_index_ = 0;
  Buffer scratch_;
  std::unique_ptr<CudaResources> cuda_;
  std::unordered_map<std::type_index, std::shared_ptr<void>> caches_;
};

}  // namespace beaver
