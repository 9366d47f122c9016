// GPU cases of bench_gemm: cuBLASLt GEMMs at the LLaMA-7B linear-layer shapes (T = 4096 tokens),
// bf16 in / bf16 out and f32 in / f32 out, forward (x W^T) and both backward products.
// FLOPs = 2 M N K per call, reported as TFLOP/s and % of the bf16 GEMM ceiling.
#include "csrc/ops/gemm.h"
#include "gpu_util.h"

namespace {

using namespace beaver;
using namespace beaver::bench;

// C[M,N] = op(A) op(B) with the operands laid out as the linear layer's passes use them.
void gpu_gemm(benchmark::State& state, DType ab, DType c, int64_t M, int64_t N, int64_t K, bool ta,
          bool tb) {
  auto ctx = gpu_or_skip(state);
  if (!ctx) return;
  const OwnedTensor a = device_random(*ctx, ab, ta ? Shape{K, M} : Shape{M, K}, 1);
  const OwnedTensor b = device_random(*ctx, ab, tb ? Shape{N, K} : Shape{K, N}, 2);
  const OwnedTensor out(c, {M, N}, Device::CUDA);
  time_calls(state, *ctx, 5,
             [&](int64_t) { ops::cuda::gemm(*ctx, a, ta, b, tb, out, 1.0f, 0.0f); });
  report_flops(state, 2.0 * double(M) * double(N) * double(K));
}

}  // namespace

BEAVER_GPU_CEILINGS();
// linear_fwd: y[T,out] = x[T,in] W[out,in]^T
BENCHMARK_CAPTURE(gpu_gemm, fwd_bf16_T4096_4096x4096, beaver::DType::BF16, beaver::DType::BF16, 4096,
                  4096, 4096, false, true)->UseManualTime()->Unit(benchmark::kMicrosecond);
BENCHMARK_CAPTURE(gpu_gemm, fwd_bf16_T4096_11008x4096, beaver::DType::BF16, beaver::DType::BF16,
                  4096, 11008, 4096, false, true)->UseManualTime()->Unit(benchmark::kMicrosecond);
// linear_bwd_input: dx[T,in] = dy[T,out] W[out,in]
BENCHMARK_CAPTURE(gpu_gemm, dgrad_bf16_T4096_4096x11008, beaver::DType::BF16, beaver::DType::BF16,
                  4096, 4096, 11008, false, false)->UseManualTime()->Unit(benchmark::kMicrosecond);
// linear_bwd_weight: dW[out,in] = dy[T,out]^T x[T,in], fp32 gradient output
BENCHMARK_CAPTURE(gpu_gemm, wgrad_bf16_f32out_11008x4096_T4096, beaver::DType::BF16,
                  beaver::DType::F32, 11008, 4096, 4096, true, false)
    ->UseManualTime()->Unit(benchmark::kMicrosecond);
BENCHMARK_CAPTURE(gpu_gemm, fwd_f32_T2048_4096x4096, beaver::DType::F32, beaver::DType::F32, 2048,
                  4096, 4096, false, true)->UseManualTime()->Unit(benchmark::kMicrosecond);
