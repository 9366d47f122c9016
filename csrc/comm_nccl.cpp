// The NCCL collectives for CUDA tensors of an MPI job (comm.h). One communicator per rank on
// its own device (NCCL rejects two ranks on one device), made with ncclCommInitRank from the
// ncclUniqueId rank 0 created and the MPI backend broadcast. Every call is queued on the
// context's stream. Equal partitions use ncclReduceScatter / ncclAllGather in place; uneven
// ones a group of ncclReduce / ncclBroadcast calls, one per owning rank.
// Builds without NCCL (no CUDA, or no libnccl in the toolkit) report nccl_available() false.
#include <algorithm>
#include <cstring>

#include "csrc/comm.h"
#include "csrc/error.h"

#ifdef BEAVER_WITH_NCCL
#include <cuda_runtime.h>
#include <nccl.h>

#include "csrc/cuda_check.h"
#endif

namespace beaver {

#ifdef BEAVER_WITH_NCCL
namespace {

ncclDataType_t nccl_type(DType d, int64_t& count) {
  switch (d) {
    case DType::F32: return ncclFloat32;
    case DType::BF16: return ncclBfloat16;
    case DType::F16: return ncclFloat16;
    case DType::I32: return ncclInt32;
    case DType::I64: return ncclInt64;
    default:
      count *= int64_t(dtype_size(d));
      return ncclUint8;
  }
}

char* at(const Tensor& t, int64_t element) {
  return static_cast<char*>(t.data) + size_t(element) * dtype_size(t.dtype);
}

bool equal_parts(const Partition& p) { return p.n % p.parts == 0; }

// A gather queued on the side stream: wait() orders the context's stream after its event.
class NcclPending final : public PendingCollective {
 public:
  NcclPending(cudaStream_t waiter, cudaEvent_t done) : waiter_(waiter), done_(done) {}
  ~NcclPending() override {
    if (!waited_) cudaStreamWaitEvent(waiter_, done_, 0);
  }
  void wait() override {
    if (waited_) return;
    waited_ = true;
    BEAVER_CUDA_CHECK(cudaStreamWaitEvent(waiter_, done_, 0));
  }

 private:
  cudaStream_t waiter_;
  cudaEvent_t done_;
  bool waited_ = false;
};

class Nccl final : public DeviceCollectives {
 public:
  Nccl(const std::string& id, int rank, int size, int device) {
    BEAVER_CHECK(id.size() == sizeof(ncclUniqueId), "NCCL: the unique id has ", id.size(),
                 " bytes, expected ", sizeof(ncclUniqueId));
    ncclUniqueId uid;
    std::memcpy(&uid, id.data(), sizeof uid);
    BEAVER_CUDA_CHECK(cudaSetDevice(device));
    BEAVER_NCCL_CHECK(ncclCommInitRank(&comm_, size, uid, rank));
  }
  ~Nccl() override {
    if (side_) cudaStreamSynchronize(side_);
    for (cudaEvent_t e : {ready_, done_})
      if (e) cudaEventDestroy(e);
    if (side_) cudaStreamDestroy(side_);
    if (comm_) ncclCommDestroy(comm_);
  }
  Nccl(const Nccl&) = delete;
  Nccl& operator=(const Nccl&) = delete;

  void all_reduce(Context& ctx, const Tensor& t, ReduceOp op, int) override {
    int64_t n = t.numel();
    const ncclDataType_t ty = nccl_type(t.dtype, n);
    BEAVER_NCCL_CHECK(ncclAllReduce(t.data, t.data, size_t(n), ty, red(op), comm_, stream(ctx)));
  }

  void reduce_scatter(Context& ctx, const Tensor& t, const Partition& p, ReduceOp op,
                      int rank) override {
    int64_t one = 1;
    const ncclDataType_t ty = nccl_type(t.dtype, one);
    BEAVER_CHECK(one == 1, "NCCL reduce_scatter: reductions take floating-point tensors, got ",
                 t.str());
    if (equal_parts(p)) {
      BEAVER_NCCL_CHECK(ncclReduceScatter(t.data, at(t, p.begin(rank)), size_t(p.chunk()), ty,
                                          red(op), comm_, stream(ctx)));
      return;
    }
    BEAVER_NCCL_CHECK(ncclGroupStart());
    for (int r = 0; r < p.parts; ++r)
      if (p.count(r) > 0)
        BEAVER_NCCL_CHECK(ncclReduce(at(t, p.begin(r)), at(t, p.begin(r)), size_t(p.count(r)), ty,
                                     red(op), r, comm_, stream(ctx)));
    BEAVER_NCCL_CHECK(ncclGroupEnd());
  }

  // The gather on a side stream after what ctx's stream has queued (the own piece copied in,
  // earlier reads of the slot), with an event the handle makes ctx's stream wait on. The
  // event is reused: with several gathers in flight (one per sharded model) a handle may wait
  // on a later record, which the side stream reaches only after its own gather (never too
  // early, at worst later than needed).
  std::unique_ptr<PendingCollective> all_gather_async(Context& ctx, const Tensor& t,
                                                      const Partition& p, int rank) override {
    if (!side_) {
      BEAVER_CUDA_CHECK(cudaStreamCreateWithFlags(&side_, cudaStreamNonBlocking));
      BEAVER_CUDA_CHECK(cudaEventCreateWithFlags(&ready_, cudaEventDisableTiming));
      BEAVER_CUDA_CHECK(cudaEventCreateWithFlags(&done_, cudaEventDisableTiming));
    }
    BEAVER_CUDA_CHECK(cudaEventRecord(ready_, stream(ctx)));
    BEAVER_CUDA_CHECK(cudaStreamWaitEvent(side_, ready_, 0));
    gather_on(t, p, rank, side_);
    BEAVER_CUDA_CHECK(cudaEventRecord(done_, side_));
    return std::make_unique<NcclPending>(stream(ctx), done_);
  }

  void all_gather(Context& ctx, const Tensor& t, const Partition& p, int rank) override {
    gather_on(t, p, rank, stream(ctx));
  }

  void gather_on(const Tensor& t, const Partition& p, int rank, cudaStream_t st) {
    int64_t chunk = p.chunk();
    const ncclDataType_t ty = nccl_type(t.dtype, chunk);
    const int64_t scale = chunk / std::max<int64_t>(1, p.chunk());
    if (equal_parts(p)) {
      BEAVER_NCCL_CHECK(ncclAllGather(at(t, p.begin(rank)), t.data, size_t(chunk), ty, comm_,
                                      st));
      return;
    }
    BEAVER_NCCL_CHECK(ncclGroupStart());
    for (int r = 0; r < p.parts; ++r)
      if (p.count(r) > 0)
        BEAVER_NCCL_CHECK(ncclBroadcast(at(t, p.begin(r)), at(t, p.begin(r)),
                                        size_t(p.count(r) * scale), ty, r, comm_, st));
    BEAVER_NCCL_CHECK(ncclGroupEnd());
  }

  void broadcast(Context& ctx, const Tensor& t, int root) override {
    int64_t n = t.numel();
    const ncclDataType_t ty = nccl_type(t.dtype, n);
    BEAVER_NCCL_CHECK(ncclBroadcast(t.data, t.data, size_t(n), ty, root, comm_, stream(ctx)));
  }

 private:
  static ncclRedOp_t red(ReduceOp op) { return op == ReduceOp::Avg ? ncclAvg : ncclSum; }
  static cudaStream_t stream(Context& ctx) { return static_cast<cudaStream_t>(ctx.stream()); }
  ncclComm_t comm_ = nullptr;
  cudaStream_t side_ = nullptr;
  cudaEvent_t ready_ = nullptr, done_ = nullptr;
};

}  // namespace

bool nccl_available() { return true; }

std::string make_nccl_unique_id() {
  ncclUniqueId uid;
  BEAVER_NCCL_CHECK(ncclGetUniqueId(&uid));
  return std::string(reinterpret_cast<const char*>(&uid), sizeof uid);
}

std::unique_ptr<DeviceCollectives> nccl_collectives(const std::string& unique_id, int rank,
                                                    int size, int device_index) {
  return std::make_unique<Nccl>(unique_id, rank, size, device_index);
}

#else  // no NCCL in this build: CUDA tensors of an MPI job are staged through host memory

bool nccl_available() { return false; }

std::string make_nccl_unique_id() {
  BEAVER_FAIL("this build has no NCCL (it needs the CUDA toolkit's libnccl at configure time)");
}

std::unique_ptr<DeviceCollectives> nccl_collectives(const std::string&, int, int, int) {
  BEAVER_FAIL("this build has no NCCL (it needs the CUDA toolkit's libnccl at configure time)");
}

#endif

}  // namespace beaver
