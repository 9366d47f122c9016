// CudaGraph (see cuda_graph.h): the only place the runtime's graph API is called.
#include "csrc/cuda_graph.h"

#ifdef BEAVER_WITH_CUDA
#include <cuda_runtime.h>

#include "csrc/cuda_check.h"
#endif

namespace beaver {

#ifdef BEAVER_WITH_CUDA

struct CudaGraph::Handles {
  cudaGraph_t graph = nullptr;
  cudaGraphExec_t exec = nullptr;
  size_t nodes = 0;
  Handles() = default;
  Handles(const Handles&) = delete;
  Handles& operator=(const Handles&) = delete;
  ~Handles() { reset(); }
  void reset() noexcept {
    if (exec) cudaGraphExecDestroy(exec);
    if (graph) cudaGraphDestroy(graph);
    exec = nullptr;
    graph = nullptr;
    nodes = 0;
  }
};

CudaGraph::CudaGraph() : h_(std::make_unique<Handles>()) {}
CudaGraph::~CudaGraph() = default;
CudaGraph::CudaGraph(CudaGraph&&) noexcept = default;
CudaGraph& CudaGraph::operator=(CudaGraph&&) noexcept = default;

void CudaGraph::capture(Context& ctx, const std::function<void()>& body) {
  BEAVER_CHECK(!ctx.is_cpu(), "CudaGraph::capture: the context runs on the CPU");
  auto stream = static_cast<cudaStream_t>(ctx.stream());
  if (!h_) h_ = std::make_unique<Handles>();  // a moved-from graph captures afresh
  h_->reset();
  BEAVER_CUDA_CHECK(cudaStreamBeginCapture(stream, cudaStreamCaptureModeThreadLocal));
  cudaGraph_t g = nullptr;
  try {
    body();
  } catch (...) {
    // Leave capture mode (discarding the partial graph) before the error propagates.
    if (cudaStreamEndCapture(stream, &g) == cudaSuccess && g) cudaGraphDestroy(g);
    (void)cudaGetLastError();
    throw;
  }
  const cudaError_t end = cudaStreamEndCapture(stream, &g);
  if (end != cudaSuccess) {
    if (g) cudaGraphDestroy(g);
    (void)cudaGetLastError();
    BEAVER_FAIL("CudaGraph::capture: the captured work is not graph-safe (",
                cudaGetErrorString(end), ")");
  }
  h_->graph = g;
  BEAVER_CUDA_CHECK(cudaGraphGetNodes(g, nullptr, &h_->nodes));
  BEAVER_CUDA_CHECK(cudaGraphInstantiate(&h_->exec, g, 0));
}

void CudaGraph::replay(Context& ctx) const {
  BEAVER_CHECK(ready(), "CudaGraph::replay: nothing captured");
  BEAVER_CUDA_CHECK(cudaGraphLaunch(h_->exec, static_cast<cudaStream_t>(ctx.stream())));
}

bool CudaGraph::ready() const { return h_ && h_->exec != nullptr; }
size_t CudaGraph::num_nodes() const { return h_ ? h_->nodes : 0; }

#else

struct CudaGraph::Handles {};

CudaGraph::CudaGraph() : h_(std::make_unique<Handles>()) {}
CudaGraph::~CudaGraph() = default;
CudaGraph::CudaGraph(CudaGraph&&) noexcept = default;
CudaGraph& CudaGraph::operator=(CudaGraph&&) noexcept = default;

void CudaGraph::capture(Context&, const std::function<void()>&) {
  BEAVER_FAIL("CudaGraph::capture: this build of Beaver has no CUDA backend");
}
void CudaGraph::replay(Context&) const {
  BEAVER_FAIL("CudaGraph::replay: this build of Beaver has no CUDA backend");
}
bool CudaGraph::ready() const { return false; }
size_t CudaGraph::num_nodes() const { return 0; }

#endif

}  // namespace beaver
