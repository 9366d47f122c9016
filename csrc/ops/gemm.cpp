// GEMM and the linear layer: argument checks, dispatch, and the CPU twin (OpenBLAS sgemm).
// The linear_* functions are thin wrappers over gemm, so they run on any backend gemm runs on.
// OpenBLAS keeps its own thread pool; it is sized to the context's thread count before each
// call so that CPU runs use exactly the threads the Context says.
#include "csrc/ops/gemm.h"

#include <cblas.h>

#include <algorithm>
#include <climits>
#include <cstdint>

#include "csrc/ops/dispatch.h"

namespace beaver::ops {
namespace {

bool overlaps(const Tensor& x, const Tensor& y) {
  if (x.nbytes() == 0 || y.nbytes() == 0) return false;
  const auto* xb = static_cast<const char*>(x.data);
  const auto* yb = static_cast<const char*>(y.data);
  return xb < yb + y.nbytes() && yb < xb + x.nbytes();
}

}  // namespace

void gemm(Context& ctx, const Tensor& a, bool trans_a, const Tensor& b, bool trans_b,
          const Tensor& c, float alpha, float beta) {
  constexpr std::string_view op = "gemm";
  expect_rank(a, 2, op, "a");
  expect_rank(b, 2, op, "b");
  expect_rank(c, 2, op, "c");
  expect_defined(a, op, "a");
  expect_defined(b, op, "b");
  expect_defined(c, op, "c");
  BEAVER_CHECK(is_float(a.dtype) && a.dtype != DType::F16, op, ": a has dtype ",
               dtype_name(a.dtype), " but expected f32 or bf16");
  expect_dtype(b, a.dtype, op, "b");
  BEAVER_CHECK(is_float(c.dtype) && c.dtype != DType::F16, op, ": c has dtype ",
               dtype_name(c.dtype), " but expected f32 or bf16");
  const int64_t m = trans_a ? a.size(1) : a.size(0);
  const int64_t k = trans_a ? a.size(0) : a.size(1);
  const int64_t kb = trans_b ? b.size(1) : b.size(0);
  const int64_t n = trans_b ? b.size(0) : b.size(1);
  if (kb != k)
    BEAVER_FAIL(op, ": inner dimensions differ: op(a) is [", m, ", ", k, "] (a ",
                a.shape.str(), trans_a ? " transposed" : "", ") but op(b) is [", kb, ", ", n,
                "] (b ", b.shape.str(), trans_b ? " transposed" : "", ")");
  expect_shape(c, Shape{m, n}, op, "c");
  BEAVER_CHECK(!overlaps(c, a) && !overlaps(c, b), op, ": c must not overlap a or b");
  expect_on(ctx, {&a, &b, &c}, op);
  BEAVER_DISPATCH(ctx, gemm, ctx, a, trans_a, b, trans_b, c, alpha, beta);
}

void linear_fwd(Context& ctx, const Tensor& x, const Tensor& w, const Tensor& y) {
  constexpr std::string_view op = "linear_fwd";
  expect_rank(x, 2, op, "x");
  expect_rank(w, 2, op, "w");
  if (w.size(1) != x.size(1))
    BEAVER_FAIL(op, ": w has shape ", w.shape.str(), " but x has shape ", x.shape.str(),
                " (w must be [out, ", x.size(1), "])");
  expect_shape(y, Shape{x.size(0), w.size(0)}, op, "y");
  gemm(ctx, x, false, w, true, y, 1.0f, 0.0f);
}

void linear_bwd_input(Context& ctx, const Tensor& dy, const Tensor& w, const Tensor& dx,
                      bool accumulate) {
  constexpr std::string_view op = "linear_bwd_input";
  expect_rank(dy, 2, op, "dy");
  expect_rank(w, 2, op, "w");
  if (w.size(0) != dy.size(1))
    BEAVER_FAIL(op, ": w has shape ", w.shape.str(), " but dy has shape ", dy.shape.str(),
                " (w must be [", dy.size(1), ", in])");
  expect_shape(dx, Shape{dy.size(0), w.size(1)}, op, "dx");
  gemm(ctx, dy, false, w, false, dx, 1.0f, accumulate ? 1.0f : 0.0f);
}

void linear_bwd_weight(Context& ctx, const Tensor& dy, const Tensor& x, const Tensor& dw,
                       bool accumulate) {
  constexpr std::string_view op = "linear_bwd_weight";
  expect_rank(dy, 2, op, "dy");
  expect_rank(x, 2, op, "x");
  if (x.size(0) != dy.size(0))
    BEAVER_FAIL(op, ": dy has shape ", dy.shape.str(), " but x has shape ", x.shape.str(),
                " (both need the same number of rows)");
  expect_shape(dw, Shape{dy.size(1), x.size(1)}, op, "dw");
  gemm(ctx, dy, true, x, false, dw, 1.0f, accumulate ? 1.0f : 0.0f);
}

namespace cpu {

void gemm(Context& ctx, const Tensor& a, bool trans_a, const Tensor& b, bool trans_b,
          const Tensor& c, float alpha, float beta) {
  constexpr std::string_view op = "gemm (cpu)";
  expect_dtype(a, DType::F32, op, "a");
  expect_dtype(b, DType::F32, op, "b");
  expect_dtype(c, DType::F32, op, "c");
  const int64_t m = c.size(0), n = c.size(1);
  const int64_t k = trans_a ? a.size(0) : a.size(1);
  BEAVER_CHECK(m <= INT_MAX && n <= INT_MAX && k <= INT_MAX && a.numel() <= INT_MAX &&
                   b.numel() <= INT_MAX && c.numel() <= INT_MAX,
               op, ": sizes exceed the 32-bit BLAS interface (m=", m, ", n=", n, ", k=", k, ")");
  if (m == 0 || n == 0) return;
  float* cp = c.ptr<float>();
  if (k == 0) {
    // No products: C = beta * C, and beta = 0 overwrites (BLAS convention: C is not read).
    for (int64_t i = 0; i < m * n; ++i) cp[i] = beta == 0.0f ? 0.0f : beta * cp[i];
    return;
  }
  if (openblas_get_num_threads() != ctx.threads()) openblas_set_num_threads(ctx.threads());
  const int lda = int(std::max<int64_t>(1, a.size(1)));
  const int ldb = int(std::max<int64_t>(1, b.size(1)));
  cblas_sgemm(CblasRowMajor, trans_a ? CblasTrans : CblasNoTrans,
              trans_b ? CblasTrans : CblasNoTrans, int(m), int(n), int(k), alpha,
              a.ptr<float>(), lda, b.ptr<float>(), ldb, beta, cp, int(n));
}

}  // namespace cpu
}  // namespace beaver::ops
