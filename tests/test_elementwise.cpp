// Elementwise ops on the CPU: convert between every pair of float dtypes (exact round trips,
// nearest-even rounding, NaN/Inf), add/axpy/scale/fill against double, aliasing, bad arguments.
#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <string>

#include "csrc/ops/elementwise.h"
#include "tests/cases/elementwise.h"
#include "testutil.h"

namespace beaver {
namespace {

using test::random_tensor;
using test::to_double;
using test::expect_error;

TEST(Elementwise, ConvertBetweenAllFloatDtypes) {
  Context ctx = Context::cpu(2);
  const int64_t n = 70007;  // 7 * 10001: above the parallel threshold, odd
  auto src = random_tensor(Shape{n}, 1, -100.0f, 100.0f);
  src.ptr<float>()[0] = 1.00390625f;  // bf16 tie → 1.0 (even)
  src.ptr<float>()[1] = std::nanf("");
  src.ptr<float>()[2] = -INFINITY;
  src.ptr<float>()[3] = 1.0f + 1.0f / 2048;  // f16 tie → 1.0
  const float* s = src.ptr<float>();
  const test::SentinelTensor b(DType::BF16, Shape{n}), h(DType::F16, Shape{n}),
      f(DType::F32, Shape{n});  // poisoned, with sentinel tails
  ops::convert(ctx, src, b);
  ops::convert(ctx, src, h);
  for (int64_t i = 0; i < n; ++i) {
    ASSERT_EQ(b.ptr<bf16>()[i].bits, to_bf16(s[i]).bits) << i;
    ASSERT_EQ(h.ptr<f16>()[i].bits, to_f16(s[i]).bits) << i;
  }
  EXPECT_EQ(to_f32(b.ptr<bf16>()[0]), 1.0f);
  EXPECT_EQ(to_f32(h.ptr<f16>()[3]), 1.0f);
  // 16-bit → f32 is exact, and back again reproduces the bits.
  ops::convert(ctx, b, f);
  for (int64_t i = 0; i < n; ++i) {
    if (!std::isnan(s[i])) {
      ASSERT_EQ(f.ptr<float>()[i], to_f32(b.ptr<bf16>()[i])) << i;
    }
  }
  EXPECT_TRUE(std::isnan(f.ptr<float>()[1]));
  const test::SentinelTensor b2(DType::BF16, Shape{n}), h2(DType::F16, Shape{n});
  ops::convert(ctx, f, b2);
  EXPECT_EQ(std::memcmp(b.ptr<bf16>(), b2.ptr<bf16>(), size_t(n) * 2), 0);
  // bf16 ↔ f16 directly (through fp32), and same-dtype copy with another shape.
  ops::convert(ctx, b, h2);
  for (int64_t i = 0; i < n; ++i)
    ASSERT_EQ(h2.ptr<f16>()[i].bits, to_f16(to_f32(b.ptr<bf16>()[i])).bits) << i;
  const test::SentinelTensor h3(DType::F16, Shape{7, 10001}), b3(DType::BF16, Shape{n});
  ops::convert(ctx, h, h3);
  EXPECT_EQ(std::memcmp(h.ptr<f16>(), h3.ptr<f16>(), size_t(n) * 2), 0);
  ops::convert(ctx, h, b3);
  for (int64_t i = 0; i < n; ++i)
    ASSERT_EQ(b3.ptr<bf16>()[i].bits, to_bf16(to_f32(h.ptr<f16>()[i])).bits) << i;
  for (const test::SentinelTensor* t : {&b, &h, &f, &b2, &h2, &h3, &b3})
    test::expect_tail_intact(*t, "converted " + t->view().str());
}

TEST(Elementwise, AddAxpyScaleFillMatchDouble) {
  Context ctx = Context::cpu(2);
  for (const int64_t n : cases::kElementwiseSizes) {
    SCOPED_TRACE(n);
    const auto a = test::host_sentinel(random_tensor(Shape{n}, 1));
    const auto b = random_tensor(Shape{n}, 2);
    const auto ad = to_double(a), bd = to_double(b);
    const test::SentinelTensor o(DType::F32, Shape{n});  // poisoned
    ops::add(ctx, a, b, o);
    std::vector<double> want(static_cast<size_t>(n));
    for (size_t i = 0; i < want.size(); ++i) want[i] = ad[i] + bd[i];
    BEAVER_EXPECT_CLOSE(to_double(o), want, 1e-6, 1e-3);
    ops::add(ctx, a, b, a);  // out aliases a
    BEAVER_EXPECT_CLOSE(to_double(a), want, 1e-6, 1e-3);

    ops::axpy(ctx, -0.25f, b, o);
    for (size_t i = 0; i < want.size(); ++i) want[i] += -0.25 * bd[i];
    BEAVER_EXPECT_CLOSE(to_double(o), want, 1e-5, 1e-3);

    ops::scale(ctx, o, 3.0f);
    for (auto& w : want) w *= 3.0;
    BEAVER_EXPECT_CLOSE(to_double(o), want, 1e-5, 1e-3);

    test::poison(o);
    ops::fill(ctx, o, 2.5f);
    for (double v : to_double(o)) ASSERT_EQ(v, 2.5);
    test::expect_tail_intact(o, "out");
    test::expect_tail_intact(a, "a (out of the in-place add)");
  }
}

TEST(Elementwise, BadArgumentsNameOpAndArgument) {
  Context ctx = Context::cpu(1);
  auto a = random_tensor(Shape{4, 5}, 1);
  OwnedTensor bad(DType::F32, Shape{5, 4}), a16(DType::BF16, Shape{4, 5}), ai(DType::I32, Shape{20});
  OwnedTensor shorter(DType::BF16, Shape{19});
  expect_error([&] { ops::convert(ctx, a, shorter); }, {"convert: src", "element count"});
  expect_error([&] { ops::convert(ctx, a, ai); }, {"convert: dst has dtype i32"});
  expect_error([&] { ops::add(ctx, a, bad, a); }, {"add: b has shape [5, 4]"});
  expect_error([&] { ops::add(ctx, a, a, a16); }, {"add: out has dtype bf16"});
  expect_error([&] { ops::add(ctx, a16, a16, a16); }, {"add (cpu): a has dtype bf16"});
  expect_error([&] { ops::axpy(ctx, 1.0f, a, bad); }, {"axpy: y has shape [5, 4]"});
  expect_error([&] { ops::scale(ctx, ai, 1.0f); }, {"scale: x has dtype i32"});
  expect_error([&] { ops::fill(ctx, a16, 1.0f); }, {"fill (cpu): x has dtype bf16"});
  const Tensor a_gpu(a.view().data, DType::F32, Shape{4, 5}, Device::CUDA);
  expect_error([&] { ops::fill(ctx, a_gpu, 1.0f); }, {"fill", "not on the context's device"});
  expect_error([&] { ops::convert(ctx, a_gpu, a16); }, {"convert", "not on the context's device"});
}

}  // namespace
}  // namespace beaver
