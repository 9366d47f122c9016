// AdamW on the CPU: ten steps against a double-precision reference of PyTorch's AdamW formula
// (decoupled decay inside the decay segments only, grad_scale, bias correction from step 1),
// the low-precision copy written in the same pass, and bad arguments.
#include <gtest/gtest.h>

#include <cmath>
#include <string>
#include <vector>

#include "csrc/ops/adamw.h"
#include "tests/cases/adamw.h"
#include "testutil.h"

namespace beaver {
namespace {

struct RefState {
  std::vector<double> p, m, v;
};

void ref_step(RefState& s, const std::vector<float>& g, double scale,
              const std::vector<bool>& decay, const ops::AdamWConfig& c) {
  const double bc1 = 1.0 - std::pow(double(c.beta1), double(c.step));
  const double bc2 = 1.0 - std::pow(double(c.beta2), double(c.step));
  for (size_t i = 0; i < s.p.size(); ++i) {
    const double gi = double(g[i]) * scale;
    if (decay[i]) s.p[i] *= 1.0 - double(c.lr) * double(c.weight_decay);
    s.m[i] = double(c.beta1) * s.m[i] + (1.0 - double(c.beta1)) * gi;
    s.v[i] = double(c.beta2) * s.v[i] + (1.0 - double(c.beta2)) * gi * gi;
    s.p[i] -= double(c.lr) / bc1 * s.m[i] / (std::sqrt(s.v[i]) / std::sqrt(bc2) + double(c.eps));
  }
}

class AdamWLowp : public ::testing::TestWithParam<DType> {};

// N is odd and larger than one work chunk (2^16); segments are given out of order, one starts
// on the last element of a chunk and straddles the boundary, one runs to the end. Steps 1..10,
// the grad scale changes between steps.
TEST_P(AdamWLowp, TenStepsMatchDoubleReference) {
  const DType low_dtype = GetParam();
  Context ctx = Context::cpu(2);
  const int64_t N = 100003;
  const std::vector<ops::ParamSegment> segs = {{90000, 10003}, {10, 4990}, {65535, 4465}};
  std::vector<bool> decay(size_t(N), false);
  for (const auto& s : segs)
    for (int64_t i = s.offset; i < s.offset + s.size; ++i) decay[size_t(i)] = true;

  const auto p0 = test::random_vec(size_t(N), 1, -2.0f, 2.0f);
  const auto master = test::host_sentinel(p0, Shape{N});  // updated in place: sentinel tails
  const test::SentinelTensor m(DType::F32, Shape{N}), v(DType::F32, Shape{N}), low(low_dtype, Shape{N});
  zero_tensor(m);  // PyTorch's initial state
  zero_tensor(v);
  OwnedTensor scale(DType::F32, Shape{1});
  RefState ref{{p0.begin(), p0.end()},
               std::vector<double>(size_t(N), 0.0),
               std::vector<double>(size_t(N), 0.0)};

  ops::AdamWConfig cfg;
  cfg.lr = 1e-2f;
  cfg.beta1 = 0.9f;
  cfg.beta2 = 0.95f;
  cfg.eps = 1e-8f;
  cfg.weight_decay = 0.1f;
  for (int64_t step = 1; step <= 10; ++step) {
    SCOPED_TRACE("step " + std::to_string(step));
    cfg.step = step;
    const auto g = test::random_vec(size_t(N), 100 + uint64_t(step), -1.0f, 1.0f);
    auto grad = test::host_tensor(g, Shape{N});
    const bool use_scale = step % 3 != 0;
    const float sc = 0.25f + 0.1f * float(step);
    scale.ptr<float>()[0] = sc;
    ops::adamw_step(ctx, master, grad, m, v, low, use_scale ? scale.view() : Tensor{}, segs, cfg);
    ref_step(ref, g, use_scale ? double(sc) : 1.0, decay, cfg);
    if (step == 1 || step == 2 || step == 10) {
      BEAVER_EXPECT_CLOSE(test::to_double(master), ref.p, 1e-6, 1.0);
      BEAVER_EXPECT_CLOSE(test::to_double(m), ref.m, 1e-5, 0.1);  // m cancels: absolute
      BEAVER_EXPECT_CLOSE(test::to_double(v), ref.v, 1e-5, 1e-6);
    }
    for (int64_t i = 0; i < N; ++i) {
      const float pi = master.ptr<float>()[i];
      const uint16_t want = low_dtype == DType::BF16 ? to_bf16(pi).bits : to_f16(pi).bits;
      const uint16_t got = low_dtype == DType::BF16 ? low.ptr<bf16>()[i].bits
                                                    : low.ptr<f16>()[i].bits;
      ASSERT_EQ(got, want) << "lowp element " << i;
    }
  }
  for (const test::SentinelTensor* t : {&master, &m, &v, &low})
    test::expect_tail_intact(*t, "master/m/v/lowp");
}

// The shared sizes and segments (tests/cases/adamw.h): three steps from a random state,
// against the double reference, with grad_scale.
TEST(AdamW, SharedCasesMatchDoubleReference) {
  Context ctx = Context::cpu(2);
  for (const int64_t n : cases::kAdamwSizes) {
    SCOPED_TRACE("n=" + std::to_string(n));
    const auto segs = cases::adamw_segments(n);
    std::vector<bool> decay(size_t(n), false);
    for (const auto& s : segs)
      for (int64_t i = s.offset; i < s.offset + s.size; ++i) decay[size_t(i)] = true;
    const auto p0 = test::random_vec(size_t(n), 7, -2.0f, 2.0f);
    const auto m0 = test::random_vec(size_t(n), 8, -0.01f, 0.01f);
    const auto v0 = test::random_vec(size_t(n), 9, 0.0f, 1e-3f);
    const auto master = test::host_sentinel(p0, Shape{n});
    const auto m = test::host_sentinel(m0, Shape{n}), v = test::host_sentinel(v0, Shape{n});
    const test::SentinelTensor low(DType::BF16, Shape{n});
    const auto scale = test::host_tensor({0.625f}, Shape{1});
    RefState ref{{p0.begin(), p0.end()}, {m0.begin(), m0.end()}, {v0.begin(), v0.end()}};
    ops::AdamWConfig cfg;
    cfg.lr = 1e-3f;
    cfg.weight_decay = 0.1f;
    for (int64_t step = 1; step <= 3; ++step) {
      cfg.step = step;
      const auto g = test::random_vec(size_t(n), 20 + uint64_t(step), -0.1f, 0.1f);
      ops::adamw_step(ctx, master, test::host_tensor(g, Shape{n}), m, v, low, scale, segs, cfg);
      ref_step(ref, g, 0.625, decay, cfg);
    }
    BEAVER_EXPECT_CLOSE(test::to_double(master), ref.p, 1e-6, 1.0);
    BEAVER_EXPECT_CLOSE(test::to_double(m), ref.m, 1e-5, 0.1);
    BEAVER_EXPECT_CLOSE(test::to_double(v), ref.v, 1e-5, 1e-6);
    for (int64_t i = 0; i < n; ++i)
      ASSERT_EQ(low.ptr<bf16>()[i].bits, to_bf16(master.ptr<float>()[i]).bits) << "lowp " << i;
    for (const test::SentinelTensor* t : {&master, &m, &v, &low})
      test::expect_tail_intact(*t, "master/m/v/lowp");
  }
}

INSTANTIATE_TEST_SUITE_P(Lowp, AdamWLowp, ::testing::Values(DType::BF16, DType::F16),
                         [](const auto& param_info) {
                           return std::string(dtype_name(param_info.param));
                         });

// Step 1 by hand: m = (1-b1) g, v = (1-b2) g^2, so the update is lr * g / (|g| + eps'),
// i.e. about lr * sign(g); decay applies only inside the segment. No lowp, no grad_scale.
TEST(AdamW, FirstStepIsSignTimesLr) {
  Context ctx = Context::cpu(1);
  auto master = test::host_tensor({1.0f, 1.0f, 1.0f, 1.0f}, Shape{4});
  auto grad = test::host_tensor({0.5f, -0.25f, 0.5f, -0.25f}, Shape{4});
  OwnedTensor m(DType::F32, Shape{4}), v(DType::F32, Shape{4});
  zero_tensor(m);
  zero_tensor(v);
  ops::AdamWConfig cfg;
  cfg.lr = 0.1f;
  cfg.weight_decay = 0.5f;
  cfg.eps = 1e-12f;
  ops::adamw_step(ctx, master, grad, m, v, Tensor{}, Tensor{}, {{2, 2}}, cfg);
  EXPECT_NEAR(master.ptr<float>()[0], 1.0 - 0.1, 1e-6);
  EXPECT_NEAR(master.ptr<float>()[1], 1.0 + 0.1, 1e-6);
  EXPECT_NEAR(master.ptr<float>()[2], 1.0 * (1 - 0.05) - 0.1, 1e-6);
  EXPECT_NEAR(master.ptr<float>()[3], 1.0 * (1 - 0.05) + 0.1, 1e-6);
}

TEST(AdamW, BadSegmentsAreErrors) {
  Context ctx = Context::cpu(1);
  const int64_t N = 10;
  auto master = test::random_tensor(Shape{N}, 1);
  auto grad = test::random_tensor(Shape{N}, 2);
  auto m = test::random_tensor(Shape{N}, 3);
  auto v = test::random_tensor(Shape{N}, 4, 0.1f, 1.0f);
  const auto before = test::to_double(master);
  const ops::AdamWConfig cfg;
  const std::vector<std::vector<ops::ParamSegment>> bad = {
      {{8, 3}},           // past the end
      {{-1, 2}},          // negative offset
      {{2, -1}},          // negative size
      {{0, 5}, {4, 2}},   // overlap
      {{6, 4}, {0, 3}, {2, 2}},  // overlap, out of order
  };
  for (const auto& segs : bad) {
    try {
      ops::adamw_step(ctx, master, grad, m, v, Tensor{}, Tensor{}, segs, cfg);
      FAIL() << "expected an error";
    } catch (const Error& e) {
      const std::string msg = e.what();
      EXPECT_NE(msg.find("adamw_step: decay_segments["), std::string::npos) << msg;
    }
  }
  EXPECT_EQ(test::to_double(master), before);  // nothing was touched
  // Adjacent and empty segments are fine.
  EXPECT_NO_THROW(
      ops::adamw_step(ctx, master, grad, m, v, Tensor{}, Tensor{}, {{0, 5}, {5, 5}, {3, 0}}, cfg));
}

TEST(AdamW, BadShapesAndDtypes) {
  Context ctx = Context::cpu(1);
  auto master = test::random_tensor(Shape{8}, 1);
  auto grad = test::random_tensor(Shape{8}, 2);
  auto m = test::random_tensor(Shape{8}, 3);
  auto v = test::random_tensor(Shape{8}, 4, 0.1f, 1.0f);
  const ops::AdamWConfig cfg;
  auto short_grad = test::random_tensor(Shape{7}, 5);
  EXPECT_THROW(ops::adamw_step(ctx, master, short_grad, m, v, Tensor{}, Tensor{}, {}, cfg), Error);
  OwnedTensor bgrad(DType::BF16, Shape{8});
  try {  // bf16 grads are a CUDA-only feature
    ops::adamw_step(ctx, master, bgrad, m, v, Tensor{}, Tensor{}, {}, cfg);
    FAIL();
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("grad (CPU backend)"), std::string::npos) << e.what();
  }
  auto flow = test::random_tensor(Shape{8}, 6);
  EXPECT_THROW(ops::adamw_step(ctx, master, grad, m, v, flow, Tensor{}, {}, cfg), Error);
  auto scale2 = test::random_tensor(Shape{2}, 7);
  EXPECT_THROW(ops::adamw_step(ctx, master, grad, m, v, Tensor{}, scale2, {}, cfg), Error);
  ops::AdamWConfig step0 = cfg;
  step0.step = 0;
  EXPECT_THROW(ops::adamw_step(ctx, master, grad, m, v, Tensor{}, Tensor{}, {}, step0), Error);
  OwnedTensor im(DType::I32, Shape{8});
  EXPECT_THROW(ops::adamw_step(ctx, master, grad, im, v, Tensor{}, Tensor{}, {}, cfg), Error);
}

}  // namespace
}  // namespace beaver
