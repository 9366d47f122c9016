// Partitions, the single-rank communicator and the choice of backend (comm.h).
#include "csrc/comm.h"

#include <algorithm>
#include <cstdio>
#include <cstdlib>

#include "csrc/error.h"

namespace beaver {

int64_t Partition::begin(int r) const {
  BEAVER_CHECK(r >= 0 && r < parts, "Partition: rank ", r, " outside [0, ", parts, ")");
  return std::min(n, int64_t(r) * chunk());
}

int64_t Partition::end(int r) const {
  BEAVER_CHECK(r >= 0 && r < parts, "Partition: rank ", r, " outside [0, ", parts, ")");
  return std::min(n, int64_t(r + 1) * chunk());
}

std::vector<std::string> Communicator::all_gather_bytes(const std::string& mine) {
  std::vector<std::string> out(static_cast<size_t>(size()));
  for (int r = 0; r < size(); ++r) {
    std::string& b = out[size_t(r)];
    if (r == rank()) b = mine;
    broadcast(b, r);
  }
  return out;
}

namespace {
class Finished final : public PendingCollective {
 public:
  void wait() override {}
};
}  // namespace

std::unique_ptr<PendingCollective> Communicator::all_gather_async(Context& ctx, const Tensor& t,
                                                                  const Partition& p) {
  all_gather(ctx, t, p);
  return std::make_unique<Finished>();
}

namespace {

class SingleRank final : public Communicator {
 public:
  SingleRank() : Communicator(0, 1) {}
  std::string backend() const override { return "single"; }
  void all_reduce(Context&, const Tensor&, ReduceOp) override {}
  void reduce_scatter(Context&, const Tensor&, const Partition& p, ReduceOp) override {
    BEAVER_CHECK(p.parts == 1, "reduce_scatter: a partition over ", p.parts,
                 " ranks on a single-rank communicator");
  }
  void all_gather(Context&, const Tensor&, const Partition& p) override {
    BEAVER_CHECK(p.parts == 1, "all_gather: a partition over ", p.parts,
                 " ranks on a single-rank communicator");
  }
  void broadcast(Context&, const Tensor&, int root) override {
    BEAVER_CHECK(root == 0, "broadcast: root ", root, " on a single-rank communicator");
  }
  void all_reduce(std::span<double>, ReduceOp) override {}
  void broadcast(std::string&, int root) override {
    BEAVER_CHECK(root == 0, "broadcast: root ", root, " on a single-rank communicator");
  }
  void barrier() override {}
  [[noreturn]] void abort(const std::string& message, int code) override {
    std::fprintf(stderr, "beaver: error: %s\n", message.c_str());
    std::fflush(stderr);
    std::exit(code);
  }
};

bool launched_by_mpirun() {
  for (const char* v : {"OMPI_COMM_WORLD_SIZE", "PMI_SIZE", "PMIX_RANK"})
    if (std::getenv(v)) return true;
  return false;
}

}  // namespace

std::unique_ptr<Communicator> single_rank_communicator() { return std::make_unique<SingleRank>(); }

std::unique_ptr<Communicator> communicator_from_environment() {
  if (launched_by_mpirun()) return mpi_communicator();
  return single_rank_communicator();
}

}  // namespace beaver
