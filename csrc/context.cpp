#include "csrc/context.h"

#include <omp.h>

#include "csrc/device.h"

#ifdef BEAVER_WITH_CUDA
#include <cublasLt.h>
#include <cublas_v2.h>

#include "csrc/cuda_check.h"
#endif

namespace beaver {

#ifdef BEAVER_WITH_CUDA
struct CudaResources {
  cudaStream_t stream = nullptr;
  cublasHandle_t cublas = nullptr;
  cublasLtHandle_t cublaslt = nullptr;
  Buffer workspace;
  std::unique_ptr<PinnedStaging> staging;  // host copies of this stream (created with it)
  CudaResources() = default;
  CudaResources(const CudaResources&) = delete;
  CudaResources& operator=(const CudaResources&) = delete;
  ~CudaResources() {
    staging.reset();  // waits for its last copy while the stream still exists
    if (cublaslt) cublasLtDestroy(cublaslt);
    if (cublas) cublasDestroy(cublas);
    if (stream) cudaStreamDestroy(stream);
  }
};
const size_t kGemmWorkspaceBytes = Context::planned_gemm_workspace_bytes(Device::CUDA);
#else
struct CudaResources {};
#endif

Context Context::cpu(int threads) {
  Context c(Device::CPU);
  c.threads_ = threads > 0 ? threads : omp_get_max_threads();
  return c;
}

Context Context::cuda(int device_index) {
  std::string why;
  if (!cuda_available(&why)) BEAVER_FAIL("cannot create a CUDA context: ", why);
#ifdef BEAVER_WITH_CUDA
  Context c(Device::CUDA);
  c.device_index_ = device_index;
  BEAVER_CUDA_CHECK(cudaSetDevice(device_index));
  c.cuda_ = std::make_unique<CudaResources>();
  CudaResources& r = *c.cuda_;
  BEAVER_CUDA_CHECK(cudaStreamCreateWithFlags(&r.stream, cudaStreamNonBlocking));
  BEAVER_CUBLAS_CHECK(cublasCreate(&r.cublas));
  BEAVER_CUBLAS_CHECK(cublasSetStream(r.cublas, r.stream));
  BEAVER_CUBLAS_CHECK(cublasLtCreate(&r.cublaslt));
  r.workspace = Buffer(kGemmWorkspaceBytes, Device::CUDA);
  r.staging = std::make_unique<PinnedStaging>(r.stream);
  return c;
#else
  (void)device_index;
  BEAVER_FAIL("unreachable: CUDA context in a build without CUDA");
#endif
}

Context::Context(Device d) : device_(d) {}
Context::Context(Context&&) noexcept = default;
Context& Context::operator=(Context&&) noexcept = default;
Context::~Context() = default;

namespace {
[[noreturn]] void cpu_context(const char* what) {
  BEAVER_FAIL(what, " needs a CUDA context, but this context runs on the CPU");
}
}  // namespace

#ifdef BEAVER_WITH_CUDA
void* Context::stream() const {
  if (!cuda_) cpu_context("stream()");
  return cuda_->stream;
}
void* Context::cublas() const {
  if (!cuda_) cpu_context("cublas()");
  return cuda_->cublas;
}
void* Context::cublaslt() const {
  if (!cuda_) cpu_context("cublaslt()");
  return cuda_->cublaslt;
}
void* Context::gemm_workspace() const {
  if (!cuda_) cpu_context("gemm_workspace()");
  return cuda_->workspace.data();
}
size_t Context::gemm_workspace_bytes() const { return cuda_ ? cuda_->workspace.size() : 0; }
void Context::synchronize() const {
  if (cuda_) BEAVER_CUDA_CHECK(cudaStreamSynchronize(cuda_->stream));
}
void Context::copy(const Tensor& dst, const Tensor& src) const {
  BEAVER_CHECK(dst.nbytes() == src.nbytes() && dst.dtype == src.dtype, "Context::copy from ",
               src.str(), " to ", dst.str(), ": sizes or dtypes differ");
  if (!cuda_ || (dst.device == Device::CPU && src.device == Device::CPU)) {
    copy_tensor(dst, src);
    return;
  }
  if (dst.nbytes() == 0) return;
  if (src.device == Device::CPU)
    cuda_->staging->upload(dst.data, src.data, dst.nbytes());
  else if (dst.device == Device::CPU)
    cuda_->staging->download(dst.data, src.data, dst.nbytes());
  else
    device_copy_async(dst.data, src.data, dst.nbytes(), cuda_->stream);
}
void Context::zero(const Tensor& t) const {
  if (!cuda_ || t.device == Device::CPU) {
    zero_tensor(t);
    return;
  }
  device_fill_async(t.data, 0, t.nbytes(), cuda_->stream);
}
#else
void* Context::stream() const { cpu_context("stream()"); }
void* Context::cublas() const { cpu_context("cublas()"); }
void* Context::cublaslt() const { cpu_context("cublaslt()"); }
void* Context::gemm_workspace() const { cpu_context("gemm_workspace()"); }
size_t Context::gemm_workspace_bytes() const { return 0; }
void Context::synchronize() const {}
void Context::copy(const Tensor& dst, const Tensor& src) const { copy_tensor(dst, src); }
void Context::zero(const Tensor& t) const { zero_tensor(t); }
#endif

void* Context::scratch(size_t bytes) {
  if (bytes > scratch_.size()) {
    synchronize();  // the old scratch may still be in use by queued work
    scratch_ = Buffer(bytes, device_);
  }
  return scratch_.data();
}

}  // namespace beaver
