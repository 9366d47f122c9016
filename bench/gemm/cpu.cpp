// CPU GEMM (OpenBLAS sgemm through beaver::ops): square problems and linear-layer shapes
// (T tokens × LLaMA-7B width 4096), reported in FLOP/s.
#include "bench_util.h"
#include "csrc/ops/gemm.h"

namespace beaver {
namespace {

void cpu_gemm(benchmark::State& state) {
  const int64_t m = state.range(0), n = state.range(1), k = state.range(2);
  const bool tb = state.range(3) != 0;
  Context ctx = Context::cpu();
  auto a = bench::random_f32(Shape{m, k}, 1);
  auto b = bench::random_f32(tb ? Shape{n, k} : Shape{k, n}, 2);
  OwnedTensor c(DType::F32, Shape{m, n});
  for (auto _ : state) {
    ops::gemm(ctx, a, false, b, tb, c);
    benchmark::ClobberMemory();
  }
  bench::set_flops(state, 2.0 * double(m) * double(n) * double(k));
}
BENCHMARK(cpu_gemm)
    ->ArgNames({"M", "N", "K", "tb"})
    ->Args({256, 256, 256, 0})
    ->Args({1024, 1024, 1024, 0})
    ->Args({64, 4096, 4096, 1})  // linear_fwd: y[T,out] = x[T,in] W[out,in]^T
    ->Unit(benchmark::kMillisecond)
    ->UseRealTime();

void cpu_linear_bwd_weight(benchmark::State& state) {
  const int64_t t = state.range(0), h = state.range(1);
  Context ctx = Context::cpu();
  auto dy = bench::random_f32(Shape{t, h}, 1);
  auto x = bench::random_f32(Shape{t, h}, 2);
  OwnedTensor dw(DType::F32, Shape{h, h});
  for (auto _ : state) {
    ops::linear_bwd_weight(ctx, dy, x, dw, false);
    benchmark::ClobberMemory();
  }
  bench::set_flops(state, 2.0 * double(t) * double(h) * double(h));
}
BENCHMARK(cpu_linear_bwd_weight)
    ->ArgNames({"T", "H"})
    ->Args({64, 4096})
    ->Unit(benchmark::kMillisecond)
    ->UseRealTime();

}  // namespace
}  // namespace beaver
