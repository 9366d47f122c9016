// CPU attention benchmarks: causal prefill forward and backward (B = 1, nh = 8, MHA and GQA,
// d = 64, S = 256 / 512) and decode over a 1024-row KV cache (B = 4). FLOP/s use the project
// convention: forward 4·B·nh·S²·d halved for causal, backward 2.5× the forward; decode counts
// 4·B·nh·len·d for the len cached keys each query reads. Rates use wall-clock time (the ops
// run on OpenMP threads; the thread count is OpenMP's default, set with OMP_NUM_THREADS).
#include <benchmark/benchmark.h>

#include <cmath>
#include <vector>

#include "bench_util.h"
#include "csrc/context.h"
#include "csrc/ops/attention.h"
#include "tests/cases/attention.h"

namespace beaver::bench {
namespace {

constexpr int64_t kHeads = cases::kAttentionBenchHeads, kDim = cases::kAttentionBenchDim;

OwnedTensor full_ranges(int64_t B, int32_t end) {
  OwnedTensor r(DType::I32, Shape{B, 2});
  for (int64_t b = 0; b < B; ++b) {
    r.ptr<int32_t>()[2 * b] = 0;
    r.ptr<int32_t>()[2 * b + 1] = end;
  }
  return r;
}

double causal_fwd_flops(int64_t B, int64_t S) {
  return 4.0 * double(B * kHeads) * double(S) * double(S) * double(kDim) / 2.0;
}

// Args: S, nkv.
void cpu_attention_fwd(benchmark::State& state) {
  const int64_t B = 1, S = state.range(0), nkv = state.range(1);
  Context ctx = Context::cpu();
  auto q = random_f32(Shape{B, S, kHeads, kDim}, 1);
  auto k = random_f32(Shape{B, S, nkv, kDim}, 2);
  auto v = random_f32(Shape{B, S, nkv, kDim}, 3);
  auto ranges = full_ranges(B, int32_t(S));
  OwnedTensor out(DType::F32, Shape{B, S, kHeads, kDim}), lse(DType::F32, Shape{B, kHeads, S});
  const float scale = 1.0f / std::sqrt(float(kDim));
  for (auto _ : state) {
    ops::attention_fwd(ctx, q, k, v, ranges, scale, out, lse);
    benchmark::DoNotOptimize(out.ptr<float>());
  }
  set_flops(state, causal_fwd_flops(B, S));
}

void cpu_attention_bwd(benchmark::State& state) {
  const int64_t B = 1, S = state.range(0), nkv = state.range(1);
  Context ctx = Context::cpu();
  auto q = random_f32(Shape{B, S, kHeads, kDim}, 1);
  auto k = random_f32(Shape{B, S, nkv, kDim}, 2);
  auto v = random_f32(Shape{B, S, nkv, kDim}, 3);
  auto dout = random_f32(Shape{B, S, kHeads, kDim}, 4);
  auto ranges = full_ranges(B, int32_t(S));
  OwnedTensor out(DType::F32, Shape{B, S, kHeads, kDim}), lse(DType::F32, Shape{B, kHeads, S});
  OwnedTensor dq(DType::F32, Shape{B, S, kHeads, kDim});
  OwnedTensor dk(DType::F32, Shape{B, S, nkv, kDim}), dv(DType::F32, Shape{B, S, nkv, kDim});
  const float scale = 1.0f / std::sqrt(float(kDim));
  ops::attention_fwd(ctx, q, k, v, ranges, scale, out, lse);
  for (auto _ : state) {
    ops::attention_bwd(ctx, q, k, v, out, dout, lse, ranges, scale, dq, dk, dv);
    benchmark::DoNotOptimize(dq.ptr<float>());
  }
  set_flops(state, 2.5 * causal_fwd_flops(B, S));
}

// Args: cached length (the query is the last of these rows), nkv.
void cpu_decode_attention(benchmark::State& state) {
  const int64_t B = 4, Smax = 1024, len = state.range(0), nkv = state.range(1);
  Context ctx = Context::cpu();
  auto q = random_f32(Shape{B, kHeads, kDim}, 1);
  auto kc = random_f32(Shape{B, Smax, nkv, kDim}, 2);
  auto vc = random_f32(Shape{B, Smax, nkv, kDim}, 3);
  auto ranges = full_ranges(B, int32_t(len));
  OwnedTensor out(DType::F32, Shape{B, kHeads, kDim});
  const float scale = 1.0f / std::sqrt(float(kDim));
  for (auto _ : state) {
    ops::decode_attention(ctx, q, kc, vc, ranges, scale, out);
    benchmark::DoNotOptimize(out.ptr<float>());
  }
  set_flops(state, 4.0 * double(B * kHeads * len * kDim));
  // Each kv head's keys and values are read once per query head of its group.
  set_bytes(state, double(2 * B * len * nkv * kDim) * sizeof(float));
}

BENCHMARK(cpu_attention_fwd)
    ->ArgNames({"S", "nkv"})
    ->ArgsProduct({cases::kAttentionBenchS, cases::kAttentionBenchKvHeads})
    ->Unit(benchmark::kMillisecond)
    ->UseRealTime();
BENCHMARK(cpu_attention_bwd)
    ->ArgNames({"S", "nkv"})
    ->ArgsProduct({cases::kAttentionBenchS, cases::kAttentionBenchKvHeads})
    ->Unit(benchmark::kMillisecond)
    ->UseRealTime();
BENCHMARK(cpu_decode_attention)
    ->ArgNames({"len", "nkv"})
    ->ArgsProduct({cases::kAttentionBenchDecodeLen, cases::kAttentionBenchKvHeads})
    ->Unit(benchmark::kMicrosecond)
    ->UseRealTime();

}  // namespace
}  // namespace beaver::bench
