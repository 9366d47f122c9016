// GPU tests of the NCCL collectives (csrc/comm_nccl.cpp): one rank on one device (the
// collectives must leave the data as it is, through NCCL), and, where two devices exist, two
// ranks as two threads of this process (one device each) against sums computed on the host,
// with an uneven partition (grouped ncclReduce / ncclBroadcast) and an even one
// (ncclReduceScatter / ncclAllGather in place). Skips without a device or without NCCL.
#include <gtest/gtest.h>

#include <cuda_runtime.h>

#include <thread>

#include "csrc/comm.h"
#include "gpu/gpu_testutil.h"

namespace beaver::test {
namespace {

float value(int rank, int64_t i) { return float(rank + 1) * 0.25f + float(i % 97); }

std::vector<float> rank_values(int rank, int64_t n) {
  std::vector<float> v(static_cast<size_t>(n));
  for (int64_t i = 0; i < n; ++i) v[size_t(i)] = value(rank, i);
  return v;
}

TEST(NcclGpu, OneRankKeepsTheData) {
  BEAVER_REQUIRE_CUDA();
  if (!nccl_available()) GTEST_SKIP() << "this build has no NCCL";
  Context ctx = Context::cuda(0);
  auto nccl = nccl_collectives(make_nccl_unique_id(), 0, 1, 0);
  const int64_t n = 1001;
  const auto host = rank_values(0, n);
  OwnedTensor t = upload(host, Shape{n}, DType::F32);
  nccl->all_reduce(ctx, t, ReduceOp::Sum, 1);
  nccl->reduce_scatter(ctx, t, Partition{n, 1}, ReduceOp::Avg, 0);
  nccl->all_gather(ctx, t, Partition{n, 1}, 0);
  nccl->broadcast(ctx, t, 0);
  EXPECT_EQ(download(ctx, t), host);
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
  BEAVER_REQUIRE_CUDA();
  if (!nccl_available()) GTEST_SKIP() << "this build has no NCCL";
  int devices = 0;
  cudaGetDeviceCount(&devices);
  if (devices < 2) GTEST_SKIP() << "needs two devices (NCCL takes one rank per device)";
  check_two_ranks(1001);  // uneven: grouped ncclReduce / ncclBroadcast
  check_two_ranks(1024);  // even: ncclReduceScatter / ncclAllGather in place
}

}  // namespace
}  // namespace beaver::test
