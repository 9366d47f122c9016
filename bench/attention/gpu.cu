// GPU cases of bench_attention: causal flash forward and backward (bf16; hd 128 with 16 heads
// and hd 64 with 32 heads, batch × seq = 16k tokens, seq 1k..16k) and split-KV decode (batch 8,
// 32 query / 8 KV heads, hd 128, caches 4k..32k). FLOPs: forward 4·b·h·s²·d halved for causal,
// backward 2.5× forward. Decode bytes: K and V of every valid cache row once, plus q and out.
// bench/torch_attention_baseline.py times PyTorch SDPA (flash and cuDNN) on the same shapes.
#include <cmath>
#include <vector>

#include "csrc/ops/attention.h"
#include "gpu_util.h"

namespace {

using namespace beaver;
using namespace beaver::bench;

constexpr int64_t kTokens = 16384;  // batch × seq

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
  Prefill(Context& ctx, int64_t S_, int64_t d_)
      : B(kTokens / S_), S(S_), nh(d_ == 128 ? 16 : 32), d(d_) {
    const Shape qs{B, S, nh, d}, ls{B, nh, S};
    q = device_random(ctx, DType::BF16, qs, 1);
    k = device_random(ctx, DType::BF16, qs, 2);
    v = device_random(ctx, DType::BF16, qs, 3);
    dout = device_random(ctx, DType::BF16, qs, 4);
    out = OwnedTensor(DType::BF16, qs, Device::CUDA);
    dq = OwnedTensor(DType::BF16, qs, Device::CUDA);
    dk = OwnedTensor(DType::BF16, qs, Device::CUDA);
    dv = OwnedTensor(DType::BF16, qs, Device::CUDA);
    lse = OwnedTensor(DType::F32, ls, Device::CUDA);
    ranges = device_ranges(B, 0, int32_t(S));
  }
  float scale() const { return 1.0f / std::sqrt(float(d)); }
  double fwd_flops() const {
    return 4.0 * double(B * nh) * double(S) * double(S) * double(d) / 2.0;
  }
};

// Inputs of 16k tokens × 2048 (64 MiB per tensor) already exceed L2: no rotation needed.
void gpu_attention_fwd(benchmark::State& state, int64_t S, int64_t d) {
  auto ctx = gpu_or_skip(state);
  if (!ctx) return;
  Prefill p(*ctx, S, d);
  time_calls(state, *ctx, 5, [&](int64_t) {
    ops::cuda::attention_fwd(*ctx, p.q, p.k, p.v, p.ranges, p.scale(), p.out, p.lse);
  });
  report_flops(state, p.fwd_flops());
}

void gpu_attention_bwd(benchmark::State& state, int64_t S, int64_t d) {
  auto ctx = gpu_or_skip(state);
  if (!ctx) return;
  Prefill p(*ctx, S, d);
  ops::cuda::attention_fwd(*ctx, p.q, p.k, p.v, p.ranges, p.scale(), p.out, p.lse);
  time_calls(state, *ctx, 5, [&](int64_t) {
    ops::cuda::attention_bwd(*ctx, p.q, p.k, p.v, p.out, p.dout, p.lse, p.ranges, p.scale(),
                             p.dq, p.dk, p.dv);
  });
  report_flops(state, 2.5 * p.fwd_flops());
}

struct DecodeSet {
  OwnedTensor kc, vc;
};

void gpu_decode_attention(benchmark::State& state, int64_t L) {
  auto ctx = gpu_or_skip(state);
  if (!ctx) return;
  const int64_t B = 8, nh = 32, nkv = 8, d = 128;
  const double bytes = double(2 * B * L * nkv * d * 2 + 2 * B * nh * d * 2);
  std::vector<DecodeSet> sets;
  for (int i = rotation_count(*ctx, bytes); i > 0; --i)
    sets.push_back({device_random(*ctx, DType::BF16, {B, L, nkv, d}, 10 + uint64_t(i)),
                    device_random(*ctx, DType::BF16, {B, L, nkv, d}, 20 + uint64_t(i))});
  const OwnedTensor q = device_random(*ctx, DType::BF16, {B, nh, d}, 5);
  const OwnedTensor out(DType::BF16, {B, nh, d}, Device::CUDA);
  const OwnedTensor ranges = device_ranges(B, 0, int32_t(L));
  const float scale = 1.0f / std::sqrt(float(d));
  time_calls(state, *ctx, 20, [&](int64_t call) {
    const DecodeSet& s = sets[size_t(call) % sets.size()];
    ops::cuda::decode_attention(*ctx, q, s.kc, s.vc, ranges, scale, out);
  });
  report_bytes(state, bytes);
}

}  // namespace

BEAVER_GPU_CEILINGS();
BENCHMARK_CAPTURE(gpu_attention_fwd, hd128_S1024, 1024, 128)->UseManualTime()->Unit(benchmark::kMicrosecond);
BENCHMARK_CAPTURE(gpu_attention_fwd, hd128_S2048, 2048, 128)->UseManualTime()->Unit(benchmark::kMicrosecond);
BENCHMARK_CAPTURE(gpu_attention_fwd, hd128_S4096, 4096, 128)->UseManualTime()->Unit(benchmark::kMicrosecond);
BENCHMARK_CAPTURE(gpu_attention_fwd, hd128_S8192, 8192, 128)->UseManualTime()->Unit(benchmark::kMicrosecond);
BENCHMARK_CAPTURE(gpu_attention_fwd, hd128_S16384, 16384, 128)->UseManualTime()->Unit(benchmark::kMicrosecond);
BENCHMARK_CAPTURE(gpu_attention_fwd, hd64_S1024, 1024, 64)->UseManualTime()->Unit(benchmark::kMicrosecond);
BENCHMARK_CAPTURE(gpu_attention_fwd, hd64_S4096, 4096, 64)->UseManualTime()->Unit(benchmark::kMicrosecond);
BENCHMARK_CAPTURE(gpu_attention_fwd, hd64_S16384, 16384, 64)->UseManualTime()->Unit(benchmark::kMicrosecond);
BENCHMARK_CAPTURE(gpu_attention_bwd, hd128_S1024, 1024, 128)->UseManualTime()->Unit(benchmark::kMicrosecond);
BENCHMARK_CAPTURE(gpu_attention_bwd, hd128_S2048, 2048, 128)->UseManualTime()->Unit(benchmark::kMicrosecond);
BENCHMARK_CAPTURE(gpu_attention_bwd, hd128_S4096, 4096, 128)->UseManualTime()->Unit(benchmark::kMicrosecond);
BENCHMARK_CAPTURE(gpu_attention_bwd, hd128_S8192, 8192, 128)->UseManualTime()->Unit(benchmark::kMicrosecond);
BENCHMARK_CAPTURE(gpu_attention_bwd, hd128_S16384, 16384, 128)->UseManualTime()->Unit(benchmark::kMicrosecond);
BENCHMARK_CAPTURE(gpu_attention_bwd, hd64_S1024, 1024, 64)->UseManualTime()->Unit(benchmark::kMicrosecond);
BENCHMARK_CAPTURE(gpu_attention_bwd, hd64_S4096, 4096, 64)->UseManualTime()->Unit(benchmark::kMicrosecond);
BENCHMARK_CAPTURE(gpu_attention_bwd, hd64_S16384, 16384, 64)->UseManualTime()->Unit(benchmark::kMicrosecond);
BENCHMARK_CAPTURE(gpu_decode_attention, cache4096, 4096)->UseManualTime()->Unit(benchmark::kMicrosecond);
BENCHMARK_CAPTURE(gpu_decode_attention, cache8192, 8192)->UseManualTime()->Unit(benchmark::kMicrosecond);
BENCHMARK_CAPTURE(gpu_decode_attention, cache16384, 16384)->UseManualTime()->Unit(benchmark::kMicrosecond);
BENCHMARK_CAPTURE(gpu_decode_attention, cache32768, 32768)->UseManualTime()->Unit(benchmark::kMicrosecond);
