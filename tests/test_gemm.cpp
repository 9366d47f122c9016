// GEMM and linear layer on the CPU: all transpose combinations and alpha/beta against a double
// reference, linear backward against finite differences, accumulate flags, bad arguments.
#include <gtest/gtest.h>

#include <cmath>
#include <string>

#include "csrc/ops/gemm.h"
#include "tests/cases/gemm.h"
#include "testutil.h"

namespace beaver {
namespace {

using test::random_tensor;
using test::to_double;
using test::expect_error;

// C = alpha * op(A) op(B) + beta * C in double; a is [M,K] or [K,M], b is [K,N] or [N,K].
std::vector<double> ref_gemm(const std::vector<double>& a, bool ta, const std::vector<double>& b,
                             bool tb, std::vector<double> c, int64_t m, int64_t n, int64_t k,
                             double alpha, double beta) {
  for (int64_t i = 0; i < m; ++i)
    for (int64_t j = 0; j < n; ++j) {
      double s = 0;
      for (int64_t p = 0; p < k; ++p)
        s += (ta ? a[size_t(p * m + i)] : a[size_t(i * k + p)]) *
             (tb ? b[size_t(j * k + p)] : b[size_t(p * n + j)]);
      c[size_t(i * n + j)] = alpha * s + (beta == 0 ? 0.0 : beta * c[size_t(i * n + j)]);
    }
  return c;
}

TEST(Gemm, AllTransposesAlphaBetaMatchDouble) {
  Context ctx = Context::cpu(2);
  for (const auto& cs : cases::kGemm) {
    if (cs.macs() > cases::kGemmCpuRefMax) continue;
    const struct {
      int64_t m, n, k;
    } s{cs.M, cs.N, cs.K};
    for (int combo = 0; combo < 4; ++combo) {
      const bool ta = combo & 1, tb = combo & 2;
      SCOPED_TRACE(testing::Message() << "m=" << s.m << " n=" << s.n << " k=" << s.k
                                      << " ta=" << ta << " tb=" << tb);
      auto a = random_tensor(ta ? Shape{s.k, s.m} : Shape{s.m, s.k}, 1 + uint64_t(combo));
      auto b = random_tensor(tb ? Shape{s.n, s.k} : Shape{s.k, s.n}, 11 + uint64_t(combo));
      const auto c = test::host_sentinel(random_tensor(Shape{s.m, s.n}, 21));
      const auto c0 = to_double(c);
      ops::gemm(ctx, a, ta, b, tb, c, 1.5f, -0.5f);
      const auto want = ref_gemm(to_double(a), ta, to_double(b), tb, c0, s.m, s.n, s.k, 1.5, -0.5);
      BEAVER_EXPECT_CLOSE(to_double(c), want, 1e-5, 1.0);

      // beta = 0 must overwrite, never read, C (NaN-poisoned here).
      test::poison(c);
      ops::gemm(ctx, a, ta, b, tb, c, 0.75f, 0.0f);
      const auto want0 = ref_gemm(to_double(a), ta, to_double(b), tb, c0, s.m, s.n, s.k, 0.75, 0);
      BEAVER_EXPECT_CLOSE(to_double(c), want0, 1e-5, 1.0);
      test::expect_tail_intact(c, "C");
    }
  }
}

// Products large enough for the CPU twin to split C over threads: slabs of rows (m >> n) and
// of 64-byte column groups (n not a multiple of 16, so the last slab is ragged), at 2 and 3
// threads, every transpose, against the double reference. The small cases above run whole.
TEST(Gemm, ThreadSlabsOfRowsAndColumnsMatchDouble) {
  const struct {
    int64_t m, n, k;
    bool rows;
  } shapes[] = {{515, 37, 130, true}, {33, 1001, 80, false}};
  for (const int threads : {2, 3}) {
    Context ctx = Context::cpu(threads);
    for (const auto& s : shapes) {
      const ops::cpu::GemmSplit split = ops::cpu::gemm_split(s.m, s.n, s.k, threads);
      ASSERT_EQ(split.parts, threads) << s.m << "x" << s.n << "x" << s.k;
      ASSERT_EQ(split.split_rows, s.rows) << s.m << "x" << s.n << "x" << s.k;
      for (int combo = 0; combo < 4; ++combo) {
        const bool ta = combo & 1, tb = combo & 2;
        SCOPED_TRACE(testing::Message() << "threads=" << threads << " m=" << s.m << " n=" << s.n
                                        << " k=" << s.k << " ta=" << ta << " tb=" << tb);
        auto a = random_tensor(ta ? Shape{s.k, s.m} : Shape{s.m, s.k}, 31 + uint64_t(combo));
        auto b = random_tensor(tb ? Shape{s.n, s.k} : Shape{s.k, s.n}, 41 + uint64_t(combo));
        const auto c = test::host_sentinel(random_tensor(Shape{s.m, s.n}, 51));
        const auto c0 = to_double(c);
        ops::gemm(ctx, a, ta, b, tb, c, 1.25f, 0.5f);
        const auto want =
            ref_gemm(to_double(a), ta, to_double(b), tb, c0, s.m, s.n, s.k, 1.25, 0.5);
        BEAVER_EXPECT_CLOSE(to_double(c), want, 1e-5, 1.0);
        test::expect_tail_intact(c, "C");
      }
    }
  }
  // Small products and one thread: one call.
  EXPECT_EQ(ops::cpu::gemm_split(8, 128, 128, 2).parts, 1);
  EXPECT_EQ(ops::cpu::gemm_split(512, 512, 512, 1).parts, 1);
}

// linear_fwd_rows (a decode step's linear layers) takes the small-rows kernel where the CPU has
// AVX-512: against the double reference (K with and without a partial 16-lane chunk, N with and
// without a partial 4-column tile), and each row bitwise the same alone, inside any batch, and
// at 1, 2 and 3 threads (what makes a batched decode equal one sequence at a time).
TEST(Linear, RowsKernelRowsDoNotDependOnTheBatchOrThreads) {
  if (!ops::cpu::small_rows_kernel(8))
    GTEST_SKIP() << "no AVX-512 on this CPU: linear_fwd_rows is linear_fwd";
  EXPECT_FALSE(ops::cpu::small_rows_kernel(ops::cpu::kSmallRows + 1));
  const int64_t M = ops::cpu::kSmallRows;
  for (const int64_t n : {1, 7, 33, 1001})
    for (const int64_t k : {1, 15, 16, 17, 130}) {
      SCOPED_TRACE(testing::Message() << "n=" << n << " k=" << k);
      const auto x = random_tensor(Shape{M, k}, 61);
      const auto w = random_tensor(Shape{n, k}, 62);
      std::vector<float> first;
      for (const int threads : {1, 2, 3}) {
        Context ctx = Context::cpu(threads);
        const test::SentinelTensor y(DType::F32, Shape{M, n});  // poisoned: never read
        ops::linear_fwd_rows(ctx, x, w, y);
        test::expect_tail_intact(y, "y");
        const auto got = to_host_f32(y);
        if (first.empty()) {
          BEAVER_EXPECT_CLOSE(to_double(y),
                              ref_gemm(to_double(x), false, to_double(w), true,
                                       std::vector<double>(size_t(M * n)), M, n, k, 1.0, 0.0),
                              1e-5, 1.0);
          first = got;
        } else {
          EXPECT_EQ(got, first) << "threads " << threads;
        }
      }
      // Every row alone, and the rows as smaller batches, give the same bits.
      Context ctx = Context::cpu(1);
      for (int64_t rows = 1; rows <= M; rows += 5)
        for (int64_t r0 = 0; r0 + rows <= M; r0 += rows) {
          const test::SentinelTensor y(DType::F32, Shape{rows, n});
          ops::linear_fwd_rows(ctx, x.view().slice(r0, r0 + rows), w, y);
          ASSERT_EQ(to_host_f32(y),
                    std::vector<float>(first.begin() + r0 * n, first.begin() + (r0 + rows) * n))
              << "rows [" << r0 << ", " << r0 + rows << ")";
        }
    }
}

TEST(Gemm, EmptyInnerDimensionScalesC) {
  Context ctx = Context::cpu(1);
  OwnedTensor a(DType::F32, Shape{3, 0}), b(DType::F32, Shape{0, 4});
  auto c = random_tensor(Shape{3, 4}, 5);
  const auto c0 = to_double(c);
  ops::gemm(ctx, a, false, b, false, c, 1.0f, 2.0f);
  for (size_t i = 0; i < c0.size(); ++i) EXPECT_FLOAT_EQ(float(to_double(c)[i]), float(2 * c0[i]));
  test::poison(c);
  ops::gemm(ctx, a, false, b, false, c, 1.0f, 0.0f);
  for (double v : to_double(c)) EXPECT_EQ(v, 0.0);
}

// Loss = sum(y * R) with y = x W^T, in double.
double linear_loss(const std::vector<double>& x, const std::vector<double>& w,
                   const std::vector<double>& r, int64_t t, int64_t in, int64_t out) {
  const auto y = ref_gemm(x, false, w, true, std::vector<double>(size_t(t * out)), t, out, in,
                          1.0, 0.0);
  double s = 0;
  for (size_t i = 0; i < y.size(); ++i) s += y[i] * r[i];
  return s;
}

TEST(Linear, ForwardAndBackwardMatchDoubleAndFiniteDifferences) {
  Context ctx = Context::cpu(2);
  for (const auto& cs : cases::kLinear) {
    const int64_t t = cs.T, in = cs.in, out = cs.out;
    SCOPED_TRACE(testing::Message() << "T=" << t << " in=" << in << " out=" << out);
    auto x = random_tensor(Shape{t, in}, 1);
    auto w = random_tensor(Shape{out, in}, 2);
    auto r = random_tensor(Shape{t, out}, 3);
    const test::SentinelTensor y(DType::F32, Shape{t, out});  // poisoned, with a sentinel tail
    ops::linear_fwd(ctx, x, w, y);
    test::expect_tail_intact(y, "y");
    const auto xd = to_double(x), wd = to_double(w), rd = to_double(r);
    BEAVER_EXPECT_CLOSE(to_double(y),
                        ref_gemm(xd, false, wd, true, std::vector<double>(size_t(t * out)), t,
                                 out, in, 1.0, 0.0),
                        1e-5, 1.0);

    const auto gx = test::finite_diff(
        [&](const std::vector<double>& v) { return linear_loss(v, wd, rd, t, in, out); }, xd);
    const auto gw = test::finite_diff(
        [&](const std::vector<double>& v) { return linear_loss(xd, v, rd, t, in, out); }, wd);

    const test::SentinelTensor dx(DType::F32, Shape{t, in}), dw(DType::F32, Shape{out, in});
    ops::linear_bwd_input(ctx, r, w, dx, false);
    ops::linear_bwd_weight(ctx, r, x, dw, false);
    BEAVER_EXPECT_CLOSE(to_double(dx), gx, 1e-4, 1e-2);
    BEAVER_EXPECT_CLOSE(to_double(dw), gw, 1e-4, 1e-2);

    // accumulate = true adds to what is there.
    const auto dx_acc = test::host_sentinel(random_tensor(Shape{t, in}, 7));
    const auto dw_acc = test::host_sentinel(random_tensor(Shape{out, in}, 8));
    auto want_x = to_double(dx_acc), want_w = to_double(dw_acc);
    for (size_t i = 0; i < want_x.size(); ++i) want_x[i] += gx[i];
    for (size_t i = 0; i < want_w.size(); ++i) want_w[i] += gw[i];
    ops::linear_bwd_input(ctx, r, w, dx_acc, true);
    ops::linear_bwd_weight(ctx, r, x, dw_acc, true);
    BEAVER_EXPECT_CLOSE(to_double(dx_acc), want_x, 1e-4, 1e-2);
    BEAVER_EXPECT_CLOSE(to_double(dw_acc), want_w, 1e-4, 1e-2);
    for (const auto* buf : {&dx, &dw, &dx_acc, &dw_acc})
      test::expect_tail_intact(*buf, "dx/dweight");
  }
}

TEST(Gemm, BadArgumentsNameOpAndArgument) {
  Context ctx = Context::cpu(1);
  auto a = random_tensor(Shape{4, 3}, 1);
  auto b = random_tensor(Shape{3, 5}, 2);
  auto b_bad = random_tensor(Shape{4, 5}, 2);
  OwnedTensor c(DType::F32, Shape{4, 5}), c_bad(DType::F32, Shape{5, 4});
  expect_error([&] { ops::gemm(ctx, a, false, b_bad, false, c); }, {"gemm", "inner dimensions"});
  expect_error([&] { ops::gemm(ctx, a, false, b, false, c_bad); }, {"gemm: c has shape [5, 4]"});
  expect_error([&] { ops::gemm(ctx, a, false, b, true, c); }, {"gemm", "transposed"});
  OwnedTensor b16(DType::BF16, Shape{3, 5}), a16(DType::BF16, Shape{4, 3});
  expect_error([&] { ops::gemm(ctx, a, false, b16, false, c); }, {"gemm: b has dtype bf16"});
  expect_error([&] { ops::gemm(ctx, a16, false, b16, false, c); }, {"gemm (cpu): a", "bf16"});
  OwnedTensor ai(DType::I32, Shape{4, 3});
  expect_error([&] { ops::gemm(ctx, ai, false, b, false, c); }, {"gemm: a has dtype i32"});
  const Tensor b_gpu(b.view().data, DType::F32, Shape{3, 5}, Device::CUDA);
  expect_error([&] { ops::gemm(ctx, a, false, b_gpu, false, c); },
               {"gemm", "not on the context's device"});
  OwnedTensor sq(DType::F32, Shape{4, 4});
  expect_error([&] { ops::gemm(ctx, sq, false, sq, false, sq); }, {"gemm: c must not overlap"});
  const Tensor a3 = a.view().view(Shape{2, 2, 3});
  expect_error([&] { ops::gemm(ctx, a3, false, b, false, c); }, {"gemm: a has rank 3"});

  OwnedTensor w(DType::F32, Shape{5, 4}), y(DType::F32, Shape{4, 5}), y_bad(DType::F32, Shape{4, 6});
  expect_error([&] { ops::linear_fwd(ctx, a, w, y); }, {"linear_fwd: w has shape [5, 4]"});
  OwnedTensor w_ok(DType::F32, Shape{5, 3});
  expect_error([&] { ops::linear_fwd(ctx, a, w_ok, y_bad); }, {"linear_fwd: y has shape [4, 6]"});
  OwnedTensor dx_bad(DType::F32, Shape{4, 4});
  expect_error([&] { ops::linear_bwd_input(ctx, y, w_ok, dx_bad, false); },
               {"linear_bwd_input: dx has shape"});
  OwnedTensor dw_bad(DType::F32, Shape{3, 5});
  expect_error([&] { ops::linear_bwd_weight(ctx, y, a, dw_bad, false); },
               {"linear_bwd_weight: dw has shape"});
  OwnedTensor x_rows(DType::F32, Shape{3, 3});
  expect_error([&] { ops::linear_bwd_weight(ctx, y, x_rows, w_ok, false); },
               {"linear_bwd_weight", "same number of rows"});
}

}  // namespace
}  // namespace beaver
