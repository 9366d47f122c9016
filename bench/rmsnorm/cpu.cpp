// CPU fused residual add + RMSNorm, forward and backward, in bytes/s (minimum traffic: each
// tensor read or written once).
#include "bench_util.h"
#include "csrc/ops/rmsnorm.h"
#include "tests/cases/rmsnorm.h"

namespace beaver {
namespace {

void cpu_rmsnorm_fwd(benchmark::State& state) {
  const int64_t t = state.range(0), h = state.range(1);
  Context ctx = Context::cpu();
  auto x = bench::random_f32(Shape{t, h}, 1);
  auto res = bench::random_f32(Shape{t, h}, 2);
  auto w = bench::random_f32(Shape{h}, 3);
  OwnedTensor out(DType::F32, Shape{t, h}), rstd(DType::F32, Shape{t});
  for (auto _ : state) {
    // residual_out aliases residual: the in-place residual stream of the model.
    ops::rmsnorm_fwd(ctx, x, res, w, 1e-5f, out, res, rstd);
    benchmark::ClobberMemory();
  }
  // read x, residual; write out, residual_out; weight and rstd.
  bench::set_bytes(state, 4.0 * double(t * h) * 4 + double(h + t) * 4);
}
void rmsnorm_bench_shapes(benchmark::internal::Benchmark* b) {
  b->ArgNames({"T", "H"});
  for (const auto& c : cases::kRmsnormBench) b->Args({c.rows(), c.H});
}
BENCHMARK(cpu_rmsnorm_fwd)->Apply(rmsnorm_bench_shapes)->UseRealTime();

void cpu_rmsnorm_bwd(benchmark::State& state) {
  const int64_t t = state.range(0), h = state.range(1);
  Context ctx = Context::cpu();
  auto dout = bench::random_f32(Shape{t, h}, 1);
  auto hin = bench::random_f32(Shape{t, h}, 2);
  auto w = bench::random_f32(Shape{h}, 3);
  auto rstd = bench::random_f32(Shape{t}, 4);
  auto dres = bench::random_f32(Shape{t, h}, 5);
  OwnedTensor dx(DType::F32, Shape{t, h}), dw(DType::F32, Shape{h});
  for (auto _ : state) {
    ops::rmsnorm_bwd(ctx, dout, hin, w, rstd, dres, dx, dw, true);
    benchmark::ClobberMemory();
  }
  // read dout, h, dresidual; write dx; weight and dweight.
  bench::set_bytes(state, 4.0 * double(t * h) * 4 + 3.0 * double(h) * 4 + double(t) * 4);
}
BENCHMARK(cpu_rmsnorm_bwd)->Apply(rmsnorm_bench_shapes)->UseRealTime();

}  // namespace
}  // namespace beaver
