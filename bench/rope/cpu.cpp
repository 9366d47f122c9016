// CPU rotary embedding on q and k (LLaMA-7B: 32 heads of 128, llama3 frequencies), in bytes/s.
#include "bench_util.h"
#include "csrc/ops/rope.h"
#include "tests/cases/rope.h"

namespace beaver {
namespace {

void cpu_rope_fwd(benchmark::State& state) {
  const int64_t t = state.range(0), nh = state.range(1), nkv = state.range(2),
                d = state.range(3);
  Context ctx = Context::cpu();
  ops::RopeScaling sc;
  sc.llama3 = true;
  const auto inv = ops::rope_inv_freq(int(d), 500000.0, sc);
  OwnedTensor inv_t(DType::F32, Shape{d / 2});
  std::copy(inv.begin(), inv.end(), inv_t.ptr<float>());
  OwnedTensor pos(DType::I32, Shape{t});
  for (int64_t i = 0; i < t; ++i) pos.ptr<int32_t>()[i] = int32_t(i);
  auto q = bench::random_f32(Shape{t, nh, d}, 1);
  auto k = bench::random_f32(Shape{t, nkv, d}, 2);
  for (auto _ : state) {
    ops::rope_fwd(ctx, q, k, pos, inv_t);
    benchmark::ClobberMemory();
  }
  bench::set_bytes(state, 2.0 * double(t * (nh + nkv) * d) * 4);  // read + write q and k
}
void rope_bench_shapes(benchmark::internal::Benchmark* b) {
  b->ArgNames({"T", "nh", "nkv", "d"});
  for (const auto& c : cases::kRopeBench) b->Args({c.T, c.nh, c.nkv, c.d});
}
BENCHMARK(cpu_rope_fwd)->Apply(rope_bench_shapes)->UseRealTime();

}  // namespace
}  // namespace beaver
