// bench_comm: all-reduce and all-gather bus bandwidth of the communicator (csrc/comm.h), in
// nccl-tests' definitions, one row per size (8 B to --max_bytes, doubling):
//   time    per call: the slowest rank's mean over --iters calls (after 5 warm-up calls)
//   algbw   size / time (size: the whole buffer; for all-gather the gathered output)
//   busbw   all-reduce algbw x 2(n-1)/n, all-gather algbw x (n-1)/n, n ranks
// The communicator's collectives work in place, so only nccl-tests' in-place column exists.
//   mpirun -np 2 build/bench_comm                  MPI backend, host f32 buffers
//   mpirun -np 2 build/bench_comm --device cuda    NCCL backend, device buffers (one GPU per
//                                                  rank); without a device it says so and
//                                                  exits 0
// A driver, not a Google Benchmark: every rank must make the same calls in the same order,
// which a per-rank adaptive iteration count would break. Rank 0 prints the table.
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <vector>

#include "csrc/comm.h"
#include "csrc/context.h"
#include "csrc/device.h"
#include "csrc/error.h"

namespace {

using beaver::Communicator;

struct Args {
  std::string device = "cpu";
  int64_t max_bytes = int64_t(256) << 20;
  int iters = 20;
};

Args parse(int argc, char** argv) {
  Args a;
  for (int i = 1; i < argc; ++i) {
    const std::string k = argv[i];
    BEAVER_CHECK(i + 1 < argc, "bench_comm: ", k, " needs a value");
    const std::string v = argv[++i];
    if (k == "--device") {
      a.device = v;
    } else if (k == "--max_bytes") {
      a.max_bytes = std::stoll(v);
    } else if (k == "--iters") {
      a.iters = std::stoi(v);
    } else {
      BEAVER_FAIL("bench_comm: unknown flag ", k, " (--device cpu|cuda, --max_bytes N, --iters N)");
    }
  }
  BEAVER_CHECK(a.device == "cpu" || a.device == "cuda", "bench_comm: --device cpu or cuda, got ",
               a.device);
  BEAVER_CHECK(a.max_bytes >= 8 && a.iters >= 1, "bench_comm: --max_bytes >= 8 and --iters >= 1");
  return a;
}

// Seconds per call of f on the slowest rank.
template <class F>
double time_calls(Communicator& comm, beaver::Context& ctx, int iters, F&& f) {
  for (int i = 0; i < 5; ++i) f();
  ctx.synchronize();
  comm.barrier();
  const auto t0 = std::chrono::steady_clock::now();
  for (int i = 0; i < iters; ++i) f();
  ctx.synchronize();
  const double mine =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count() / iters;
  double slowest = 0;
  char buf[40];
  std::snprintf(buf, sizeof buf, "%.9e", mine);
  for (const std::string& s : comm.all_gather_bytes(buf))
    slowest = std::max(slowest, std::stod(s));
  return slowest;
}

int run(int argc, char** argv) {
  const Args a = parse(argc, argv);
  auto comm = beaver::communicator_from_environment();
  const int n = comm->size();
  std::string why;
  if (a.device == "cuda" && !beaver::cuda_available(&why)) {
    if (comm->is_root()) std::printf("bench_comm --device cuda: skipped, no CUDA device (%s)\n", why.c_str());
    return 0;
  }
  beaver::Context ctx = a.device == "cuda" ? beaver::Context::cuda(comm->local_rank())
                                           : beaver::Context::cpu(1);
  if (a.device == "cuda") comm->use_cuda(ctx.device_index());
  const beaver::Device dev = a.device == "cuda" ? beaver::Device::CUDA : beaver::Device::CPU;
  if (comm->is_root()) {
    std::printf("# bench_comm: %d rank(s), backend %s, %s buffers, f32, in place, %d iterations\n",
                n, comm->backend().c_str(), a.device.c_str(), a.iters);
    std::printf("# %12s %12s | %10s %9s %9s | %10s %9s %9s\n", "bytes", "elements",
                "ar us", "algbw", "busbw", "ag us", "algbw", "busbw");
    std::printf("# %12s %12s | %10s %9s %9s | %10s %9s %9s\n", "", "", "", "GB/s", "GB/s", "",
                "GB/s", "GB/s");
  }
  for (int64_t bytes = 8; bytes <= a.max_bytes; bytes *= 2) {
    const int64_t elems = bytes / 4;
    beaver::OwnedTensor t(beaver::DType::F32, beaver::Shape{elems}, dev);
    ctx.zero(t.view());
    const beaver::Partition p = comm->partition(elems);
    // Fewer calls for the large sizes (the same count on every rank).
    const int iters = std::max(2, int(std::min<int64_t>(a.iters, (int64_t(2) << 30) / bytes)));
    const double ar = time_calls(*comm, ctx, iters, [&] {
      comm->all_reduce(ctx, t.view(), beaver::ReduceOp::Sum);
    });
    const double ag = time_calls(*comm, ctx, iters, [&] { comm->all_gather(ctx, t.view(), p); });
    const double alg_ar = double(bytes) / ar / 1e9, alg_ag = double(bytes) / ag / 1e9;
    const double bus_ar = alg_ar * 2.0 * (n - 1) / n, bus_ag = alg_ag * double(n - 1) / n;
    if (comm->is_root())
      std::printf("  %12lld %12lld | %10.2f %9.3f %9.3f | %10.2f %9.3f %9.3f\n",
                  static_cast<long long>(bytes), static_cast<long long>(elems), ar * 1e6, alg_ar,
                  bus_ar, ag * 1e6, alg_ag, bus_ag);
  }
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  try {
    return run(argc, argv);
  } catch (const std::exception& e) {
    std::fprintf(stderr, "bench_comm: error: %s\n", e.what());
    return 1;
  }
}
