// Reference rows of bench_attention: cuDNN's fused SDPA (flash forward and backward, causal,
// bf16, through the cuDNN frontend's graph API, tests/gpu/cudnn_sdpa.h) on the shapes of
// gpu.cu's hd-128 cases, and on a GQA shape (32 query / 8 KV heads, hd 128) beside Beaver's own
// kernels on that GQA shape. Same FLOP convention as gpu.cu (forward 4·b·h·s²·d halved for
// causal, backward 2.5× forward). Without cuDNN SDPA in the build (BEAVER_CUDNN_FRONTEND_DIR
// unset) the cuDNN cases report that and time nothing.
#include <cmath>
#include <memory>
#include <string>

#include "csrc/ops/attention.h"
#include "gpu_util.h"
#include "tests/gpu/cudnn_sdpa.h"

namespace {

using namespace beaver;
using namespace beaver::bench;

constexpr int64_t kTokens = 16384;  // batch × seq, as gpu.cu

struct Shapes {
  int64_t B, S, nh, nkv, d;
  OwnedTensor q, k, v, out, lse, dout, dq, dk, dv, ranges;
  Shapes(Context& ctx, int64_t S_, int64_t nh_, int64_t nkv_, int64_t d_)
      : B(kTokens / S_), S(S_), nh(nh_), nkv(nkv_), d(d_) {
    const Shape qs{B, S, nh, d}, ks{B, S, nkv, d}, ls{B, nh, S};
    q = device_random(ctx, DType::BF16, qs, 1);
    k = device_random(ctx, DType::BF16, ks, 2);
    v = device_random(ctx, DType::BF16, ks, 3);
    dout = device_random(ctx, DType::BF16, qs, 4);
    out = OwnedTensor(DType::BF16, qs, Device::CUDA);
    dq = OwnedTensor(DType::BF16, qs, Device::CUDA);
    dk = OwnedTensor(DType::BF16, ks, Device::CUDA);
    dv = OwnedTensor(DType::BF16, ks, Device::CUDA);
    lse = OwnedTensor(DType::F32, ls, Device::CUDA);
    OwnedTensor h(DType::I32, Shape{B, 2});
    for (int64_t b = 0; b < B; ++b) {
      h.ptr<int32_t>()[2 * b] = 0;
      h.ptr<int32_t>()[2 * b + 1] = int32_t(S);
    }
    ranges = OwnedTensor(DType::I32, Shape{B, 2}, Device::CUDA);
    ctx.copy(ranges, h);
  }
  float scale() const { return 1.0f / std::sqrt(float(d)); }
  double fwd_flops() const {
    return 4.0 * double(B * nh) * double(S) * double(S) * double(d) / 2.0;
  }
};

void gpu_cudnn_sdpa(benchmark::State& state, int64_t S, int64_t nh, int64_t nkv, bool backward) {
  auto ctx = gpu_or_skip(state);
  if (!ctx) return;
  Shapes p(*ctx, S, nh, nkv, 128);
  test::CudnnSdpa sdpa(*ctx, int(p.B), int(S), int(nh), int(nkv), 128, p.scale(), backward);
  std::string err = sdpa.forward(p.q, p.k, p.v, p.out, p.lse);
  if (!err.empty()) {
    state.SkipWithError(err.c_str());
    return;
  }
  if (backward) {
    time_calls(state, *ctx, 5, [&](int64_t) {
      err = sdpa.backward(p.q, p.k, p.v, p.out, p.dout, p.lse, p.dq, p.dk, p.dv);
    });
  } else {
    time_calls(state, *ctx, 5, [&](int64_t) { err = sdpa.forward(p.q, p.k, p.v, p.out, p.lse); });
  }
  if (!err.empty()) state.SkipWithError(err.c_str());
  report_flops(state, (backward ? 2.5 : 1.0) * p.fwd_flops());
}

void gpu_attention_gqa(benchmark::State& state, int64_t S, bool backward) {
  auto ctx = gpu_or_skip(state);
  if (!ctx) return;
  Shapes p(*ctx, S, 32, 8, 128);
  ops::cuda::attention_fwd(*ctx, p.q, p.k, p.v, p.ranges, p.scale(), p.out, p.lse);
  time_calls(state, *ctx, 5, [&](int64_t) {
    if (backward)
      ops::cuda::attention_bwd(*ctx, p.q, p.k, p.v, p.out, p.dout, p.lse, p.ranges, p.scale(),
                               p.dq, p.dk, p.dv);
    else
      ops::cuda::attention_fwd(*ctx, p.q, p.k, p.v, p.ranges, p.scale(), p.out, p.lse);
  });
  report_flops(state, (backward ? 2.5 : 1.0) * p.fwd_flops());
}

void gpu_cudnn_sdpa_fwd(benchmark::State& st, int64_t S, int64_t nh, int64_t nkv, bool) {
  gpu_cudnn_sdpa(st, S, nh, nkv, false);
}
void gpu_cudnn_sdpa_bwd(benchmark::State& st, int64_t S, int64_t nh, int64_t nkv, bool) {
  gpu_cudnn_sdpa(st, S, nh, nkv, true);
}
void gpu_attention_gqa_fwd(benchmark::State& st, int64_t S, bool) { gpu_attention_gqa(st, S, false); }
void gpu_attention_gqa_bwd(benchmark::State& st, int64_t S, bool) { gpu_attention_gqa(st, S, true); }

}  // namespace

#define BEAVER_CUDNN_CASE(fn, name, ...) \
  BENCHMARK_CAPTURE(fn, name, __VA_ARGS__)->UseManualTime()->Unit(benchmark::kMicrosecond)
BEAVER_CUDNN_CASE(gpu_cudnn_sdpa_fwd, hd128_S1024, 1024, 16, 16, false);
BEAVER_CUDNN_CASE(gpu_cudnn_sdpa_fwd, hd128_S4096, 4096, 16, 16, false);
BEAVER_CUDNN_CASE(gpu_cudnn_sdpa_fwd, hd128_S16384, 16384, 16, 16, false);
BEAVER_CUDNN_CASE(gpu_cudnn_sdpa_bwd, hd128_S1024, 1024, 16, 16, true);
BEAVER_CUDNN_CASE(gpu_cudnn_sdpa_bwd, hd128_S4096, 4096, 16, 16, true);
BEAVER_CUDNN_CASE(gpu_cudnn_sdpa_bwd, hd128_S16384, 16384, 16, 16, true);
BEAVER_CUDNN_CASE(gpu_cudnn_sdpa_fwd, gqa32x8_hd128_S4096, 4096, 32, 8, false);
BEAVER_CUDNN_CASE(gpu_cudnn_sdpa_bwd, gqa32x8_hd128_S4096, 4096, 32, 8, true);
BEAVER_CUDNN_CASE(gpu_attention_gqa_fwd, gqa32x8_hd128_S4096, 4096, false);
BEAVER_CUDNN_CASE(gpu_attention_gqa_bwd, gqa32x8_hd128_S4096, 4096, true);
