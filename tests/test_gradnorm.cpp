// Gradient norm and clipping on the CPU: the norm over several odd-sized tensors vs a double
// reference, the same bits for 1 and 2 threads, the clip coefficient on both sides of
// max_norm, the scaling, and bad arguments.
#include <gtest/gtest.h>

#include <cmath>
#include <string>
#include <vector>

#include "csrc/ops/gradnorm.h"
#include "testutil.h"

namespace beaver {
namespace {

// Odd sizes: empty, one element, less than a chunk, several chunks plus a tail.
std::vector<OwnedTensor> make_grads(float lo, float hi) {
  std::vector<OwnedTensor> g;
  const std::vector<Shape> shapes = {Shape{1}, Shape{0}, Shape{7, 13}, Shape{50021},
                                     Shape{3, 11, 997}, Shape{16385}};
  uint64_t seed = 40;
  for (const auto& s : shapes) g.push_back(test::random_tensor(s, seed++, lo, hi));
  return g;
}

std::vector<Tensor> views(const std::vector<OwnedTensor>& g) {
  return {g.begin(), g.end()};
}

double ref_norm(const std::vector<OwnedTensor>& g) {
  double s = 0.0;
  for (const auto& t : g)
    for (int64_t i = 0; i < t.numel(); ++i) s += double(t.ptr<float>()[i]) * t.ptr<float>()[i];
  return std::sqrt(s);
}

TEST(GradNorm, MatchesDoubleReference) {
  Context ctx = Context::cpu(2);
  const auto g = make_grads(-1.0f, 1.0f);
  const auto v = views(g);
  OwnedTensor norm(DType::F32, Shape{1});
  test::poison(norm);
  ops::grad_norm(ctx, v, norm);
  const double want = ref_norm(g);
  EXPECT_NEAR(norm.ptr<float>()[0], want, want * 1e-7);
  // No tensors: norm 0.
  ops::grad_norm(ctx, {}, norm);
  EXPECT_EQ(norm.ptr<float>()[0], 0.0f);
}

TEST(GradNorm, SameBitsForOneAndTwoThreads) {
  const auto g = make_grads(-3.0f, 3.0f);
  const auto v = views(g);
  OwnedTensor a(DType::F32, Shape{1}), b(DType::F32, Shape{1});
  Context c1 = Context::cpu(1), c2 = Context::cpu(2);
  ops::grad_norm(c1, v, a);
  ops::grad_norm(c2, v, b);
  EXPECT_EQ(f32_bits(a.ptr<float>()[0]), f32_bits(b.ptr<float>()[0]));
  Context c3 = Context::cpu(3);  // more threads than cores still gives the same bits
  ops::grad_norm(c3, v, b);
  EXPECT_EQ(f32_bits(a.ptr<float>()[0]), f32_bits(b.ptr<float>()[0]));
}

// Above max_norm: coef = max_norm / (norm + 1e-6) and every element is scaled by it.
// Below: coef = 1 and nothing changes.
TEST(GradNorm, ClipBothSidesOfMaxNorm) {
  Context ctx = Context::cpu(2);
  for (const bool above : {true, false}) {
    SCOPED_TRACE(above ? "norm above max_norm" : "norm below max_norm");
    const auto g = make_grads(-1.0f, 1.0f);
    const auto v = views(g);
    const double n = ref_norm(g);
    const float max_norm = above ? float(n / 4) : float(n * 2);
    std::vector<std::vector<double>> before;
    for (const auto& t : g) before.push_back(test::to_double(t));
    OwnedTensor norm(DType::F32, Shape{1}), coef(DType::F32, Shape{1});
    test::poison(norm);
    test::poison(coef);
    ops::clip_grad_norm(ctx, v, max_norm, norm, coef);
    const double want_coef = above ? double(max_norm) / (n + 1e-6) : 1.0;
    EXPECT_NEAR(norm.ptr<float>()[0], n, n * 1e-7);
    EXPECT_NEAR(coef.ptr<float>()[0], want_coef, 1e-6);
    if (!above) {
      EXPECT_EQ(coef.ptr<float>()[0], 1.0f);
    }
    const float c = coef.ptr<float>()[0];
    for (size_t k = 0; k < g.size(); ++k)
      for (int64_t i = 0; i < g[k].numel(); ++i)
        ASSERT_EQ(g[k].ptr<float>()[i], float(before[k][size_t(i)]) * c)
            << "tensor " << k << " element " << i;
    // The clipped gradients now have norm max_norm (above) or are unchanged (below).
    OwnedTensor after(DType::F32, Shape{1});
    ops::grad_norm(ctx, v, after);
    EXPECT_NEAR(after.ptr<float>()[0], above ? double(max_norm) : n, n * 1e-6);
  }
}

// apply = false computes norm and coef but leaves the gradients alone (the coef then goes to
// adamw_step as grad_scale); scale_by on its own multiplies by coef.
TEST(GradNorm, NoApplyAndScaleBy) {
  Context ctx = Context::cpu(2);
  const auto g = make_grads(-1.0f, 1.0f);
  const auto v = views(g);
  std::vector<std::vector<double>> before;
  for (const auto& t : g) before.push_back(test::to_double(t));
  OwnedTensor norm(DType::F32, Shape{1}), coef(DType::F32, Shape{1});
  ops::clip_grad_norm(ctx, v, 0.5f, norm, coef, /*apply=*/false);
  EXPECT_LT(coef.ptr<float>()[0], 1.0f);
  for (size_t k = 0; k < g.size(); ++k) EXPECT_EQ(test::to_double(g[k]), before[k]);
  coef.ptr<float>()[0] = -0.375f;
  ops::scale_by(ctx, v, coef);
  for (size_t k = 0; k < g.size(); ++k)
    for (int64_t i = 0; i < g[k].numel(); ++i)
      ASSERT_EQ(g[k].ptr<float>()[i], float(before[k][size_t(i)]) * -0.375f);
  ops::clip_coef(ctx, norm, 1e30f, coef);
  EXPECT_EQ(coef.ptr<float>()[0], 1.0f);
  // A NaN norm must not turn into coef 1 (the step would silently go ahead).
  norm.ptr<float>()[0] = NAN;
  ops::clip_coef(ctx, norm, 1.0f, coef);
  EXPECT_TRUE(std::isnan(coef.ptr<float>()[0]));
}

TEST(GradNorm, BadArguments) {
  Context ctx = Context::cpu(1);
  auto a = test::random_tensor(Shape{5}, 1);
  OwnedTensor bad(DType::I32, Shape{4});
  OwnedTensor norm(DType::F32, Shape{1}), coef(DType::F32, Shape{1}), norm2(DType::F32, Shape{2});
  const std::vector<Tensor> good = {a.view()};
  const std::vector<Tensor> with_int = {a.view(), bad.view()};
  try {
    ops::grad_norm(ctx, with_int, norm);
    FAIL();
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("grad_norm: grads[1]"), std::string::npos) << e.what();
  }
  EXPECT_THROW(ops::grad_norm(ctx, good, norm2), Error);
  EXPECT_THROW(ops::clip_coef(ctx, norm, 0.0f, coef), Error);
  EXPECT_THROW(ops::clip_coef(ctx, norm, NAN, coef), Error);
  EXPECT_THROW(ops::scale_by(ctx, good, Tensor{}), Error);
  OwnedTensor bgrad(DType::BF16, Shape{3});
  const std::vector<Tensor> with_bf16 = {bgrad.view()};
  EXPECT_THROW(ops::grad_norm(ctx, with_bf16, norm), Error);  // CPU: f32 only
  EXPECT_THROW(ops::clip_grad_norm(ctx, good, -1.0f, norm, coef), Error);
}

}  // namespace
}  // namespace beaver
