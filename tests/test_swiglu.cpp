// SwiGLU on the CPU: forward against a double reference, backward against finite differences,
// in-place gradients (dgate over gate, dup over up), extreme gate values, bad arguments.
#include <gtest/gtest.h>

#include <cmath>
#include <string>

#include "csrc/ops/cpu_exp.h"
#include "csrc/ops/swiglu.h"
#include "tests/cases/swiglu.h"
#include "testutil.h"

namespace beaver {
namespace {

using test::random_tensor;
using test::to_double;
using test::expect_error;
using test::expect_tail_intact;
using test::SentinelTensor;

std::vector<double> ref(const std::vector<double>& g, const std::vector<double>& u) {
  std::vector<double> o(g.size());
  for (size_t i = 0; i < g.size(); ++i) o[i] = g[i] / (1 + std::exp(-g[i])) * u[i];
  return o;
}

TEST(SwiGlu, ForwardMatchesDouble) {
  Context ctx = Context::cpu(2);
  for (const auto& c : cases::kSwiglu) {
    const Shape s{c.T, c.I};
    SCOPED_TRACE(s.str());
    auto g = random_tensor(s, 1, -6.0f, 6.0f);
    auto u = random_tensor(s, 2);
    const SentinelTensor o(DType::F32, s);
    ops::swiglu_fwd(ctx, g, u, o);
    BEAVER_EXPECT_CLOSE(to_double(o), ref(to_double(g), to_double(u)), 1e-5, 1e-3);
    expect_tail_intact(o, "out");
  }
}

// The sentinel tail catches an op that writes past its output: the same op, handed a view
// one row longer than the allocation, overwrites the first sentinel bytes.
// The loops run in the widest clone the CPU has (cpu_clones.h), at any thread split: every
// element is still the scalar formula's bits (no fused multiply-add, same operations), so the
// results do not depend on the CPU's vector width or on which lanes an element fell in.
TEST(SwiGlu, EveryElementIsTheScalarFormulasBits) {
  const int64_t n = 4099;  // a ragged tail for every vector width, above the threading threshold
  const auto g = random_tensor(Shape{8, n}, 5, -12.0f, 12.0f), u = random_tensor(Shape{8, n}, 6);
  const auto d = random_tensor(Shape{8, n}, 7);
  const float* gp = g.ptr<float>();
  const float* up = u.ptr<float>();
  const float* dp = d.ptr<float>();
  for (const int threads : {1, 2, 3}) {
    Context ctx = Context::cpu(threads);
    const SentinelTensor o(DType::F32, Shape{8, n}), dg(DType::F32, Shape{8, n}),
        du(DType::F32, Shape{8, n});
    ops::swiglu_fwd(ctx, g, u, o);
    ops::swiglu_bwd(ctx, g, u, d, dg, du);
    for (int64_t i = 0; i < 8 * n; ++i) {
      const float gi = gp[i], ui = up[i], di = dp[i];
      const float s = 1.0f / (1.0f + ops::cpu::exp_f32(-gi));
      ASSERT_EQ(o.ptr<float>()[i], gi / (1.0f + ops::cpu::exp_f32(-gi)) * ui) << i;
      ASSERT_EQ(dg.ptr<float>()[i], di * ui * s * (1.0f + gi * (1.0f - s))) << i;
      ASSERT_EQ(du.ptr<float>()[i], di * gi * s) << i;
    }
  }
}

TEST(SwiGlu, SentinelCatchesAnOverlongWrite) {
  Context ctx = Context::cpu(1);
  const Shape s{3, 7}, longer{4, 7};
  const auto g = random_tensor(longer, 1), u = random_tensor(longer, 2);
  const SentinelTensor o(DType::F32, s);
  ops::swiglu_fwd(ctx, g.view().slice(0, 3), u.view().slice(0, 3), o);
  EXPECT_EQ(o.tail_damage(), "");
  ops::swiglu_fwd(ctx, g, u, Tensor(o.view().data, DType::F32, longer));
  EXPECT_NE(o.tail_damage().find("byte 0 past the end of f32[3, 7] cpu"), std::string::npos)
      << o.tail_damage();
}

TEST(SwiGlu, ExtremeGatesStayFinite) {
  Context ctx = Context::cpu(1);
  auto g = test::host_tensor({-200.0f, -90.0f, 0.0f, 90.0f, 200.0f}, Shape{5});
  auto u = test::host_tensor({1.0f, 2.0f, 3.0f, 4.0f, 5.0f}, Shape{5});
  auto d = test::host_tensor({1.0f, 1.0f, 1.0f, 1.0f, 1.0f}, Shape{5});
  const SentinelTensor o(DType::F32, Shape{5}), dg(DType::F32, Shape{5}),
      du(DType::F32, Shape{5});
  ops::swiglu_fwd(ctx, g, u, o);
  ops::swiglu_bwd(ctx, g, u, d, dg, du);
  const std::vector<double> want_o = {0.0, 0.0, 0.0, 360.0, 1000.0};
  const std::vector<double> want_dg = {0.0, 0.0, 1.5, 4.0, 5.0};
  const std::vector<double> want_du = {0.0, 0.0, 0.0, 90.0, 200.0};
  BEAVER_EXPECT_CLOSE(to_double(o), want_o, 1e-6, 1e-6);
  BEAVER_EXPECT_CLOSE(to_double(dg), want_dg, 1e-6, 1e-6);
  BEAVER_EXPECT_CLOSE(to_double(du), want_du, 1e-6, 1e-6);
}

TEST(SwiGlu, BackwardMatchesFiniteDifferencesAndWorksInPlace) {
  Context ctx = Context::cpu(2);
  for (const auto& c : cases::kSwiglu) {
    if (c.numel() > cases::kSwigluFiniteDiffMax) continue;
    const Shape s{c.T, c.I};
    SCOPED_TRACE(s.str());
    auto g = random_tensor(s, 1, -4.0f, 4.0f);
    auto u = random_tensor(s, 2);
    auto r = random_tensor(s, 3);
    const auto gd = to_double(g), ud = to_double(u), rd = to_double(r);
    auto loss = [&](const std::vector<double>& gg, const std::vector<double>& uu) {
      const auto o = ref(gg, uu);
      double acc = 0;
      for (size_t i = 0; i < o.size(); ++i) acc += o[i] * rd[i];
      return acc;
    };
    const auto want_g = test::finite_diff([&](const std::vector<double>& v) { return loss(v, ud); }, gd);
    const auto want_u = test::finite_diff([&](const std::vector<double>& v) { return loss(gd, v); }, ud);
    const SentinelTensor dg(DType::F32, s), du(DType::F32, s);
    ops::swiglu_bwd(ctx, g, u, r, dg, du);
    BEAVER_EXPECT_CLOSE(to_double(dg), want_g, 1e-4, 1e-2);
    BEAVER_EXPECT_CLOSE(to_double(du), want_u, 1e-4, 1e-2);
    expect_tail_intact(dg, "dgate");
    expect_tail_intact(du, "dup");
    ops::swiglu_bwd(ctx, g, u, r, g, u);  // gradients overwrite their inputs
    BEAVER_EXPECT_CLOSE(to_double(g), want_g, 1e-4, 1e-2);
    BEAVER_EXPECT_CLOSE(to_double(u), want_u, 1e-4, 1e-2);
  }
}

TEST(SwiGlu, BadArgumentsNameOpAndArgument) {
  Context ctx = Context::cpu(1);
  auto g = random_tensor(Shape{4, 6}, 1);
  OwnedTensor u_bad(DType::F32, Shape{4, 5}), o(DType::F32, Shape{4, 6}), o16(DType::BF16, Shape{4, 6});
  expect_error([&] { ops::swiglu_fwd(ctx, g, u_bad, o); }, {"swiglu_fwd: up has shape [4, 5]"});
  expect_error([&] { ops::swiglu_fwd(ctx, g, g, o16); }, {"swiglu_fwd: out has dtype bf16"});
  OwnedTensor g16(DType::BF16, Shape{4, 6});
  expect_error([&] { ops::swiglu_fwd(ctx, g16, g16, o16); }, {"swiglu_fwd (cpu): gate has dtype bf16"});
  OwnedTensor gi(DType::I32, Shape{4, 6});
  expect_error([&] { ops::swiglu_fwd(ctx, gi, gi, gi); }, {"swiglu_fwd: gate has dtype i32"});
  const Tensor o_gpu(o.view().data, DType::F32, Shape{4, 6}, Device::CUDA);
  expect_error([&] { ops::swiglu_fwd(ctx, g, g, o_gpu); }, {"swiglu_fwd", "not on the context's device"});
  expect_error([&] { ops::swiglu_bwd(ctx, g, g, u_bad, o, o); }, {"swiglu_bwd: dout has shape [4, 5]"});
  OwnedTensor o2(DType::F32, Shape{4, 6});
  expect_error([&] { ops::swiglu_bwd(ctx, g, g, g, o, o); }, {"swiglu_bwd: dgate and dup"});
  expect_error([&] { ops::swiglu_bwd(ctx, g, g, g, o, u_bad); }, {"swiglu_bwd: dup has shape"});
}

}  // namespace
}  // namespace beaver
