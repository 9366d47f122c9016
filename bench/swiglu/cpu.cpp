// CPU SwiGLU forward and backward over [T, I] (LLaMA-7B intermediate I = 11008), in bytes/s.
#include "bench_util.h"
#include "csrc/ops/swiglu.h"
#include "tests/cases/swiglu.h"

namespace beaver {
namespace {

void cpu_swiglu_fwd(benchmark::State& state) {
  const int64_t t = state.range(0), i = state.range(1);
  Context ctx = Context::cpu();
  auto g = bench::random_f32(Shape{t, i}, 1);
  auto u = bench::random_f32(Shape{t, i}, 2);
  OwnedTensor o(DType::F32, Shape{t, i});
  for (auto _ : state) {
    ops::swiglu_fwd(ctx, g, u, o);
    benchmark::ClobberMemory();
  }
  bench::set_bytes(state, 3.0 * double(t * i) * 4);
}
void swiglu_bench_shapes(benchmark::internal::Benchmark* b) {
  b->ArgNames({"T", "I"});
  for (const auto& c : cases::kSwigluBench) b->Args({c.T, c.I});
}
BENCHMARK(cpu_swiglu_fwd)->Apply(swiglu_bench_shapes)->UseRealTime();

void cpu_swiglu_bwd(benchmark::State& state) {
  const int64_t t = state.range(0), i = state.range(1);
  Context ctx = Context::cpu();
  auto g = bench::random_f32(Shape{t, i}, 1);
  auto u = bench::random_f32(Shape{t, i}, 2);
  auto d = bench::random_f32(Shape{t, i}, 3);
  OwnedTensor dg(DType::F32, Shape{t, i}), du(DType::F32, Shape{t, i});
  for (auto _ : state) {
    ops::swiglu_bwd(ctx, g, u, d, dg, du);
    benchmark::ClobberMemory();
  }
  bench::set_bytes(state, 5.0 * double(t * i) * 4);
}
BENCHMARK(cpu_swiglu_bwd)->Apply(swiglu_bench_shapes)->UseRealTime();

}  // namespace
}  // namespace beaver
