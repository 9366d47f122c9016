// GPU tests of the NCCL collectives (csrc/comm_nccl.cpp):
//   - the NCCL backend alone: one rank on one device against the single-rank communicator on
//     a CPU copy (the collectives must leave the data as it is, through NCCL), and, where two
//     devices exist, two ranks as two threads of this process (one device each) against sums
//     computed on the host, with an uneven partition (grouped ncclReduce / ncclBroadcast) and
//     an even one (ncclReduceScatter / ncclAllGather in place);
//   - through the communicator of an MPI job (csrc/comm_mpi.cpp, backend "mpi+nccl"): this
//     binary under `mpirun -np 1` on one device and `mpirun -np 2` where two devices exist.
//     On every rank, all-reduce (sum, avg), reduce-scatter (sum, avg), all-gather and
//     broadcast (f32 and bf16) of CUDA tensors against the same collective of the MPI backend
//     on a host copy and against sums computed here, over an uneven (1001) and an even (1024)
//     length, then a barrier. The launcher checks that every rank ran the test and passed.
// Skip without a device, without NCCL in the build, without mpirun, or (the two-rank tests)
// with fewer than two visible devices, saying which.
#include <gtest/gtest.h>

#include <cuda_runtime.h>
#include <unistd.h>

#include <cmath>
#include <filesystem>
#include <thread>

#include "csrc/comm.h"
#include "gpu/gpu_testutil.h"
#include "gpu/nccl_testutil.h"
#include "mpi_testutil.h"

namespace beaver::test {
namespace {

float value(int rank, int64_t i) { return float(rank + 1) * 0.25f + float(i % 97); }

std::vector<float> rank_values(int rank, int64_t n) {
  std::vector<float> v(static_cast<size_t>(n));
  for (int64_t i = 0; i < n; ++i) v[size_t(i)] = value(rank, i);
  return v;
}

// One rank: every collective through NCCL against the single-rank communicator on a CPU copy
// (the data must come back as it went in), reductions in f32, copies in f32 and bf16.
TEST(NcclGpu, OneRankMatchesTheCpu) {
  BEAVER_REQUIRE_NCCL(1);
  Context ctx = Context::cuda(0), cpu = Context::cpu(1);
  auto nccl = nccl_collectives(make_nccl_unique_id(), 0, 1, 0);
  auto single = single_rank_communicator();
  for (const int64_t n : {int64_t(1001), int64_t(1024)}) {
    const auto host = rank_values(0, n);
    const Partition p{n, 1};
    for (const DType dt : {DType::F32, DType::BF16}) {
      SCOPED_TRACE(std::string(dtype_name(dt)) + ", n = " + std::to_string(n));
      OwnedTensor t = upload(host, Shape{n}, dt);
      OwnedTensor h = host_typed(host, Shape{n}, dt);
      if (dt == DType::F32) {
        nccl->all_reduce(ctx, t, ReduceOp::Sum, 1);
        single->all_reduce(cpu, h, ReduceOp::Sum);
        nccl->all_reduce(ctx, t, ReduceOp::Avg, 1);
        single->all_reduce(cpu, h, ReduceOp::Avg);
        nccl->reduce_scatter(ctx, t, p, ReduceOp::Avg, 0);
        single->reduce_scatter(cpu, h, p, ReduceOp::Avg);
        nccl->reduce_scatter(ctx, t, p, ReduceOp::Sum, 0);
        single->reduce_scatter(cpu, h, p, ReduceOp::Sum);
      }
      nccl->all_gather(ctx, t, p, 0);
      single->all_gather(cpu, h, p);
      nccl->broadcast(ctx, t, 0);
      single->broadcast(cpu, h, 0);
      const auto want = to_host_f32(h);
      EXPECT_EQ(download(ctx, t), want);
      EXPECT_EQ(want, to_host_f32(host_typed(host, Shape{n}, dt)));
    }
  }
  single->barrier();
}

// Two ranks as two threads (ncclCommInitRank waits for both), one device each.
void check_two_ranks(int64_t n) {
  const std::string id = make_nccl_unique_id();
  std::vector<std::vector<float>> reduced(2), scattered(2), gathered(2);
  const Partition p{n, 2};
  auto rank_main = [&](int r) {
    Context ctx = Context::cuda(r);
    auto nccl = nccl_collectives(id, r, 2, r);
    OwnedTensor t = upload(rank_values(r, n), Shape{n}, DType::F32);
    nccl->all_reduce(ctx, t, ReduceOp::Sum, 2);
    reduced[size_t(r)] = download(ctx, t);
    OwnedTensor u = upload(rank_values(r, n), Shape{n}, DType::F32);
    nccl->reduce_scatter(ctx, u, p, ReduceOp::Avg, r);
    scattered[size_t(r)] = download(ctx, u);
    std::vector<float> mine(size_t(n), -1.0f);
    for (int64_t i = p.begin(r); i < p.end(r); ++i) mine[size_t(i)] = float(r);
    OwnedTensor g = upload(mine, Shape{n}, DType::F32);
    nccl->all_gather(ctx, g, p, r);
    gathered[size_t(r)] = download(ctx, g);
  };
  std::thread t0(rank_main, 0), t1(rank_main, 1);
  t0.join();
  t1.join();
  for (int r = 0; r < 2; ++r) {
    for (int64_t i = 0; i < n; ++i) {
      EXPECT_FLOAT_EQ(reduced[size_t(r)][size_t(i)], value(0, i) + value(1, i)) << r << " " << i;
      EXPECT_EQ(gathered[size_t(r)][size_t(i)], float(i < p.end(0) ? 0 : 1)) << r << " " << i;
    }
    for (int64_t i = p.begin(r); i < p.end(r); ++i)
      EXPECT_FLOAT_EQ(scattered[size_t(r)][size_t(i)], (value(0, i) + value(1, i)) / 2) << i;
  }
}

TEST(NcclGpu, TwoRanksOnTwoDevices) {
  BEAVER_REQUIRE_NCCL(2);
  check_two_ranks(1001);  // uneven: grouped ncclReduce / ncclBroadcast
  check_two_ranks(1024);  // even: ncclReduceScatter / ncclAllGather in place
}

// ---- through the communicator, on every rank of an mpirun of this binary -------------------
OwnedTensor host_values(const std::vector<float>& v, DType d) {
  return host_typed(v, Shape{int64_t(v.size())}, d);
}
std::vector<float> host_floats(const Tensor& t) { return to_host_f32(t); }

TEST(NcclRanks, CollectivesMatchTheHost) {
  if (!is_mpi_rank()) GTEST_SKIP() << "runs as a rank of NcclMpi.* (under mpirun)";
  // Under mpirun the launcher has checked for the device and NCCL: here their absence fails.
  std::string why;
  ASSERT_TRUE(cuda_available(&why)) << why;
  ASSERT_TRUE(nccl_available()) << "this build has no NCCL";
  auto comm = communicator_from_environment();
  const int P = comm->size(), r = comm->rank();
  ASSERT_LE(P, visible_cuda_devices()) << "one rank per device";
  Context ctx = Context::cuda(comm->local_rank());
  Context host = Context::cpu(1);
  comm->use_cuda(ctx.device_index());
  ASSERT_EQ(comm->backend(), "mpi+nccl");
  auto sum = [&](int64_t i) {
    float s = 0;
    for (int q = 0; q < P; ++q) s += value(q, i);
    return s;
  };
  for (const int64_t n : {int64_t(1001), int64_t(1024)}) {
    SCOPED_TRACE("n = " + std::to_string(n) + ", rank " + std::to_string(r) + " of " +
                 std::to_string(P));
    const Partition p = comm->partition(n);
    const auto mine = rank_values(r, n);
    for (const ReduceOp op : {ReduceOp::Sum, ReduceOp::Avg}) {
      const float scale = op == ReduceOp::Avg ? 1.0f / float(P) : 1.0f;
      OwnedTensor d = upload(mine, Shape{n}, DType::F32);
      OwnedTensor h = host_values(mine, DType::F32);
      comm->all_reduce(ctx, d, op);
      comm->all_reduce(host, h, op);
      const auto got = download(ctx, d), want = host_floats(h);
      for (int64_t i = 0; i < n; ++i) {
        EXPECT_FLOAT_EQ(got[size_t(i)], want[size_t(i)]) << "all_reduce " << i;
        EXPECT_FLOAT_EQ(got[size_t(i)], sum(i) * scale) << "all_reduce " << i;
      }
      OwnedTensor ds = upload(mine, Shape{n}, DType::F32);
      OwnedTensor hs = host_values(mine, DType::F32);
      comm->reduce_scatter(ctx, ds, p, op);
      comm->reduce_scatter(host, hs, p, op);
      const auto gs = download(ctx, ds), ws = host_floats(hs);
      for (int64_t i = p.begin(r); i < p.end(r); ++i) {
        EXPECT_FLOAT_EQ(gs[size_t(i)], ws[size_t(i)]) << "reduce_scatter " << i;
        EXPECT_FLOAT_EQ(gs[size_t(i)], sum(i) * scale) << "reduce_scatter " << i;
      }
    }
    for (const DType dt : {DType::F32, DType::BF16}) {
      SCOPED_TRACE(dtype_name(dt));
      // all-gather: this rank's part holds its values, the rest NaN until gathered.
      std::vector<float> part(size_t(n), std::nanf(""));
      for (int64_t i = p.begin(r); i < p.end(r); ++i) part[size_t(i)] = value(r, i);
      OwnedTensor g = upload(part, Shape{n}, dt);
      OwnedTensor hg = host_values(part, dt);
      comm->all_gather(ctx, g, p);
      comm->all_gather(host, hg, p);
      const auto gg = download(ctx, g), wg = host_floats(hg);
      for (int q = 0; q < P; ++q)
        for (int64_t i = p.begin(q); i < p.end(q); ++i) {
          EXPECT_EQ(gg[size_t(i)], wg[size_t(i)]) << "all_gather " << i;
          EXPECT_EQ(gg[size_t(i)], host_floats(host_values({value(q, i)}, dt))[0])
              << "all_gather " << i;
        }
      // broadcast from the last rank.
      const int root = P - 1;
      OwnedTensor b = upload(rank_values(r, n), Shape{n}, dt);
      OwnedTensor hb = host_values(rank_values(r, n), dt);
      comm->broadcast(ctx, b, root);
      comm->broadcast(host, hb, root);
      const auto gb = download(ctx, b), wb = host_floats(hb), root_values =
          host_floats(host_values(rank_values(root, n), dt));
      EXPECT_EQ(gb, wb) << "broadcast";
      EXPECT_EQ(gb, root_values) << "broadcast";
    }
  }
  comm->barrier();
}

// Runs NcclRanks.* on `ranks` ranks of an MPI job of this binary; every rank must report it
// passed (a rank that skipped or never ran fails this).
void launch_ranks(int ranks) {
  const std::string log = (std::filesystem::temp_directory_path() /
                           ("beaver-nccl-ranks-" + std::to_string(getpid()) + ".log")).string();
  const int rc = run(mpirun(ranks) + self_exe() + " --gtest_filter=NcclRanks.* > " + log +
                     " 2>&1");
  const std::string out = read_file(log);
  std::filesystem::remove(log);
  EXPECT_EQ(rc, 0) << out;
  const std::string ok = "[       OK ] NcclRanks.CollectivesMatchTheHost";
  int passed = 0;
  for (size_t at = out.find(ok); at != std::string::npos; at = out.find(ok, at + 1)) ++passed;
  EXPECT_EQ(passed, ranks) << "ranks that passed, of " << ranks << ":\n" << out;
}

TEST(NcclMpi, OneRankOnOneDevice) {
  if (is_mpi_rank()) GTEST_SKIP() << "already a rank";
  BEAVER_REQUIRE_NCCL(1);
  if (!have_mpirun()) GTEST_SKIP() << kNoMpirun;
  launch_ranks(1);
}

TEST(NcclMpi, TwoRanksOnTwoDevices) {
  if (is_mpi_rank()) GTEST_SKIP() << "already a rank";
  BEAVER_REQUIRE_NCCL(2);
  if (!have_mpirun()) GTEST_SKIP() << kNoMpirun;
  launch_ranks(2);
}

}  // namespace
}  // namespace beaver::test
