// CPU embedding lookup and its deterministic backward at LLaMA-7B width (H = 4096), in bytes/s.
// The vocabulary is kept small (tests/cases/embedding.h) so the table stays a few tens of MiB.
#include "bench_util.h"
#include "csrc/ops/embedding.h"
#include "tests/cases/embedding.h"

namespace beaver {
namespace {

OwnedTensor token_ids(int64_t t, int64_t vocab) {
  OwnedTensor ids(DType::I32, Shape{t});
  PhiloxStream rng(3, 4);
  for (int64_t i = 0; i < t; ++i) ids.ptr<int32_t>()[i] = int32_t(rng.next_u32() % uint32_t(vocab));
  return ids;
}

void cpu_embedding_fwd(benchmark::State& state) {
  const int64_t t = state.range(0), v = state.range(1), h = state.range(2);
  Context ctx = Context::cpu();
  auto ids = token_ids(t, v);
  auto table = bench::random_f32(Shape{v, h}, 1);
  OwnedTensor out(DType::F32, Shape{t, h});
  for (auto _ : state) {
    ops::embedding_fwd(ctx, ids, table, out);
    benchmark::ClobberMemory();
  }
  bench::set_bytes(state, 2.0 * double(t * h) * 4 + double(t) * 4);  // read rows, write out
}
void embedding_bench_shapes(benchmark::internal::Benchmark* b) {
  b->ArgNames({"T", "V", "H"});
  for (const auto& c : cases::kEmbeddingBench) b->Args({c.T, c.V, c.H});
}
BENCHMARK(cpu_embedding_fwd)->Apply(embedding_bench_shapes)->UseRealTime();

void cpu_embedding_bwd(benchmark::State& state) {
  const int64_t t = state.range(0), v = state.range(1), h = state.range(2);
  Context ctx = Context::cpu();
  auto ids = token_ids(t, v);
  auto dout = bench::random_f32(Shape{t, h}, 1);
  OwnedTensor dtable(DType::F32, Shape{v, h});
  for (auto _ : state) {
    ops::embedding_bwd(ctx, ids, dout, dtable, true);
    benchmark::ClobberMemory();
  }
  bench::set_bytes(state, 3.0 * double(t * h) * 4);  // read dout, read+write the rows it hits
}
BENCHMARK(cpu_embedding_bwd)->Apply(embedding_bench_shapes)->UseRealTime();

}  // namespace
}  // namespace beaver
