// A captured CUDA graph with RAII ownership: capture() records the work that a callable
// queues on a context's stream (cudaStreamBeginCapture / EndCapture, thread-local capture
// mode, so an illegal call such as a synchronisation inside the body fails the capture instead
// of silently running), instantiates it once, and replay() launches the instantiated graph on
// the same stream. The graph and its executable are destroyed with the object.
// Nothing runs during capture; a graph replays exactly the recorded kernels with the recorded
// arguments, so inputs that change between replays must live in fixed device buffers that are
// updated in place (copies queued before replay() on the same stream are ordered before it).
// Host code needs no CUDA headers (opaque handles); in a build without CUDA, capture() throws.
#pragma once

#include <functional>
#include <memory>

#include "csrc/context.h"

namespace beaver {

class CudaGraph {
 public:
  CudaGraph();
  ~CudaGraph();
  CudaGraph(CudaGraph&&) noexcept;
  CudaGraph& operator=(CudaGraph&&) noexcept;
  CudaGraph(const CudaGraph&) = delete;
  CudaGraph& operator=(const CudaGraph&) = delete;

  // Records body() on ctx's stream and instantiates the graph (replacing a previous one).
  // Throws naming the CUDA error when the capture or the instantiation fails; the stream is
  // out of capture mode afterwards either way. ctx must be a CUDA context.
  void capture(Context& ctx, const std::function<void()>& body);
  // Launches the instantiated graph on ctx's stream (asynchronous).
  void replay(Context& ctx) const;
  bool ready() const;
  // Kernel / memcpy nodes recorded by the last capture.
  size_t num_nodes() const;

 private:
  struct Handles;
  std::unique_ptr<Handles> h_;
};

}  // namespace beaver
