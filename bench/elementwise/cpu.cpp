// CPU elementwise ops over T × 4096 elements (LLaMA-7B rows), in bytes/s.
#include "bench_util.h"
#include "csrc/ops/elementwise.h"
#include "tests/cases/elementwise.h"

namespace beaver {
namespace {

constexpr int64_t kH = cases::kElementwiseBenchWidth;

void elementwise_bench_rows(benchmark::internal::Benchmark* b) {
  b->ArgName("T");
  for (const int64_t t : cases::kElementwiseBenchRows) b->Arg(t);
}

void cpu_add(benchmark::State& state) {
  const int64_t n = state.range(0) * kH;
  Context ctx = Context::cpu();
  auto a = bench::random_f32(Shape{n}, 1), b = bench::random_f32(Shape{n}, 2);
  OwnedTensor o(DType::F32, Shape{n});
  for (auto _ : state) {
    ops::add(ctx, a, b, o);
    benchmark::ClobberMemory();
  }
  bench::set_bytes(state, 3.0 * double(n) * 4);
}
BENCHMARK(cpu_add)->Apply(elementwise_bench_rows)->UseRealTime();

void cpu_axpy(benchmark::State& state) {
  const int64_t n = state.range(0) * kH;
  Context ctx = Context::cpu();
  auto x = bench::random_f32(Shape{n}, 1), y = bench::random_f32(Shape{n}, 2);
  for (auto _ : state) {
    ops::axpy(ctx, 1e-3f, x, y);
    benchmark::ClobberMemory();
  }
  bench::set_bytes(state, 3.0 * double(n) * 4);
}
BENCHMARK(cpu_axpy)->Apply(elementwise_bench_rows)->UseRealTime();

void cpu_scale_fill(benchmark::State& state) {
  const int64_t n = state.range(0) * kH;
  Context ctx = Context::cpu();
  auto x = bench::random_f32(Shape{n}, 1);
  for (auto _ : state) {
    ops::fill(ctx, x, 0.5f);
    ops::scale(ctx, x, 1.5f);
    benchmark::ClobberMemory();
  }
  bench::set_bytes(state, 3.0 * double(n) * 4);  // fill writes; scale reads and writes
}
BENCHMARK(cpu_scale_fill)->Apply(elementwise_bench_rows)->UseRealTime();

void cpu_convert_f32_bf16(benchmark::State& state) {
  const int64_t n = state.range(0) * kH;
  Context ctx = Context::cpu();
  auto src = bench::random_f32(Shape{n}, 1);
  OwnedTensor dst(DType::BF16, Shape{n});
  for (auto _ : state) {
    ops::convert(ctx, src, dst);
    benchmark::ClobberMemory();
  }
  bench::set_bytes(state, 6.0 * double(n));  // 4 bytes read, 2 written per element
}
BENCHMARK(cpu_convert_f32_bf16)->Apply(elementwise_bench_rows)->UseRealTime();

void cpu_convert_bf16_f32(benchmark::State& state) {
  const int64_t n = state.range(0) * kH;
  Context ctx = Context::cpu();
  auto f = bench::random_f32(Shape{n}, 1);
  OwnedTensor src(DType::BF16, Shape{n}), dst(DType::F32, Shape{n});
  ops::convert(ctx, f, src);
  for (auto _ : state) {
    ops::convert(ctx, src, dst);
    benchmark::ClobberMemory();
  }
  bench::set_bytes(state, 6.0 * double(n));
}
BENCHMARK(cpu_convert_bf16_f32)->Apply(elementwise_bench_rows)->UseRealTime();

}  // namespace
}  // namespace beaver
