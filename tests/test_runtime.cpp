// Runtime basics: dtype conversions, shapes and views, arenas, Philox, errors.
#include <gtest/gtest.h>

#include <cmath>
#include <set>
#include <sstream>

#include "csrc/arena.h"
#include "csrc/context.h"
#include "csrc/dtype.h"
#include "csrc/philox.h"
#include "csrc/tensor.h"
#include "testutil.h"

namespace beaver {
namespace {

TEST(DType, Bf16RoundsToNearestEven) {
  EXPECT_EQ(to_bf16(1.0f).bits, 0x3f80);
  // 1 + 2^-8 is exactly halfway between two bf16 values: ties go to the even one (1.0).
  EXPECT_EQ(to_bf16(1.00390625f).bits, 0x3f80);
  // 1 + 3*2^-8 is halfway between 1+2^-7 (odd) and 1+2^-6 (even).
  EXPECT_EQ(to_bf16(1.01171875f).bits, 0x3f82);
  EXPECT_TRUE(std::isnan(to_f32(to_bf16(std::nanf("")))));
  EXPECT_EQ(to_f32(to_bf16(-2.5f)), -2.5f);
  EXPECT_TRUE(std::isinf(to_f32(to_bf16(INFINITY))));
}

TEST(DType, F16RoundTripsEveryHalf) {
  // Every finite f16 bit pattern converts to f32 and back unchanged.
  for (uint32_t b = 0; b < 0x10000; ++b) {
    const f16 h{uint16_t(b)};
    const float x = to_f32(h);
    if (std::isnan(x)) continue;
    ASSERT_EQ(to_f16(x).bits, uint16_t(b)) << "bits " << b << " value " << x;
  }
}

TEST(DType, F16KnownValues) {
  EXPECT_EQ(to_f16(1.0f).bits, 0x3c00);
  EXPECT_EQ(to_f16(65504.0f).bits, 0x7bff);
  EXPECT_EQ(to_f16(65520.0f).bits, 0x7c00);            // rounds to infinity
  EXPECT_EQ(to_f16(5.9604645e-8f).bits, 0x0001);       // smallest subnormal
  EXPECT_EQ(to_f16(2.9802322e-8f).bits, 0x0000);       // half of it: ties to even (0)
  EXPECT_EQ(to_f16(-0.0f).bits, 0x8000);
  EXPECT_EQ(to_f16(1.0f + 1.0f / 2048).bits, 0x3c00);  // halfway, ties to even
}

TEST(DType, ParseNamesAndRejectsUnknown) {
  EXPECT_EQ(parse_dtype("BF16"), DType::BF16);
  EXPECT_EQ(parse_dtype("float32"), DType::F32);
  try {
    parse_dtype("f8");
    FAIL() << "expected an error";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("unknown dtype 'f8'"), std::string::npos) << e.what();
  }
}

TEST(Tensor, ViewsAndSlices) {
  OwnedTensor t(DType::F32, Shape{4, 3});
  for (int i = 0; i < 12; ++i) t.ptr<float>()[i] = float(i);
  Tensor s = t.view().slice(1, 3);
  EXPECT_EQ(s.shape, (Shape{2, 3}));
  EXPECT_EQ(s.ptr<float>()[0], 3.0f);
  Tensor v = t.view().view(Shape{2, 6});
  EXPECT_EQ(v.size(1), 6);
  EXPECT_THROW(t.view().view(Shape{5, 2}), Error);
  EXPECT_THROW(t.view().slice(2, 5), Error);
  EXPECT_THROW((void)t.view().ptr<int32_t>(), Error);
}

TEST(Tensor, ArgumentChecksNameOpAndArgument) {
  OwnedTensor t(DType::F32, Shape{2, 3});
  try {
    expect_shape(t, Shape{2, 4}, "rmsnorm_fwd", "x");
    FAIL();
  } catch (const Error& e) {
    const std::string m = e.what();
    EXPECT_NE(m.find("rmsnorm_fwd: x has shape [2, 3] but expected [2, 4]"), std::string::npos)
        << m;
    EXPECT_NE(m.find("tensor.cpp:"), std::string::npos) << m;  // where
  }
  EXPECT_THROW(expect_dtype(t, DType::BF16, "op", "x"), Error);
  EXPECT_THROW(Shape({1, 2, 3, 4, 5, 6, 7}), Error);
  EXPECT_THROW(Shape({-1}), Error);
}

TEST(Tensor, CopyAndZero) {
  auto a = test::random_tensor(Shape{5}, 1);
  OwnedTensor b(DType::F32, Shape{5});
  copy_tensor(b, a);
  for (int i = 0; i < 5; ++i) EXPECT_EQ(b.ptr<float>()[i], a.ptr<float>()[i]);
  zero_tensor(b);
  for (int i = 0; i < 5; ++i) EXPECT_EQ(b.ptr<float>()[i], 0.0f);
  OwnedTensor c(DType::F32, Shape{4});
  EXPECT_THROW(copy_tensor(c, a), Error);
}

TEST(Arena, PlansAlignedEntriesAndPrintsBudget) {
  ArenaPlan plan;
  const size_t a = plan.add("params.embed", DType::BF16, Shape{3, 5});
  const size_t b = plan.add("params.norm", DType::F32, Shape{7});
  const size_t c = plan.add("grads.embed", DType::F32, Shape{3, 5});
  EXPECT_THROW(plan.add("params.norm", DType::F32, Shape{1}), Error);
  for (const auto& e : plan.entries()) EXPECT_EQ(e.offset % 256, 0u);
  Arena arena(plan, Device::CPU);
  EXPECT_EQ(arena[a].shape, (Shape{3, 5}));
  EXPECT_EQ(arena[b].dtype, DType::F32);
  EXPECT_EQ(arena.get("grads.embed").data, arena[c].data);
  EXPECT_THROW(arena.get("nope"), Error);
  std::ostringstream os;
  plan.print_budget(os, "test");
  EXPECT_NE(os.str().find("params"), std::string::npos);
  EXPECT_NE(os.str().find("total"), std::string::npos);
  EXPECT_EQ(format_bytes(1536), "1.50 KiB");
}

TEST(Philox, MatchesPublishedKnownAnswers) {
  // Random123's known-answer vectors for philox4x32-10.
  auto z = philox4x32_10(0, 0, 0);
  EXPECT_EQ(z.w[0], 0x6627e8d5u);
  EXPECT_EQ(z.w[1], 0xe169c58du);
  EXPECT_EQ(z.w[2], 0xbc57ac4cu);
  EXPECT_EQ(z.w[3], 0x9b00dbd8u);
  auto f = philox4x32_10(0xffffffffffffffffull, 0xffffffffffffffffull, 0xffffffffffffffffull);
  EXPECT_EQ(f.w[0], 0x408f276du);
  EXPECT_EQ(f.w[1], 0x41c83b0eu);
  EXPECT_EQ(f.w[2], 0xa20bc7c6u);
  EXPECT_EQ(f.w[3], 0x6d5451fdu);
}

TEST(Philox, StreamsAreReproducibleAndDistinct) {
  PhiloxStream a(42, 1), b(42, 1), c(42, 2);
  std::set<uint32_t> seen;
  for (int i = 0; i < 1000; ++i) {
    const uint32_t x = a.next_u32();
    EXPECT_EQ(x, b.next_u32());
    seen.insert(x);
    EXPECT_EQ(philox_u32(42, 1, uint64_t(i)), x);
  }
  EXPECT_GT(seen.size(), 990u);
  int same = 0;
  PhiloxStream a2(42, 1);
  for (int i = 0; i < 100; ++i) same += a2.next_u32() == c.next_u32();
  EXPECT_LT(same, 3);
}

TEST(Philox, UniformMeanAndRange) {
  PhiloxStream r(7, 0);
  double sum = 0;
  for (int i = 0; i < 100000; ++i) {
    const float u = r.uniform();
    ASSERT_GE(u, 0.0f);
    ASSERT_LT(u, 1.0f);
    sum += u;
  }
  EXPECT_NEAR(sum / 100000, 0.5, 0.005);
}

TEST(Context, CpuContextAndCudaUnavailableMessage) {
  Context c = Context::cpu(2);
  EXPECT_EQ(c.threads(), 2);
  EXPECT_TRUE(c.is_cpu());
  EXPECT_THROW(c.stream(), Error);
  void* s = c.scratch(1000);
  EXPECT_NE(s, nullptr);
  std::string why;
  if (!cuda_available(&why)) {
    EXPECT_FALSE(why.empty());
    EXPECT_THROW(Context::cuda(), Error);
  }
}

}  // namespace
}  // namespace beaver
