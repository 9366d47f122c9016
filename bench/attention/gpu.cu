// GPU attention benchmarks: causal flash forward and backward (bf16, hd 128 with 16 heads and
// hd 64 with 32 heads, batch × seq = 16k tokens, seq 1k..16k) and split-KV decode (batch 8,
// 32 query / 8 KV heads, hd 128, caches 4k..32k), plus the device-to-device copy rate as the
// bandwidth ceiling of the same run. FLOPs: forward 4·b·h·s²·d halved for causal, backward
// 2.5× forward; decode counts the minimum bytes (K and V of every valid cache row once, q, out).
// Each iteration times `kReps` launches with CUDA events and reports their median. Without a
// device the GPU cases are not registered and one line says why.
#include <benchmark/benchmark.h>
#include <cuda_runtime.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <functional>
#include <string>
#include <vector>

#include "bench_util.h"
#include "csrc/context.h"
#include "csrc/cuda_check.h"
#include "csrc/device.h"
#include "csrc/ops/attention.h"

namespace beaver::bench {
namespace {

constexpr int kReps = 20;
constexpr int64_t kTokens = 16384;  // batch × seq

// Median device time (seconds) of kReps runs of fn on ctx's stream, each between two events.
double median_seconds(Context& ctx, const std::function<void()>& fn) {
  const auto st = static_cast<cudaStream_t>(ctx.stream());
  std::vector<cudaEvent_t> ev(2 * kReps);
  for (auto& e : ev) BEAVER_CUDA_CHECK(cudaEventCreate(&e));
  for (int r = 0; r < kReps; ++r) {
    BEAVER_CUDA_CHECK(cudaEventRecord(ev[size_t(2 * r)], st));
    fn();
    BEAVER_CUDA_CHECK(cudaEventRecord(ev[size_t(2 * r + 1)], st));
  }
  BEAVER_CUDA_CHECK(cudaEventSynchronize(ev.back()));
  std::vector<float> ms(kReps);
  for (int r = 0; r < kReps; ++r)
    BEAVER_CUDA_CHECK(cudaEventElapsedTime(&ms[size_t(r)], ev[size_t(2 * r)], ev[size_t(2 * r + 1)]));
  for (auto& e : ev) BEAVER_CUDA_CHECK(cudaEventDestroy(e));
  std::nth_element(ms.begin(), ms.begin() + kReps / 2, ms.end());
  return double(ms[size_t(kReps / 2)]) * 1e-3;
}

// Random bf16 device tensor (never zeros: zeros can run faster than real data).
OwnedTensor random_bf16(Shape s, uint64_t seed) {
  const OwnedTensor f = random_f32(s, seed);
  OwnedTensor h(DType::BF16, s);
  for (int64_t i = 0; i < h.numel(); ++i) h.ptr<bf16>()[i] = to_bf16(f.ptr<float>()[i]);
  OwnedTensor d(DType::BF16, s, Device::CUDA);
  copy_tensor(d, h);
  return d;
}

OwnedTensor device_ranges(int64_t B, int32_t begin, int32_t end) {
  OwnedTensor h(DType::I32, Shape{B, 2});
  for (int64_t b = 0; b < B; ++b) {
    h.ptr<int32_t>()[2 * b] = begin;
    h.ptr<int32_t>()[2 * b + 1] = end;
  }
  OwnedTensor d(DType::I32, Shape{B, 2}, Device::CUDA);
  copy_tensor(d, h);
  return d;
}

struct Prefill {
  int64_t B, S, nh, d;
  OwnedTensor q, k, v, out, lse, dout, dq, dk, dv, ranges;
  Prefill(int64_t S_, int64_t d_)
      : B(kTokens / S_), S(S_), nh(d_ == 128 ? 16 : 32), d(d_) {
    const Shape qs{B, S, nh, d}, ls{B, nh, S};
    q = random_bf16(qs, 1);
    k = random_bf16(qs, 2);
    v = random_bf16(qs, 3);
    dout = random_bf16(qs, 4);
    out = OwnedTensor(DType::BF16, qs, Device::CUDA);
    dq = OwnedTensor(DType::BF16, qs, Device::CUDA);
    dk = OwnedTensor(DType::BF16, qs, Device::CUDA);
    dv = OwnedTensor(DType::BF16, qs, Device::CUDA);
    lse = OwnedTensor(DType::F32, ls, Device::CUDA);
    ranges = device_ranges(B, 0, int32_t(S));
  }
  float scale() const { return 1.0f / std::sqrt(float(d)); }
  double fwd_flops() const { return 4.0 * double(B * nh) * double(S) * double(S) * double(d) / 2.0; }
};

void BM_AttentionFwdCuda(benchmark::State& state) {
  Context ctx = Context::cuda();
  Prefill p(state.range(0), state.range(1));
  auto run = [&] { ops::attention_fwd(ctx, p.q, p.k, p.v, p.ranges, p.scale(), p.out, p.lse); };
  run();
  ctx.synchronize();
  for (auto _ : state) state.SetIterationTime(median_seconds(ctx, run));
  set_flops(state, p.fwd_flops());
  state.SetLabel("B=" + std::to_string(p.B) + " S=" + std::to_string(p.S) + " nh=" +
                 std::to_string(p.nh) + " d=" + std::to_string(p.d) + " causal");
}

void BM_AttentionBwdCuda(benchmark::State& state) {
  Context ctx = Context::cuda();
  Prefill p(state.range(0), state.range(1));
  ops::attention_fwd(ctx, p.q, p.k, p.v, p.ranges, p.scale(), p.out, p.lse);
  auto run = [&] {
    ops::attention_bwd(ctx, p.q, p.k, p.v, p.out, p.dout, p.lse, p.ranges, p.scale(), p.dq, p.dk,
                       p.dv);
  };
  run();
  ctx.synchronize();
  for (auto _ : state) state.SetIterationTime(median_seconds(ctx, run));
  set_flops(state, 2.5 * p.fwd_flops());
  state.SetLabel("B=" + std::to_string(p.B) + " S=" + std::to_string(p.S) + " nh=" +
                 std::to_string(p.nh) + " d=" + std::to_string(p.d) + " causal");
}

void BM_DecodeAttentionCuda(benchmark::State& state) {
  const int64_t B = 8, nh = 32, nkv = 8, d = 128, L = state.range(0);
  Context ctx = Context::cuda();
  OwnedTensor q = random_bf16(Shape{B, nh, d}, 5);
  OwnedTensor kc = random_bf16(Shape{B, L, nkv, d}, 6), vc = random_bf16(Shape{B, L, nkv, d}, 7);
  OwnedTensor out(DType::BF16, Shape{B, nh, d}, Device::CUDA);
  OwnedTensor ranges = device_ranges(B, 0, int32_t(L));
  const float scale = 1.0f / std::sqrt(float(d));
  auto run = [&] { ops::decode_attention(ctx, q, kc, vc, ranges, scale, out); };
  run();
  ctx.synchronize();
  for (auto _ : state) state.SetIterationTime(median_seconds(ctx, run));
  set_bytes(state, double(2 * B * L * nkv * d * 2 + 2 * B * nh * d * 2));
  state.SetLabel("B=8 nh=32 nkv=8 d=128 cache=" + std::to_string(L));
}

// The bandwidth ceiling of this run: a 1 GiB device-to-device copy (bytes read + written).
void BM_CopyCeilingCuda(benchmark::State& state) {
  Context ctx = Context::cuda();
  const size_t bytes = size_t(1) << 30;
  Buffer a(bytes, Device::CUDA), b(bytes, Device::CUDA);
  device_memset(a.data(), 0x3c, bytes);
  const auto st = static_cast<cudaStream_t>(ctx.stream());
  auto run = [&] {
    BEAVER_CUDA_CHECK(cudaMemcpyAsync(b.data(), a.data(), bytes, cudaMemcpyDeviceToDevice, st));
  };
  run();
  ctx.synchronize();
  for (auto _ : state) state.SetIterationTime(median_seconds(ctx, run));
  set_bytes(state, 2.0 * double(bytes));
}

// Registers the GPU cases only when a device is usable.
struct Register {
  Register() {
    std::string why;
    if (!cuda_available(&why)) {
      std::fprintf(stderr, "bench_attention: GPU cases skipped, no usable CUDA device (%s)\n",
                   why.c_str());
      return;
    }
    benchmark::RegisterBenchmark("CopyCeilingCuda", BM_CopyCeilingCuda)
        ->UseManualTime()
        ->Unit(benchmark::kMicrosecond);
    for (const int64_t d : {128, 64})
      for (int64_t S = 1024; S <= 16384; S *= 2) {
        benchmark::RegisterBenchmark("AttentionFwdCuda", BM_AttentionFwdCuda)
            ->Args({S, d})
            ->UseManualTime()
            ->Unit(benchmark::kMicrosecond);
        benchmark::RegisterBenchmark("AttentionBwdCuda", BM_AttentionBwdCuda)
            ->Args({S, d})
            ->UseManualTime()
            ->Unit(benchmark::kMicrosecond);
      }
    for (int64_t L = 4096; L <= 32768; L *= 2)
      benchmark::RegisterBenchmark("DecodeAttentionCuda", BM_DecodeAttentionCuda)
          ->Arg(L)
          ->UseManualTime()
          ->Unit(benchmark::kMicrosecond);
  }
};
const Register register_gpu_cases;

}  // namespace
}  // namespace beaver::bench
