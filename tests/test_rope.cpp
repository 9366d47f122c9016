// Rotary embedding on the CPU: inverse frequencies (plain and llama3-scaled) against an
// independent double computation, the rotation against a double reference at positions up to a
// few thousand, the inverse undoing the forward, the backward against finite differences, q/k
// with different head counts, bad arguments.
#include <gtest/gtest.h>

#include <cmath>
#include <numbers>
#include <string>

#include "csrc/ops/rope.h"
#include "tests/cases/rope.h"
#include "testutil.h"

namespace beaver {
namespace {

using test::random_tensor;
using test::to_double;
using test::expect_error;

// Llama 3 frequency scaling written from its definition, in double.
std::vector<double> llama3_inv_freq_double(int d, double theta, double factor, double low,
                                           double high, double original) {
  std::vector<double> out;
  for (int i = 0; i < d / 2; ++i) {
    const double f = std::pow(theta, -2.0 * i / d);
    const double wavelen = 2 * std::numbers::pi / f;
    if (wavelen < original / high) {
      out.push_back(f);  // high frequency: unchanged
    } else if (wavelen > original / low) {
      out.push_back(f / factor);  // low frequency: scaled down
    } else {
      const double smooth = (original / wavelen - low) / (high - low);
      out.push_back((1 - smooth) * f / factor + smooth * f);
    }
  }
  return out;
}

TEST(Rope, InvFreqPlainMatchesDouble) {
  for (int d : {2, 8, 64, 128}) {
    const auto got = ops::rope_inv_freq(d, 10000.0, ops::RopeScaling{});
    ASSERT_EQ(got.size(), size_t(d / 2));
    std::vector<double> want;
    for (int i = 0; i < d / 2; ++i) want.push_back(std::pow(10000.0, -2.0 * i / d));
    BEAVER_EXPECT_CLOSE(std::vector<double>(got.begin(), got.end()), want, 1e-6, 0.0);
  }
}

TEST(Rope, InvFreqLlama3MatchesIndependentDouble) {
  ops::RopeScaling sc;
  sc.llama3 = true;
  sc.factor = 8;
  sc.low_freq_factor = 1;
  sc.high_freq_factor = 4;
  sc.original_max_position = 8192;
  for (int d : {64, 128}) {
    SCOPED_TRACE(d);
    const auto got = ops::rope_inv_freq(d, 500000.0, sc);
    const auto want = llama3_inv_freq_double(d, 500000.0, 8, 1, 4, 8192);
    BEAVER_EXPECT_CLOSE(std::vector<double>(got.begin(), got.end()), want, 1e-6, 0.0);
    // All three regimes occur: unchanged, scaled by 1/factor, and smoothed in between.
    int unchanged = 0, scaled = 0, smoothed = 0;
    for (int i = 0; i < d / 2; ++i) {
      const double base = std::pow(500000.0, -2.0 * i / d);
      const double ratio = want[size_t(i)] / base;
      if (ratio == 1.0) ++unchanged;
      else if (std::fabs(ratio - 1.0 / 8) < 1e-12) ++scaled;
      else ++smoothed;
    }
    EXPECT_GT(unchanged, 0);
    EXPECT_GT(scaled, 0);
    EXPECT_GT(smoothed, 0);
  }
}

// Rotation in double, with the angle taken as the fp32 product the contract specifies.
std::vector<double> ref_rope(const std::vector<double>& x, const std::vector<int32_t>& pos,
                             const std::vector<float>& inv, int64_t heads, int64_t d,
                             bool inverse) {
  std::vector<double> y(x.size());
  const int64_t half = d / 2;
  for (size_t t = 0; t < pos.size(); ++t)
    for (int64_t hd = 0; hd < heads; ++hd)
      for (int64_t i = 0; i < half; ++i) {
        const double angle = double(float(pos[t]) * inv[size_t(i)]) * (inverse ? -1 : 1);
        const size_t base = (t * size_t(heads) + size_t(hd)) * size_t(d);
        const double a = x[base + size_t(i)], b = x[base + size_t(half + i)];
        y[base + size_t(i)] = a * std::cos(angle) - b * std::sin(angle);
        y[base + size_t(half + i)] = b * std::cos(angle) + a * std::sin(angle);
      }
  return y;
}

std::vector<int32_t> random_positions(int64_t n, uint64_t seed) {
  PhiloxStream rng(seed, 9);
  std::vector<int32_t> p;
  for (int64_t i = 0; i < n; ++i) p.push_back(int32_t(rng.next_u32() % 4000));
  p[0] = 0;
  return p;
}

ops::RopeScaling llama3() {
  ops::RopeScaling sc;
  sc.llama3 = true;
  return sc;
}

TEST(Rope, ApplyMatchesDoubleAndInverseUndoesIt) {
  Context ctx = Context::cpu(2);
  for (const auto& c : cases::kRope) {
    const struct {
      int64_t t, heads, d;
    } s{c.T, c.heads, c.d};
    SCOPED_TRACE(testing::Message() << "T=" << s.t << " heads=" << s.heads << " d=" << s.d);
    const auto inv = ops::rope_inv_freq(int(s.d), 500000.0, llama3());
    const auto inv_t = test::host_tensor(inv, Shape{s.d / 2});
    const auto pos = random_positions(s.t, uint64_t(s.t));
    const auto pos_t = test::int_tensor(pos, Shape{s.t});
    const auto x = test::host_sentinel(random_tensor(Shape{s.t, s.heads, s.d}, 3));
    const auto x0 = to_double(x);
    ops::rope_apply(ctx, x, pos_t, inv_t, false);
    BEAVER_EXPECT_CLOSE(to_double(x), ref_rope(x0, pos, inv, s.heads, s.d, false), 1e-5, 1e-2);
    ops::rope_apply(ctx, x, pos_t, inv_t, true);
    BEAVER_EXPECT_CLOSE(to_double(x), x0, 1e-5, 1e-2);
    test::expect_tail_intact(x, "x (rotated in place)");
  }
}

// The CPU twin's cached cos/sin table (grown when a larger position comes, rebuilt for other
// frequencies) gives the bits of computing each rotation on the spot, negative positions too.
TEST(Rope, CachedTableGivesTheOnTheSpotBits) {
  Context ctx = Context::cpu(2);
  const int64_t heads = 3;
  for (const int64_t d : {8, 64})
    for (const std::vector<int32_t>& pos :
         {std::vector<int32_t>{0, 5, 200, 17}, std::vector<int32_t>{3000, 1, 255, 256},
          std::vector<int32_t>{-7, 40, 0, 1}}) {
      const auto inv = ops::rope_inv_freq(int(d), 10000.0, ops::RopeScaling{});
      const int64_t t = int64_t(pos.size()), half = d / 2;
      const auto x = random_tensor(Shape{t, heads, d}, uint64_t(d));
      const auto want = to_host_f32(x);
      for (const bool inverse : {false, true}) {
        std::vector<float> w = want;
        for (int64_t r = 0; r < t; ++r)
          for (int64_t h = 0; h < heads; ++h)
            for (int64_t i = 0; i < half; ++i) {
              const float angle = float(pos[size_t(r)]) * inv[size_t(i)];
              const float c = std::cos(angle), sn = inverse ? -std::sin(angle) : std::sin(angle);
              float* v = w.data() + (r * heads + h) * d;
              const float a = v[i], b = v[half + i];
              v[i] = a * c - b * sn;
              v[half + i] = b * c + a * sn;
            }
        const auto xr = test::host_sentinel(want, Shape{t, heads, d});
        ops::rope_apply(ctx, xr, test::int_tensor(pos, Shape{t}),
                        test::host_tensor(inv, Shape{half}), inverse);
        EXPECT_EQ(to_host_f32(xr), w) << "d " << d << " first position " << pos[0];
      }
    }
}

TEST(Rope, BackwardMatchesFiniteDifferencesOnQAndK) {
  Context ctx = Context::cpu(2);
  const int64_t t = 6, nh = 4, nkv = 2, d = 16;
  const auto inv = ops::rope_inv_freq(int(d), 10000.0, ops::RopeScaling{});
  const auto inv_t = test::host_tensor(inv, Shape{d / 2});
  const auto pos = random_positions(t, 2);
  const auto pos_t = test::int_tensor(pos, Shape{t});
  const auto q = test::host_sentinel(random_tensor(Shape{t, nh, d}, 1));
  const auto k = test::host_sentinel(random_tensor(Shape{t, nkv, d}, 2));
  const auto rq = test::host_sentinel(random_tensor(Shape{t, nh, d}, 3));
  const auto rk = test::host_sentinel(random_tensor(Shape{t, nkv, d}, 4));
  const auto qd = to_double(q), kd = to_double(k), rqd = to_double(rq), rkd = to_double(rk);

  ops::rope_fwd(ctx, q, k, pos_t, inv_t);
  BEAVER_EXPECT_CLOSE(to_double(q), ref_rope(qd, pos, inv, nh, d, false), 1e-5, 1e-2);
  BEAVER_EXPECT_CLOSE(to_double(k), ref_rope(kd, pos, inv, nkv, d, false), 1e-5, 1e-2);

  auto loss = [&](const std::vector<double>& v, int64_t heads, const std::vector<double>& r) {
    const auto y = ref_rope(v, pos, inv, heads, d, false);
    double s = 0;
    for (size_t i = 0; i < y.size(); ++i) s += y[i] * r[i];
    return s;
  };
  const auto gq = test::finite_diff([&](const std::vector<double>& v) { return loss(v, nh, rqd); }, qd);
  const auto gk = test::finite_diff([&](const std::vector<double>& v) { return loss(v, nkv, rkd); }, kd);
  ops::rope_bwd(ctx, rq, rk, pos_t, inv_t);  // in place: rq, rk become the gradients
  BEAVER_EXPECT_CLOSE(to_double(rq), gq, 1e-4, 1e-2);
  BEAVER_EXPECT_CLOSE(to_double(rk), gk, 1e-4, 1e-2);
  for (const auto* buf : {&q, &k, &rq, &rk}) test::expect_tail_intact(*buf, "q/k/dq/dk in place");
}

TEST(Rope, BadArgumentsNameOpAndArgument) {
  Context ctx = Context::cpu(1);
  auto x = random_tensor(Shape{3, 2, 8}, 1);
  const auto inv_t = test::host_tensor(ops::rope_inv_freq(8, 10000.0, {}), Shape{4});
  auto pos = test::int_tensor({0, 1, 2}, Shape{3});
  auto pos_bad = test::int_tensor({0, 1}, Shape{2});
  expect_error([&] { ops::rope_apply(ctx, x, pos_bad, inv_t, false); },
               {"rope_apply: positions has shape [2] but expected [3]"});
  OwnedTensor pos_f(DType::F32, Shape{3});
  expect_error([&] { ops::rope_apply(ctx, x, pos_f, inv_t, false); },
               {"rope_apply: positions has dtype f32"});
  OwnedTensor inv_bad(DType::F32, Shape{3});
  expect_error([&] { ops::rope_apply(ctx, x, pos, inv_bad, false); },
               {"rope_apply: inv_freq has shape [3] but expected [4]"});
  OwnedTensor odd(DType::F32, Shape{3, 2, 7});
  expect_error([&] { ops::rope_apply(ctx, odd, pos, inv_t, false); },
               {"rope_apply: x has head_dim 7"});
  OwnedTensor x2(DType::F32, Shape{3, 16});
  expect_error([&] { ops::rope_apply(ctx, x2, pos, inv_t, false); }, {"rope_apply: x has rank 2"});
  OwnedTensor x16(DType::BF16, Shape{3, 2, 8});
  expect_error([&] { ops::rope_apply(ctx, x16, pos, inv_t, false); },
               {"rope_apply (cpu): x has dtype bf16"});
  const Tensor pos_gpu(pos.view().data, DType::I32, Shape{3}, Device::CUDA);
  expect_error([&] { ops::rope_apply(ctx, x, pos_gpu, inv_t, false); },
               {"rope_apply", "not on the context's device"});
  OwnedTensor k_bad(DType::F32, Shape{4, 1, 8});
  expect_error([&] { ops::rope_fwd(ctx, x, k_bad, pos, inv_t); }, {"rope_fwd: q", "k [4, 1, 8]"});
  expect_error([&] { ops::rope_bwd(ctx, x, k_bad, pos, inv_t); }, {"rope_bwd: dq", "dk"});
  expect_error([&] { ops::rope_inv_freq(7, 10000.0, {}); }, {"rope_inv_freq: head_dim", "7"});
  expect_error([&] { ops::rope_inv_freq(8, -1.0, {}); }, {"rope_inv_freq: theta"});
  ops::RopeScaling bad;
  bad.llama3 = true;
  bad.high_freq_factor = 1.0;
  expect_error([&] { ops::rope_inv_freq(8, 10000.0, bad); }, {"rope_inv_freq: llama3"});
}

TEST(Rope, NoTokensIsANoOp) {
  Context ctx = Context::cpu(2);
  OwnedTensor x(DType::F32, Shape{0, 2, 4}), pos(DType::I32, Shape{0});
  const auto inv_t = test::host_tensor(ops::rope_inv_freq(4, 10000.0, {}), Shape{2});
  EXPECT_NO_THROW(ops::rope_apply(ctx, x, pos, inv_t, false));  // empty tensors are valid
}

}  // namespace
}  // namespace beaver
