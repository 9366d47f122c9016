// Gradient norm and clipping on the CPU: the norm over several odd-sized tensors vs a double
// reference, the same bits for 1 and 2 threads, the clip coefficient on both sides of
// max_norm, the scaling, and bad arguments. Written buffers carry sentinel tails.
#include <gtest/gtest.h>

#include <cmath>
#include <string>
#include <vector>

#include "csrc/ops/gradnorm.h"
#include "tests/cases/gradnorm.h"
#include "testutil.h"

namespace beaver {
namespace {

using test::SentinelTensor;

// The shared odd shapes (tests/cases/gradnorm.h), as sentinel-tailed tensors: clipping and
// scale_by write them in place.
std::vector<SentinelTensor> make_grads(const std::vector<Shape>& shapes, float lo, float hi,
                                       uint64_t seed = 40) {
  std::vector<SentinelTensor> g;
  for (const auto& s : shapes) g.push_back(test::host_sentinel(test::random_tensor(s, seed++, lo, hi)));
  return g;
}
std::vector<SentinelTensor> make_grads(float lo, float hi) {
  return make_grads(cases::kGradnormShapes, lo, hi);
}

std::vector<Tensor> views(const std::vector<SentinelTensor>& g) {
  std::vector<Tensor> v;
  for (const auto& t : g) v.push_back(t.view());
  return v;
}

void expect_tails_intact(const std::vector<SentinelTensor>& g) {
  for (size_t k = 0; k < g.size(); ++k) test::expect_tail_intact(g[k], "gradient " + std::to_string(k));
}

double ref_norm(const std::vector<SentinelTensor>& g) {
  double s = 0.0;
  for (const auto& t : g)
    for (int64_t i = 0; i < t.numel(); ++i) s += double(t.ptr<float>()[i]) * t.ptr<float>()[i];
  return std::sqrt(s);
}

TEST(GradNorm, MatchesDoubleReference) {
  Context ctx = Context::cpu(2);
  const auto g = make_grads(-1.0f, 1.0f);
  const auto v = views(g);
  const SentinelTensor norm(DType::F32, Shape{1});  // poisoned
  ops::grad_norm(ctx, v, norm);
  const double want = ref_norm(g);
  EXPECT_NEAR(norm.ptr<float>()[0], want, want * 1e-7);
  // No tensors: norm 0.
  ops::grad_norm(ctx, {}, norm);
  EXPECT_EQ(norm.ptr<float>()[0], 0.0f);
  test::expect_tail_intact(norm, "norm");
}

// The shared lists of many tensors (the GPU test's), against the double reference.
TEST(GradNorm, SharedTensorListsMatchDoubleReference) {
  Context ctx = Context::cpu(2);
  for (const int count : cases::kGradnormTensorCounts) {
    SCOPED_TRACE("tensors=" + std::to_string(count));
    std::vector<Shape> shapes;
    for (const int64_t n : cases::gradnorm_sizes(count, 40 + uint64_t(count))) shapes.push_back(Shape{n});
    const auto g = make_grads(shapes, -0.5f, 0.5f, 100);
    const SentinelTensor norm(DType::F32, Shape{1});
    ops::grad_norm(ctx, views(g), norm);
    const double want = ref_norm(g);
    EXPECT_NEAR(norm.ptr<float>()[0], want, want * 1e-7);
    test::expect_tail_intact(norm, "norm");
  }
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
    const SentinelTensor norm(DType::F32, Shape{1}), coef(DType::F32, Shape{1});  // poisoned
    ops::clip_grad_norm(ctx, v, max_norm, norm, coef);
    test::expect_tail_intact(norm, "norm");
    test::expect_tail_intact(coef, "coef");
    expect_tails_intact(g);
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
  expect_tails_intact(g);
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
