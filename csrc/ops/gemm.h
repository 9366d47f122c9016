// GEMM and the linear layer (LLaMA has no biases). Row-major throughout.
//   gemm:  C[M,N] = alpha * op(A) @ op(B) + beta * C, op(X) = X or X^T.
//          A is [M,K] (or [K,M] with trans_a), B is [K,N] (or [N,K] with trans_b).
//   linear_fwd:        y[T,out]  = x[T,in] @ W[out,in]^T
//   linear_bwd_input:  dx[T,in]  (+)= dy[T,out] @ W[out,in]
//   linear_bwd_weight: dW[out,in] (+)= dy[T,out]^T @ x[T,in]
// CPU: f32 only, OpenBLAS sgemm. CUDA: cuBLASLt, A/B bf16 or f32 (same dtype), C bf16 or f32,
// fp32 accumulation; deterministic (no split-K atomics).
#pragma once

#include "csrc/context.h"

namespace beaver::ops {

void gemm(Context& ctx, const Tensor& a, bool trans_a, const Tensor& b, bool trans_b,
          const Tensor& c, float alpha = 1.0f, float beta = 0.0f);
void linear_fwd(Context& ctx, const Tensor& x, const Tensor& w, const Tensor& y);
// linear_fwd for a decode step, a few rows: on the CPU, at most cpu::kSmallRows rows run on
// a kernel of dot products that reads x and W in place where the CPU has AVX-512 (OpenBLAS packs
// all of W on every call, which at 8 rows costs more than the products), so that each row's
// result is a function of that row, W and the sizes alone: the same in a batch of any size and
// at any thread count. Other shapes, CPUs and devices: linear_fwd. (A training or scoring
// forward keeps linear_fwd: its rows must not depend on which path their batch's size picks.)
void linear_fwd_rows(Context& ctx, const Tensor& x, const Tensor& w, const Tensor& y);
void linear_bwd_input(Context& ctx, const Tensor& dy, const Tensor& w, const Tensor& dx,
                      bool accumulate);
void linear_bwd_weight(Context& ctx, const Tensor& dy, const Tensor& x, const Tensor& dw,
                       bool accumulate);

namespace cpu {
// How the CPU twin splits C over threads: `parts` slabs (1: one sgemm call), of rows when
// `split_rows`, else of columns. Exposed for the tests.
struct GemmSplit {
  int64_t parts;
  bool split_rows;
};
GemmSplit gemm_split(int64_t m, int64_t n, int64_t k, int threads);
// linear_fwd_rows' small-rows kernel: whether m rows take it (AVX-512 and m <= kSmallRows).
inline constexpr int64_t kSmallRows = 16;
bool small_rows_kernel(int64_t m);
void linear_fwd_rows(Context& ctx, const Tensor& x, const Tensor& w, const Tensor& y);
void gemm(Context& ctx, const Tensor& a, bool trans_a, const Tensor& b, bool trans_b,
          const Tensor& c, float alpha, float beta);
}  // namespace cpu
namespace cuda {
void gemm(Context& ctx, const Tensor& a, bool trans_a, const Tensor& b, bool trans_b,
          const Tensor& c, float alpha, float beta);
}  // namespace cuda

}  // namespace beaver::ops
