// GEMM and the linear layer: argument checks, dispatch, and the CPU twin (OpenBLAS sgemm).
// The linear_* functions are thin wrappers over gemm, so they run on any backend gemm runs on.
// Threads: OpenBLAS is kept at one thread and the CPU twin splits C itself in an OpenMP region
// of the context's thread count, one single-threaded sgemm per slab. OpenBLAS's own pool (the
// pthread build) spins after every call, fighting the OpenMP pool of the elementwise ops for the
// same cores; one pool avoids that. Products too small to pay for a parallel region run whole.
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

GemmSplit gemm_split(int64_t m, int64_t n, int64_t k, int threads) {
  // Below about 2^21 multiply-adds (~20 us on one core) waking a second thread costs more than
  // it saves; each slab keeps at least 32 columns (or 8 rows) so OpenBLAS's kernels stay fed.
  constexpr int64_t kMinWork = int64_t(1) << 21;
  if (threads <= 1 || m * n * k < kMinWork) return {1, false};
  const bool rows = m >= 2 * n || n < 64;  // split the longer side; columns when comparable
  const int64_t cap = rows ? m / 8 : n / 32;
  const int64_t parts = std::min<int64_t>(threads, std::max<int64_t>(1, cap));
  return {parts, rows};
}

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
  if (openblas_get_num_threads() != 1) openblas_set_num_threads(1);
  const int64_t lda = std::max<int64_t>(1, a.size(1));
  const int64_t ldb = std::max<int64_t>(1, b.size(1));
  const float* ap = a.ptr<float>();
  const float* bp = b.ptr<float>();
  // C[r0:r1, c0:c1] from rows r0:r1 of op(A) and columns c0:c1 of op(B).
  auto slab = [&](int64_t r0, int64_t r1, int64_t c0, int64_t c1) {
    if (r1 <= r0 || c1 <= c0) return;
    const float* as = ap + (trans_a ? r0 : r0 * lda);
    const float* bs = bp + (trans_b ? c0 * ldb : c0);
    cblas_sgemm(CblasRowMajor, trans_a ? CblasTrans : CblasNoTrans,
                trans_b ? CblasTrans : CblasNoTrans, int(r1 - r0), int(c1 - c0), int(k), alpha,
                as, int(lda), bs, int(ldb), beta, cp + r0 * n + c0, int(n));
  };
  const GemmSplit split = gemm_split(m, n, k, ctx.threads());
  const int64_t parts = split.parts;
  const bool split_rows = split.split_rows;
  if (parts <= 1) {
    slab(0, m, 0, n);
    return;
  }
  // Slab p of `parts`: whole 16-float (64-byte) column groups, or whole rows, so that no two
  // threads write the same cache line of C.
  const int64_t len = split_rows ? m : n, grain = split_rows ? 1 : 16;
  const int64_t units = (len + grain - 1) / grain;
#pragma omp parallel for num_threads(int(parts)) schedule(static, 1)
  for (int64_t p = 0; p < parts; ++p) {
    const int64_t u0 = units * p / parts, u1 = units * (p + 1) / parts;
    const int64_t s0 = std::min(len, u0 * grain), s1 = std::min(len, u1 * grain);
    if (split_rows)
      slab(s0, s1, 0, n);
    else
      slab(0, m, s0, s1);
  }
}

}  // namespace cpu
}  // namespace beaver::ops
