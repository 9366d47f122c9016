// GEMM and the linear layer: argument checks, dispatch, and the CPU twin (OpenBLAS sgemm).
// The linear_* functions are thin wrappers over gemm, so they run on any backend gemm runs on.
// Threads: OpenBLAS is kept at one thread and the CPU twin splits C itself in an OpenMP region
// of the context's thread count, one single-threaded sgemm per slab. OpenBLAS's own pool (the
// pthread build) spins after every call, fighting the OpenMP pool of the elementwise ops for the
// same cores; one pool avoids that. Products too small to pay for a parallel region run whole.
// linear_fwd_rows (a decode step's linear layers, x [M, K] · W[N, K]ᵀ with M <= kSmallRows) runs
// on the small-rows kernel below where the CPU has AVX-512 (F and VL): OpenBLAS packs the whole
// weight matrix on every call, which at 8 rows costs more than the products themselves.
#include "csrc/ops/gemm.h"

#include <cblas.h>

#include <algorithm>
#include <climits>
#include <cstdint>

#if defined(__x86_64__)
#include <immintrin.h>
#endif

#include "csrc/ops/cpu_clones.h"
#include "csrc/ops/cpu_threads.h"
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

namespace {
// The shapes of y = x · wᵀ: x [rows, in], w [out, in], y [rows, out].
void expect_linear_shapes(const Tensor& x, const Tensor& w, const Tensor& y,
                          std::string_view op) {
  expect_rank(x, 2, op, "x");
  expect_rank(w, 2, op, "w");
  if (w.size(1) != x.size(1))
    BEAVER_FAIL(op, ": w has shape ", w.shape.str(), " but x has shape ", x.shape.str(),
                " (w must be [out, ", x.size(1), "])");
  expect_shape(y, Shape{x.size(0), w.size(0)}, op, "y");
}
}  // namespace

void linear_fwd(Context& ctx, const Tensor& x, const Tensor& w, const Tensor& y) {
  expect_linear_shapes(x, w, y, "linear_fwd");
  gemm(ctx, x, false, w, true, y, 1.0f, 0.0f);
}

void linear_fwd_rows(Context& ctx, const Tensor& x, const Tensor& w, const Tensor& y) {
  constexpr std::string_view op = "linear_fwd_rows";
  expect_linear_shapes(x, w, y, op);
  if (!ctx.is_cpu()) return gemm(ctx, x, false, w, true, y, 1.0f, 0.0f);
  // The checks of gemm, then the CPU twin's own path.
  expect_defined(x, op, "x");
  expect_defined(w, op, "w");
  expect_defined(y, op, "y");
  expect_dtype(x, DType::F32, op, "x");
  expect_dtype(w, DType::F32, op, "w");
  expect_dtype(y, DType::F32, op, "y");
  BEAVER_CHECK(!overlaps(y, x) && !overlaps(y, w), op, ": y must not overlap x or w");
  expect_on(ctx, {&x, &w, &y}, op);
  cpu::linear_fwd_rows(ctx, x, w, y);
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
namespace {

#if defined(__x86_64__)
BEAVER_AVX512_CODE_BEGIN
// ---- The small-rows kernel: C[M, N] = A[M, K] · B[N, K]ᵀ, M small ----------------------------
// Dot products along K, both operands read in place (no packing): a tile of up to 4 rows of A
// by 4 rows of B keeps 16 accumulators of 16 lanes; lane l sums the products k ≡ l (mod 16) in
// order of k (FMA, the last partial chunk masked), then the 16 lanes are added in one fixed
// tree (reduce4). Every element of C is therefore the same function of its row of A, its row
// of B and K, whatever M, the tile it falls in or the thread that computes it: a row's result
// does not depend on the other rows of the batch, and the same bits come out for any thread
// count.

// The four sums of a0..a3, lane j = sum of aj: per 128-bit quarter q, (x0 + x2) + (x1 + x3);
// then (q0 + q2) + (q1 + q3).
__attribute__((target("avx512f,avx512vl,fma"))) inline __m128 reduce4(__m512 a0, __m512 a1, __m512 a2,
                                                         __m512 a3) {
  const __m512 t0 = _mm512_add_ps(_mm512_unpacklo_ps(a0, a1), _mm512_unpackhi_ps(a0, a1));
  const __m512 t1 = _mm512_add_ps(_mm512_unpacklo_ps(a2, a3), _mm512_unpackhi_ps(a2, a3));
  const __m512d d0 = _mm512_castps_pd(t0), d1 = _mm512_castps_pd(t1);
  const __m512 u = _mm512_add_ps(_mm512_castpd_ps(_mm512_unpacklo_pd(d0, d1)),
                                 _mm512_castpd_ps(_mm512_unpackhi_pd(d0, d1)));
  const __m256 v = _mm256_add_ps(_mm512_castps512_ps256(u),
                                 _mm256_castpd_ps(_mm512_extractf64x4_pd(_mm512_castps_pd(u), 1)));
  return _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
}

// Rows [0, MR) of A against rows [0, nb) of B (nb <= 4; a missing row of B repeats the last
// one and its column is not stored).
template <int MR>
__attribute__((target("avx512f,avx512vl,fma"))) void small_rows_tile(const float* a, int64_t lda,
                                                        const float* b, int64_t ldb, int64_t nb,
                                                        int64_t k, float* c, int64_t ldc) {
  const float* b0 = b;
  const float* b1 = b + std::min<int64_t>(1, nb - 1) * ldb;
  const float* b2 = b + std::min<int64_t>(2, nb - 1) * ldb;
  const float* b3 = b + std::min<int64_t>(3, nb - 1) * ldb;
  __m512 acc[MR][4];
  for (int r = 0; r < MR; ++r)
    for (int j = 0; j < 4; ++j) acc[r][j] = _mm512_setzero_ps();
  int64_t p = 0;
  for (; p + 16 <= k; p += 16) {
    const __m512 w0 = _mm512_loadu_ps(b0 + p), w1 = _mm512_loadu_ps(b1 + p),
                 w2 = _mm512_loadu_ps(b2 + p), w3 = _mm512_loadu_ps(b3 + p);
    for (int r = 0; r < MR; ++r) {
      const __m512 x = _mm512_loadu_ps(a + r * lda + p);
      acc[r][0] = _mm512_fmadd_ps(x, w0, acc[r][0]);
      acc[r][1] = _mm512_fmadd_ps(x, w1, acc[r][1]);
      acc[r][2] = _mm512_fmadd_ps(x, w2, acc[r][2]);
      acc[r][3] = _mm512_fmadd_ps(x, w3, acc[r][3]);
    }
  }
  if (p < k) {
    const __mmask16 m = __mmask16((1u << (k - p)) - 1u);
    const __m512 w0 = _mm512_maskz_loadu_ps(m, b0 + p), w1 = _mm512_maskz_loadu_ps(m, b1 + p),
                 w2 = _mm512_maskz_loadu_ps(m, b2 + p), w3 = _mm512_maskz_loadu_ps(m, b3 + p);
    for (int r = 0; r < MR; ++r) {
      const __m512 x = _mm512_maskz_loadu_ps(m, a + r * lda + p);
      acc[r][0] = _mm512_fmadd_ps(x, w0, acc[r][0]);
      acc[r][1] = _mm512_fmadd_ps(x, w1, acc[r][1]);
      acc[r][2] = _mm512_fmadd_ps(x, w2, acc[r][2]);
      acc[r][3] = _mm512_fmadd_ps(x, w3, acc[r][3]);
    }
  }
  const __mmask8 store = __mmask8((1u << nb) - 1u);
  for (int r = 0; r < MR; ++r)
    _mm_mask_storeu_ps(c + r * ldc, store, reduce4(acc[r][0], acc[r][1], acc[r][2], acc[r][3]));
}

// Columns [c0, c1) of C, all m rows.
__attribute__((target("avx512f,avx512vl,fma"))) void small_rows_columns(const float* a, int64_t lda,
                                                           const float* b, int64_t ldb,
                                                           int64_t m, int64_t c0, int64_t c1,
                                                           int64_t k, float* c, int64_t ldc) {
  for (int64_t n0 = c0; n0 < c1; n0 += 4) {
    const int64_t nb = std::min<int64_t>(4, c1 - n0);
    const float* bn = b + n0 * ldb;
    int64_t r = 0;
    for (; r + 4 <= m; r += 4)
      small_rows_tile<4>(a + r * lda, lda, bn, ldb, nb, k, c + r * ldc + n0, ldc);
    const float* ar = a + r * lda;
    float* cr = c + r * ldc + n0;
    switch (m - r) {
      case 3: small_rows_tile<3>(ar, lda, bn, ldb, nb, k, cr, ldc); break;
      case 2: small_rows_tile<2>(ar, lda, bn, ldb, nb, k, cr, ldc); break;
      case 1: small_rows_tile<1>(ar, lda, bn, ldb, nb, k, cr, ldc); break;
      default: break;
    }
  }
}

BEAVER_AVX512_CODE_END

bool have_avx512() {
  static const bool yes = __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512vl") &&
                          __builtin_cpu_supports("fma");
  return yes;
}
#else
bool have_avx512() { return false; }
#endif

}  // namespace

bool small_rows_kernel(int64_t m) { return m <= kSmallRows && have_avx512(); }

void linear_fwd_rows(Context& ctx, const Tensor& x, const Tensor& w, const Tensor& y) {
  const int64_t m = y.size(0), n = y.size(1), k = x.size(1);
#if defined(__x86_64__)
  if (m >= 1 && n >= 1 && k >= 1 && small_rows_kernel(m)) {
    // Column slabs of whole 16-float groups (so a slab edge is never inside a 4-column tile
    // and no two threads share a cache line of y); every element is computed the same way
    // whatever the split.
    const int64_t parts = gemm_split(m, n, k, ctx.threads()).parts;
    const int64_t units = (n + 15) / 16;
    const float* xp = x.ptr<float>();
    const float* wp = w.ptr<float>();
    float* yp = y.ptr<float>();
    parallel_region(int(std::min<int64_t>(parts, units)), parts > 1, [&](int tid, int nthreads) {
      const auto [u0, u1] = static_part(units, tid, nthreads);
      small_rows_columns(xp, k, wp, k, m, std::min(n, u0 * 16), std::min(n, u1 * 16), k, yp, n);
    });
    return;
  }
#endif
  gemm(ctx, x, false, w, true, y, 1.0f, 0.0f);
}

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
  const int64_t lda = std::max<int64_t>(1, a.size(1));
  const int64_t ldb = std::max<int64_t>(1, b.size(1));
  const float* ap = a.ptr<float>();
  const float* bp = b.ptr<float>();
  if (openblas_get_num_threads() != 1) openblas_set_num_threads(1);
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
