// CPU GEMM (OpenBLAS sgemm through beaver::ops): square problems and linear-layer shapes
// (T tokens × LLaMA-7B width 4096), reported in FLOP/s.
#include "bench_util.h"
#include "csrc/ops/gemm.h"
#include "tests/cases/gemm.h"

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
void gemm_bench_shapes(benchmark::internal::Benchmark* b) {
  b->ArgNames({"M", "N", "K", "tb"});
  for (const auto& c : cases::kGemmBench) b->Args({c.M, c.N, c.K, c.trans_b ? 1 : 0});
}
BENCHMARK(cpu_gemm)
    ->Apply(gemm_bench_shapes)
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
void linear_bwd_weight_bench_shapes(benchmark::internal::Benchmark* b) {
  b->ArgNames({"T", "H"});
  for (const auto& c : cases::kLinearBwdWeightBench) b->Args({c.T, c.in});
}
BENCHMARK(cpu_linear_bwd_weight)
    ->Apply(linear_bwd_weight_bench_shapes)
    ->Unit(benchmark::kMillisecond)
    ->UseRealTime();

}  // namespace
}  // namespace beaver
