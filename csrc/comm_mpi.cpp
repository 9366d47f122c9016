// The MPI backend of the communicator (comm.h): OpenMPI collectives over MPI_COMM_WORLD for host
// tensors and values; CUDA tensors go to the NCCL collectives once use_cuda() attached them,
// else they are staged through host memory.
#define OMPI_SKIP_MPICXX 1  // the C API only (the C++ bindings are deprecated)
#include <mpi.h>

#include <climits>
#include <cstdio>
#include <cstring>
#include <vector>

#include "csrc/comm.h"
#include "csrc/error.h"

namespace beaver {

namespace {

std::string mpi_error(int code) {
  char buf[MPI_MAX_ERROR_STRING];
  int len = 0;
  MPI_Error_string(code, buf, &len);
  return std::string(buf, size_t(len));
}

#define BEAVER_MPI_CHECK(expr)                                                      \
  do {                                                                              \
    const int beaver_rc_ = (expr);                                                  \
    if (beaver_rc_ != MPI_SUCCESS) BEAVER_FAIL("MPI error in " #expr ": ", mpi_error(beaver_rc_)); \
  } while (0)

// The MPI type moving one element of dtype d unchanged (reductions need F32 or F64).
MPI_Datatype element_type(DType d) {
  switch (dtype_size(d)) {
    case 1: return MPI_BYTE;
    case 2: return MPI_UINT16_T;
    case 4: return d == DType::F32 ? MPI_FLOAT : MPI_UINT32_T;
    case 8: return MPI_UINT64_T;
  }
  BEAVER_FAIL("MPI: no element type for dtype ", dtype_name(d));
}

int as_count(int64_t n, const char* what) {
  BEAVER_CHECK(n >= 0 && n <= INT_MAX, "MPI ", what, ": ", n,
               " elements exceed one MPI count (", INT_MAX, "); use more ranks");
  return int(n);
}

void expect_reducible(const Tensor& t, const char* what) {
  BEAVER_CHECK(t.dtype == DType::F32, "MPI ", what, ": reductions take f32 tensors, got ",
               t.str());
}

// A host copy of a CUDA tensor for the staged path (the tensor itself on the CPU).
class Staged {
 public:
  Staged(Context& ctx, const Tensor& t) : ctx_(ctx), t_(t) {
    if (t.device == Device::CPU) {
      host_ = t;
      return;
    }
    buf_ = OwnedTensor(t.dtype, t.shape, Device::CPU);
    host_ = buf_.view();
    ctx.copy(host_, t);
  }
  const Tensor& host() const { return host_; }
  void write_back() {
    if (t_.device != Device::CPU) ctx_.copy(t_, host_);
  }

 private:
  Context& ctx_;
  Tensor t_, host_;
  OwnedTensor buf_;
};

void scale_f32(const Tensor& t, int64_t begin, int64_t end, float s) {
  float* p = t.ptr<float>();
  for (int64_t i = begin; i < end; ++i) p[i] *= s;
}

// An MPI_Iallgatherv in flight on a host buffer; the counts live as long as the request.
class MpiPending final : public PendingCollective {
 public:
  MpiPending(std::vector<int> counts, std::vector<int> displs)
      : counts_(std::move(counts)), displs_(std::move(displs)) {}
  ~MpiPending() override {
    if (!done_) MPI_Wait(&req_, MPI_STATUS_IGNORE);
  }
  void wait() override {
    if (done_) return;
    done_ = true;
    BEAVER_MPI_CHECK(MPI_Wait(&req_, MPI_STATUS_IGNORE));
  }
  MPI_Request req_ = MPI_REQUEST_NULL;
  std::vector<int> counts_, displs_;
  bool done_ = false;
};

class Mpi final : public Communicator {
 public:
  Mpi(int rank, int size, int local_rank) : Communicator(rank, size, local_rank) {}
  ~Mpi() override {
    devices_.reset();
    int finalized = 0;
    MPI_Finalized(&finalized);
    if (!finalized) MPI_Finalize();
  }

  std::string backend() const override { return devices_ ? "mpi+nccl" : "mpi"; }

  void use_cuda(int device_index) override {
    if (devices_ || !nccl_available()) return;
    std::string id = is_root() ? make_nccl_unique_id() : std::string();
    broadcast(id, 0);
    devices_ = nccl_collectives(id, rank(), size(), device_index);
  }

  void all_reduce(Context& ctx, const Tensor& t, ReduceOp op) override {
    expect_reducible(t, "all_reduce");
    if (t.device == Device::CUDA && devices_) return devices_->all_reduce(ctx, t, op, size());
    Staged s(ctx, t);
    float* p = s.host().ptr<float>();
    const int64_t n = t.numel();
    constexpr int64_t kPiece = int64_t(1) << 30;
    for (int64_t off = 0; off < n; off += kPiece) {
      const int c = int(std::min(kPiece, n - off));
      BEAVER_MPI_CHECK(MPI_Allreduce(MPI_IN_PLACE, p + off, c, MPI_FLOAT, MPI_SUM, MPI_COMM_WORLD));
    }
    if (op == ReduceOp::Avg) scale_f32(s.host(), 0, n, 1.0f / float(size()));
    s.write_back();
  }

  void reduce_scatter(Context& ctx, const Tensor& t, const Partition& p, ReduceOp op) override {
    expect_reducible(t, "reduce_scatter");
    check_partition(t, p, "reduce_scatter");
    if (t.device == Device::CUDA && devices_) return devices_->reduce_scatter(ctx, t, p, op, rank());
    Staged s(ctx, t);
    std::vector<int> counts(static_cast<size_t>(size()));
    for (int r = 0; r < size(); ++r) counts[size_t(r)] = as_count(p.count(r), "reduce_scatter");
    float* base = s.host().ptr<float>();
    // In place: the reduced shard of this rank lands at the start of the buffer.
    BEAVER_MPI_CHECK(MPI_Reduce_scatter(MPI_IN_PLACE, base, counts.data(), MPI_FLOAT, MPI_SUM,
                                        MPI_COMM_WORLD));
    const int64_t b = p.begin(rank()), c = p.count(rank());
    if (b > 0 && c > 0) std::memmove(base + b, base, size_t(c) * sizeof(float));
    if (op == ReduceOp::Avg) scale_f32(s.host(), b, b + c, 1.0f / float(size()));
    s.write_back();
  }

  void all_gather(Context& ctx, const Tensor& t, const Partition& p) override {
    check_partition(t, p, "all_gather");
    if (t.device == Device::CUDA && devices_) return devices_->all_gather(ctx, t, p, rank());
    Staged s(ctx, t);
    std::vector<int> counts(static_cast<size_t>(size())), displs(static_cast<size_t>(size()));
    for (int r = 0; r < size(); ++r) {
      counts[size_t(r)] = as_count(p.count(r), "all_gather");
      displs[size_t(r)] = as_count(p.begin(r), "all_gather");
    }
    BEAVER_MPI_CHECK(MPI_Allgatherv(MPI_IN_PLACE, 0, MPI_DATATYPE_NULL, s.host().data,
                                    counts.data(), displs.data(), element_type(t.dtype),
                                    MPI_COMM_WORLD));
    s.write_back();
  }

  std::unique_ptr<PendingCollective> all_gather_async(Context& ctx, const Tensor& t,
                                                      const Partition& p) override {
    check_partition(t, p, "all_gather_async");
    if (t.device == Device::CUDA && devices_) return devices_->all_gather_async(ctx, t, p, rank());
    if (t.device == Device::CUDA) return Communicator::all_gather_async(ctx, t, p);  // staged
    std::vector<int> counts(static_cast<size_t>(size())), displs(static_cast<size_t>(size()));
    for (int r = 0; r < size(); ++r) {
      counts[size_t(r)] = as_count(p.count(r), "all_gather_async");
      displs[size_t(r)] = as_count(p.begin(r), "all_gather_async");
    }
    auto h = std::make_unique<MpiPending>(std::move(counts), std::move(displs));
    ctx.synchronize();  // the own piece was copied in on ctx: complete before MPI reads it
    BEAVER_MPI_CHECK(MPI_Iallgatherv(MPI_IN_PLACE, 0, MPI_DATATYPE_NULL, t.data,
                                     h->counts_.data(), h->displs_.data(), element_type(t.dtype),
                                     MPI_COMM_WORLD, &h->req_));
    return h;
  }

  void broadcast(Context& ctx, const Tensor& t, int root) override {
    check_root(root, "broadcast");
    if (t.device == Device::CUDA && devices_) return devices_->broadcast(ctx, t, root);
    Staged s(ctx, t);
    const int64_t n = t.numel();
    constexpr int64_t kPiece = int64_t(1) << 30;
    char* p = static_cast<char*>(s.host().data);
    const size_t es = dtype_size(t.dtype);
    for (int64_t off = 0; off < n; off += kPiece) {
      const int c = int(std::min(kPiece, n - off));
      BEAVER_MPI_CHECK(MPI_Bcast(p + size_t(off) * es, c, element_type(t.dtype), root,
                                 MPI_COMM_WORLD));
    }
    s.write_back();
  }

  void all_reduce(std::span<double> v, ReduceOp op) override {
    if (v.empty()) return;
    BEAVER_MPI_CHECK(MPI_Allreduce(MPI_IN_PLACE, v.data(), as_count(int64_t(v.size()), "all_reduce"),
                                   MPI_DOUBLE, MPI_SUM, MPI_COMM_WORLD));
    if (op == ReduceOp::Avg)
      for (double& x : v) x /= double(size());
  }

  void broadcast(std::string& bytes, int root) override {
    check_root(root, "broadcast");
    unsigned long long n = bytes.size();
    BEAVER_MPI_CHECK(MPI_Bcast(&n, 1, MPI_UNSIGNED_LONG_LONG, root, MPI_COMM_WORLD));
    bytes.resize(size_t(n));
    if (n) BEAVER_MPI_CHECK(MPI_Bcast(bytes.data(), as_count(int64_t(n), "broadcast"), MPI_BYTE,
                                      root, MPI_COMM_WORLD));
  }

  void barrier() override { BEAVER_MPI_CHECK(MPI_Barrier(MPI_COMM_WORLD)); }

  [[noreturn]] void abort(const std::string& message, int code) override {
    std::fprintf(stderr, "beaver: error on rank %d of %d: %s\n", rank(), size(), message.c_str());
    std::fflush(stderr);
    MPI_Abort(MPI_COMM_WORLD, code);
    std::_Exit(code);  // MPI_Abort does not return; this keeps the promise if it did
  }

 private:
  void check_partition(const Tensor& t, const Partition& p, const char* what) const {
    BEAVER_CHECK(p.parts == size(), "MPI ", what, ": partition over ", p.parts, " parts, the job has ",
                 size(), " ranks");
    BEAVER_CHECK(p.n == t.numel(), "MPI ", what, ": partition of ", p.n, " elements, tensor ",
                 t.str());
  }
  void check_root(int root, const char* what) const {
    BEAVER_CHECK(root >= 0 && root < size(), "MPI ", what, ": root ", root, " outside [0, ",
                 size(), ")");
  }

  std::unique_ptr<DeviceCollectives> devices_;
};

}  // namespace

std::unique_ptr<Communicator> mpi_communicator() {
  int finalized = 0;
  MPI_Finalized(&finalized);
  BEAVER_CHECK(!finalized, "MPI was already finalised in this process: make one communicator "
               "per process");
  int initialized = 0;
  MPI_Initialized(&initialized);
  if (!initialized) {
    int provided = 0;
    BEAVER_MPI_CHECK(MPI_Init_thread(nullptr, nullptr, MPI_THREAD_FUNNELED, &provided));
  }
  // Errors come back as codes (turned into beaver::Error) instead of aborting inside MPI.
  MPI_Comm_set_errhandler(MPI_COMM_WORLD, MPI_ERRORS_RETURN);
  int rank = 0, size = 1;
  BEAVER_MPI_CHECK(MPI_Comm_rank(MPI_COMM_WORLD, &rank));
  BEAVER_MPI_CHECK(MPI_Comm_size(MPI_COMM_WORLD, &size));
  MPI_Comm node;
  BEAVER_MPI_CHECK(MPI_Comm_split_type(MPI_COMM_WORLD, MPI_COMM_TYPE_SHARED, rank, MPI_INFO_NULL,
                                       &node));
  int local = 0;
  MPI_Comm_rank(node, &local);
  MPI_Comm_free(&node);
  return std::make_unique<Mpi>(rank, size, local);
}

}  // namespace beaver
