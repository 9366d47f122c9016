// GPU cases of bench_logprob: fused log-softmax + gather (forward) and its one-pass backward
// over LLaMA-2 (V = 32000) and LLaMA-3 (V = 128256) vocabularies, bf16 logits. Minimum bytes:
// forward reads the logits once; backward reads them and writes dlogits (here in place).
#include <vector>

#include "csrc/ops/logprob.h"
#include "gpu_util.h"

namespace {

using namespace beaver;
using namespace beaver::bench;

void gpu_logprob(benchmark::State& state, DType d, int64_t T, int64_t V, bool backward) {
  auto ctx = gpu_or_skip(state);
  if (!ctx) return;
  const double es = double(dtype_size(d));
  const double bytes = (backward ? 2.0 : 1.0) * double(T * V) * es + 12.0 * double(T);
  const OwnedTensor logits = device_random(*ctx, d, {T, V}, 1, -8.0f, 8.0f);
  const OwnedTensor targets = device_ids(*ctx, T, uint32_t(V), 2);
  const OwnedTensor out(DType::F32, {T}, Device::CUDA), lse(DType::F32, {T}, Device::CUDA);
  const OwnedTensor dout = device_random(*ctx, DType::F32, {T}, 3);
  const OwnedTensor dlogits(d, {T, V}, Device::CUDA);
  ops::cuda::logprob_fwd(*ctx, logits, targets, out, lse, ops::kIgnoreIndex, 1.0f);
  time_calls(state, *ctx, 5, [&](int64_t) {
    if (backward)
      ops::cuda::logprob_bwd(*ctx, logits, targets, lse, dout, dlogits, ops::kIgnoreIndex, 1.0f);
    else
      ops::cuda::logprob_fwd(*ctx, logits, targets, out, lse, ops::kIgnoreIndex, 1.0f);
  });
  report_bytes(state, bytes);
}

}  // namespace

BEAVER_GPU_CEILINGS();
BENCHMARK_CAPTURE(gpu_logprob, fwd_bf16_T4096_V32000, beaver::DType::BF16, 4096, 32000, false)
    ->UseManualTime()->Unit(benchmark::kMicrosecond);
BENCHMARK_CAPTURE(gpu_logprob, bwd_bf16_T4096_V32000, beaver::DType::BF16, 4096, 32000, true)
    ->UseManualTime()->Unit(benchmark::kMicrosecond);
BENCHMARK_CAPTURE(gpu_logprob, fwd_bf16_T4096_V128256, beaver::DType::BF16, 4096, 128256, false)
    ->UseManualTime()->Unit(benchmark::kMicrosecond);
BENCHMARK_CAPTURE(gpu_logprob, bwd_bf16_T4096_V128256, beaver::DType::BF16, 4096, 128256, true)
    ->UseManualTime()->Unit(benchmark::kMicrosecond);
BENCHMARK_CAPTURE(gpu_logprob, fwd_f32_T2048_V32000, beaver::DType::F32, 2048, 32000, false)
    ->UseManualTime()->Unit(benchmark::kMicrosecond);
