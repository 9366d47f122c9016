// Communicators: the collectives of data-parallel and sharded training, behind one interface.
//
//   single rank   the plain `beaver ...` command: every collective is the identity
//   MPI           `mpirun -np N beaver ...` (OpenMPI): host tensors and host values
//   NCCL          CUDA tensors of an MPI job, bootstrapped through MPI (the ncclUniqueId made
//                 on rank 0 and broadcast); attached with Communicator::use_cuda() in builds
//                 with NCCL. Without it, CUDA tensors are staged through host memory.
//
// model/ and train/ call only this layer, never MPI or NCCL directly. One communicator per
// process (MPI is initialised when the MPI communicator is made and finalised when it dies);
// it is passed alongside the Context to whatever needs it.
//
// Collectives over tensors take contiguous f32 tensors (all_gather and broadcast also take
// bf16/f16 and any other dtype, being plain copies). Sharded collectives work on a Partition
// of a flat vector: rank r owns the elements [begin(r), end(r)); both are in place:
//   reduce_scatter(t, p)  afterwards t[begin(rank), end(rank)) holds the reduction of every
//                         rank's t over that range; the rest of t is undefined
//   all_gather(t, p)      every rank contributes t[begin(r), end(r)); afterwards all of t holds
//                         every rank's part
// Reductions are reproducible for a fixed rank count (MPI's and NCCL's fixed algorithms), but
// their rounding differs from a one-rank sum.
#pragma once

#include <cstdint>
#include <memory>
#include <span>
#include <string>
#include <vector>

#include "csrc/context.h"
#include "csrc/tensor.h"

namespace beaver {

enum class ReduceOp { Sum, Avg };

// A collective in flight (Communicator::all_gather_async). wait() returns once the tensor holds
// the result: on the host, or, for a CUDA tensor, once the context's stream is ordered after
// the collective (the host does not block). Every rank must start its asynchronous collectives
// in the same order as its blocking ones (MPI's and NCCL's rule); destroying a handle that
// was not waited waits.
class PendingCollective {
 public:
  virtual ~PendingCollective() = default;
  virtual void wait() = 0;
};

// n elements in `parts` contiguous chunks of ceil(n / parts) (the last ones shorter or empty).
struct Partition {
  int64_t n = 0;
  int parts = 1;
  int64_t chunk() const { return parts > 0 ? (n + parts - 1) / parts : n; }
  int64_t begin(int r) const;
  int64_t end(int r) const;
  int64_t count(int r) const { return end(r) - begin(r); }
};

class Communicator {
 public:
  virtual ~Communicator() = default;

  int rank() const { return rank_; }
  int size() const { return size_; }
  bool is_root() const { return rank_ == 0; }
  bool distributed() const { return size_ > 1; }
  // Rank among the ranks on this node (which GPU this rank drives).
  int local_rank() const { return local_rank_; }
  virtual std::string backend() const = 0;  // "single", "mpi", "mpi+nccl"

  // ---- tensors on ctx's device ----
  virtual void all_reduce(Context& ctx, const Tensor& t, ReduceOp op) = 0;
  virtual void reduce_scatter(Context& ctx, const Tensor& t, const Partition& p,
                              ReduceOp op) = 0;
  virtual void all_gather(Context& ctx, const Tensor& t, const Partition& p) = 0;
  virtual void broadcast(Context& ctx, const Tensor& t, int root) = 0;
  // all_gather started without waiting for it (MPI_Iallgatherv on host tensors, NCCL on a
  // side stream ordered by events for CUDA tensors); t must stay alive and untouched until
  // wait(). This default (the single rank, and CUDA tensors staged through the host) runs the
  // blocking all_gather and returns a finished handle.
  virtual std::unique_ptr<PendingCollective> all_gather_async(Context& ctx, const Tensor& t,
                                                              const Partition& p);

  // ---- host values ----
  virtual void all_reduce(std::span<double> values, ReduceOp op) = 0;
  double all_reduce(double x, ReduceOp op) {
    all_reduce(std::span<double>(&x, 1), op);
    return x;
  }
  // Every rank gets root's bytes (resized as needed).
  virtual void broadcast(std::string& bytes, int root) = 0;
  // Whether every rank passed true (a collective: all ranks must call it).
  bool all_true(bool ok) { return all_reduce(ok ? 0.0 : 1.0, ReduceOp::Sum) == 0.0; }
  // Every rank's bytes (any length each), in rank order, on every rank: one broadcast per
  // rank (a collective; for results gathered once, not for the training step's tensors).
  std::vector<std::string> all_gather_bytes(const std::string& mine);
  virtual void barrier() = 0;

  // Ends the whole job: prints the message (naming this rank) and stops every rank with a
  // non-zero status. On one rank: prints and exits.
  [[noreturn]] virtual void abort(const std::string& message, int code = 1) = 0;

  // Attaches the device backend for CUDA tensors (NCCL where the build has it) on this rank's
  // device; a no-op on one rank.
  virtual void use_cuda(int device_index) { (void)device_index; }

  // This rank's share of a Partition of n elements over all ranks.
  Partition partition(int64_t n) const { return Partition{n, size_}; }

 protected:
  Communicator(int rank, int size, int local_rank = 0)
      : rank_(rank), size_(size), local_rank_(local_rank) {}

 private:
  int rank_ = 0, size_ = 1, local_rank_ = 0;
};

// One rank, every collective the identity.
std::unique_ptr<Communicator> single_rank_communicator();

// The MPI communicator when the process was launched by mpirun (OMPI_COMM_WORLD_SIZE, PMI_SIZE
// or PMIX_RANK in the environment), the single-rank one otherwise.
std::unique_ptr<Communicator> communicator_from_environment();

// The MPI backend (initialises MPI). An Error when MPI was already finalised in this process.
std::unique_ptr<Communicator> mpi_communicator();

// The NCCL backend for CUDA tensors: nullptr in builds without NCCL. Used by the MPI backend.
class DeviceCollectives {
 public:
  virtual ~DeviceCollectives() = default;
  virtual void all_reduce(Context& ctx, const Tensor& t, ReduceOp op, int ranks) = 0;
  virtual void reduce_scatter(Context& ctx, const Tensor& t, const Partition& p, ReduceOp op,
                              int rank) = 0;
  virtual void all_gather(Context& ctx, const Tensor& t, const Partition& p, int rank) = 0;
  virtual std::unique_ptr<PendingCollective> all_gather_async(Context& ctx, const Tensor& t,
                                                              const Partition& p, int rank) = 0;
  virtual void broadcast(Context& ctx, const Tensor& t, int root) = 0;
};
// unique_id: the bytes of the ncclUniqueId rank 0 made (make_nccl_unique_id) and broadcast.
bool nccl_available();
std::string make_nccl_unique_id();
std::unique_ptr<DeviceCollectives> nccl_collectives(const std::string& unique_id, int rank,
                                                    int size, int device_index);

}  // namespace beaver
