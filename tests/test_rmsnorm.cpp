// Fused residual add + RMSNorm on the CPU: forward against a double reference, backward
// against finite differences of that reference, optional arguments, aliasing (in-place
// residual stream, dx over dout/dresidual), dweight accumulation and thread-count
// independence, bad arguments.
#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <string>

#include "csrc/ops/rmsnorm.h"
#include "tests/cases/rmsnorm.h"
#include "testutil.h"

namespace beaver {
namespace {

using test::random_tensor;
using test::to_double;
using test::expect_error;
using test::expect_tail_intact;
using test::SentinelTensor;

constexpr float kEps = 1e-5f;

// out = (h * rstd) * w with h = x (+ residual when given), in double.
std::vector<double> ref_fwd(const std::vector<double>& x, const std::vector<double>* res,
                            const std::vector<double>& w, int64_t rows, int64_t h,
                            std::vector<double>* rstd_out = nullptr) {
  std::vector<double> out(x.size());
  for (int64_t t = 0; t < rows; ++t) {
    double ss = 0;
    for (int64_t j = 0; j < h; ++j) {
      const size_t i = size_t(t * h + j);
      const double v = x[i] + (res ? (*res)[i] : 0.0);
      ss += v * v;
    }
    const double r = 1.0 / std::sqrt(ss / double(h) + double(kEps));
    if (rstd_out) rstd_out->push_back(r);
    for (int64_t j = 0; j < h; ++j) {
      const size_t i = size_t(t * h + j);
      out[i] = (x[i] + (res ? (*res)[i] : 0.0)) * r * w[size_t(j)];
    }
  }
  return out;
}

double dot(const std::vector<double>& a, const std::vector<double>& b) {
  double s = 0;
  for (size_t i = 0; i < a.size(); ++i) s += a[i] * b[i];
  return s;
}

struct Dims {
  Shape shape;
  int64_t rows, h;
};

Dims dims(const cases::RmsnormShape& c) { return {c.shape(), c.rows(), c.H}; }

TEST(RmsNorm, ForwardMatchesDoubleWithAndWithoutResidual) {
  Context ctx = Context::cpu(2);
  for (const auto& c : cases::kRmsnorm) {
    const Dims d = dims(c);
    SCOPED_TRACE(d.shape.str());
    auto x = random_tensor(d.shape, 1);
    auto res = random_tensor(d.shape, 2);
    auto w = random_tensor(Shape{d.h}, 3, 0.5f, 1.5f);
    const auto xd = to_double(x), rd = to_double(res), wd = to_double(w);

    const SentinelTensor out(DType::F32, d.shape), hout(DType::F32, d.shape),
        rstd(DType::F32, Shape{d.rows});  // poisoned, with sentinel tails
    ops::rmsnorm_fwd(ctx, x, res, w, kEps, out, hout, rstd);
    std::vector<double> want_rstd;
    BEAVER_EXPECT_CLOSE(to_double(out), ref_fwd(xd, &rd, wd, d.rows, d.h, &want_rstd), 1e-5, 1e-3);
    BEAVER_EXPECT_CLOSE(to_double(rstd), want_rstd, 1e-5, 1e-3);
    std::vector<double> sum(xd.size());
    for (size_t i = 0; i < sum.size(); ++i) sum[i] = double(float(xd[i] + rd[i]));
    EXPECT_EQ(to_double(hout), sum);  // residual_out is exactly the fp32 sum

    // No residual, no residual_out, no rstd.
    test::poison(out);
    ops::rmsnorm_fwd(ctx, x, Tensor{}, w, kEps, out, Tensor{}, Tensor{});
    BEAVER_EXPECT_CLOSE(to_double(out), ref_fwd(xd, nullptr, wd, d.rows, d.h), 1e-5, 1e-3);
    // No residual but residual_out requested: it receives x.
    test::poison(hout);
    ops::rmsnorm_fwd(ctx, x, Tensor{}, w, kEps, out, hout, Tensor{});
    EXPECT_EQ(to_double(hout), xd);
    expect_tail_intact(out, "out");
    expect_tail_intact(hout, "residual_out");
    expect_tail_intact(rstd, "rstd");
  }
}

TEST(RmsNorm, ForwardInPlaceResidualStream) {
  Context ctx = Context::cpu(2);
  const Shape s{9, 257};
  auto x = random_tensor(s, 1);
  auto res = random_tensor(s, 2);
  auto w = random_tensor(Shape{257}, 3);
  const auto xd = to_double(x), rd = to_double(res), wd = to_double(w);
  OwnedTensor out(DType::F32, s);
  ops::rmsnorm_fwd(ctx, x, res, w, kEps, out, res, Tensor{});  // residual_out aliases residual
  BEAVER_EXPECT_CLOSE(to_double(out), ref_fwd(xd, &rd, wd, 9, 257), 1e-5, 1e-3);
  const auto hsum = to_double(res);
  for (size_t i = 0; i < hsum.size(); ++i) EXPECT_EQ(hsum[i], double(float(xd[i] + rd[i])));
  // out aliasing x (no residual_out): the normalised row overwrites its input.
  auto x2 = random_tensor(s, 4);
  const auto x2d = to_double(x2);
  ops::rmsnorm_fwd(ctx, x2, res, w, kEps, x2, Tensor{}, Tensor{});
  BEAVER_EXPECT_CLOSE(to_double(x2), ref_fwd(x2d, &hsum, wd, 9, 257), 1e-5, 1e-3);
}

// Loss = sum(out * R) as a function of (x, w), with the residual folded into x (dx = dh).
double loss(const std::vector<double>& x, const std::vector<double>& w,
            const std::vector<double>& r, int64_t rows, int64_t h) {
  return dot(ref_fwd(x, nullptr, w, rows, h), r);
}

TEST(RmsNorm, BackwardMatchesFiniteDifferences) {
  Context ctx = Context::cpu(2);
  for (const auto& c : cases::kRmsnorm) {
    if (c.numel() > cases::kRmsnormFiniteDiffMax) continue;
    const Dims d = dims(c);
    SCOPED_TRACE(d.shape.str());
    auto x = random_tensor(d.shape, 11);
    auto res = random_tensor(d.shape, 12);
    auto w = random_tensor(Shape{d.h}, 13, 0.5f, 1.5f);
    auto r = random_tensor(d.shape, 14);
    auto dres = random_tensor(d.shape, 15);
    OwnedTensor out(DType::F32, d.shape), hbuf(DType::F32, d.shape), rstd(DType::F32, Shape{d.rows});
    ops::rmsnorm_fwd(ctx, x, res, w, kEps, out, hbuf, rstd);

    const auto hd = to_double(hbuf), wd = to_double(w), rd = to_double(r);
    auto gh = test::finite_diff(
        [&](const std::vector<double>& v) { return loss(v, wd, rd, d.rows, d.h); }, hd);
    const auto gw = test::finite_diff(
        [&](const std::vector<double>& v) { return loss(hd, v, rd, d.rows, d.h); }, wd);

    const SentinelTensor dx(DType::F32, d.shape), dw(DType::F32, Shape{d.h});
    ops::rmsnorm_bwd(ctx, r, hbuf, w, rstd, Tensor{}, dx, dw, false);
    BEAVER_EXPECT_CLOSE(to_double(dx), gh, 1e-4, 1e-2);
    BEAVER_EXPECT_CLOSE(to_double(dw), gw, 1e-4, 1e-2);

    // With dresidual, and dweight accumulating onto what is there.
    const auto dw_acc = test::host_sentinel(random_tensor(Shape{d.h}, 16));
    auto want_w = to_double(dw_acc);
    for (size_t i = 0; i < want_w.size(); ++i) want_w[i] += gw[i];
    auto want_x = to_double(dres);
    for (size_t i = 0; i < want_x.size(); ++i) want_x[i] += gh[i];
    test::poison(dx);
    ops::rmsnorm_bwd(ctx, r, hbuf, w, rstd, dres, dx, dw_acc, true);
    BEAVER_EXPECT_CLOSE(to_double(dx), want_x, 1e-4, 1e-2);
    BEAVER_EXPECT_CLOSE(to_double(dw_acc), want_w, 1e-4, 1e-2);
    expect_tail_intact(dx, "dx");
    expect_tail_intact(dw_acc, "dweight (accumulated)");

    // dx written over dresidual (in place), then over dout.
    ops::rmsnorm_bwd(ctx, r, hbuf, w, rstd, dres, dres, dw, false);
    BEAVER_EXPECT_CLOSE(to_double(dres), want_x, 1e-4, 1e-2);
    BEAVER_EXPECT_CLOSE(to_double(dw), gw, 1e-4, 1e-2);
    ops::rmsnorm_bwd(ctx, r, hbuf, w, rstd, Tensor{}, r, dw, false);
    BEAVER_EXPECT_CLOSE(to_double(r), gh, 1e-4, 1e-2);
    BEAVER_EXPECT_CLOSE(to_double(dw), gw, 1e-4, 1e-2);
    expect_tail_intact(dw, "dweight");
  }
}

TEST(RmsNorm, BackwardIsBitwiseIndependentOfThreads) {
  const Shape s{203, 301};
  auto h = random_tensor(s, 1);
  auto w = random_tensor(Shape{301}, 2);
  auto g = random_tensor(s, 3);
  auto rstd = random_tensor(Shape{203}, 4, 0.5f, 2.0f);
  OwnedTensor dx1(DType::F32, s), dx2(DType::F32, s), dw1(DType::F32, Shape{301}),
      dw2(DType::F32, Shape{301});
  Context c1 = Context::cpu(1), c2 = Context::cpu(2);
  ops::rmsnorm_bwd(c1, g, h, w, rstd, Tensor{}, dx1, dw1, false);
  ops::rmsnorm_bwd(c2, g, h, w, rstd, Tensor{}, dx2, dw2, false);
  EXPECT_EQ(std::memcmp(dw1.ptr<float>(), dw2.ptr<float>(), 301 * 4), 0);
  EXPECT_EQ(std::memcmp(dx1.ptr<float>(), dx2.ptr<float>(), size_t(s.numel()) * 4), 0);
}

TEST(RmsNorm, BadArgumentsNameOpAndArgument) {
  Context ctx = Context::cpu(1);
  const Shape s{4, 6};
  auto x = random_tensor(s, 1);
  auto w = random_tensor(Shape{6}, 2);
  OwnedTensor out(DType::F32, s), rstd(DType::F32, Shape{4});
  OwnedTensor w_bad(DType::F32, Shape{5}), res_bad(DType::F32, Shape{4, 5});
  OwnedTensor rstd_bad(DType::F32, Shape{3}), rstd16(DType::BF16, Shape{4});
  expect_error([&] { ops::rmsnorm_fwd(ctx, x, Tensor{}, w_bad, kEps, out, Tensor{}, rstd); },
               {"rmsnorm_fwd: weight has shape [5] but expected [6]"});
  expect_error([&] { ops::rmsnorm_fwd(ctx, x, res_bad, w, kEps, out, Tensor{}, rstd); },
               {"rmsnorm_fwd: residual has shape [4, 5]"});
  expect_error([&] { ops::rmsnorm_fwd(ctx, x, Tensor{}, w, kEps, out, Tensor{}, rstd_bad); },
               {"rmsnorm_fwd: rstd has shape [3]"});
  expect_error([&] { ops::rmsnorm_fwd(ctx, x, Tensor{}, w, kEps, out, Tensor{}, rstd16); },
               {"rmsnorm_fwd: rstd has dtype bf16"});
  expect_error([&] { ops::rmsnorm_fwd(ctx, x, Tensor{}, w, -1.0f, out, Tensor{}, rstd); },
               {"rmsnorm_fwd: eps"});
  OwnedTensor x16(DType::BF16, s), w16(DType::BF16, Shape{6}), out16(DType::BF16, s);
  expect_error([&] { ops::rmsnorm_fwd(ctx, x16, Tensor{}, w, kEps, out16, Tensor{}, rstd); },
               {"rmsnorm_fwd: weight has dtype f32 but expected bf16"});
  expect_error([&] { ops::rmsnorm_fwd(ctx, x16, Tensor{}, w16, kEps, out16, Tensor{}, rstd); },
               {"rmsnorm_fwd (cpu): x has dtype bf16"});
  const Tensor out_gpu(out.view().data, DType::F32, s, Device::CUDA);
  expect_error([&] { ops::rmsnorm_fwd(ctx, x, Tensor{}, w, kEps, out_gpu, Tensor{}, rstd); },
               {"rmsnorm_fwd", "not on the context's device"});

  OwnedTensor dx(DType::F32, s), dw(DType::F32, Shape{6}), dw16(DType::BF16, Shape{6});
  OwnedTensor g_bad(DType::F32, Shape{4, 7});
  expect_error([&] { ops::rmsnorm_bwd(ctx, g_bad, x, w, rstd, Tensor{}, dx, dw, false); },
               {"rmsnorm_bwd: dout has shape [4, 7]"});
  expect_error([&] { ops::rmsnorm_bwd(ctx, x, x, w, rstd, Tensor{}, dx, dw16, false); },
               {"rmsnorm_bwd: dweight has dtype bf16"});
  expect_error([&] { ops::rmsnorm_bwd(ctx, x, x, w, rstd_bad, Tensor{}, dx, dw, false); },
               {"rmsnorm_bwd: rstd has shape [3]"});
  expect_error([&] { ops::rmsnorm_bwd(ctx, x, x, w, rstd, res_bad, dx, dw, false); },
               {"rmsnorm_bwd: dresidual has shape [4, 5]"});
}

TEST(RmsNorm, ZeroRowsDoNothingAndZeroTheWeightGradient) {
  Context ctx = Context::cpu(2);
  OwnedTensor x(DType::F32, Shape{0, 8}), out(DType::F32, Shape{0, 8}), rstd(DType::F32, Shape{0});
  auto w = random_tensor(Shape{8}, 1);
  ops::rmsnorm_fwd(ctx, x, Tensor{}, w, kEps, out, Tensor{}, rstd);
  OwnedTensor dx(DType::F32, Shape{0, 8});
  auto dw = random_tensor(Shape{8}, 2);
  const auto dw0 = to_double(dw);
  ops::rmsnorm_bwd(ctx, x, x, w, rstd, Tensor{}, dx, dw, true);
  EXPECT_EQ(to_double(dw), dw0);
  ops::rmsnorm_bwd(ctx, x, x, w, rstd, Tensor{}, dx, dw, false);
  for (double v : to_double(dw)) EXPECT_EQ(v, 0.0);
}

}  // namespace
}  // namespace beaver
