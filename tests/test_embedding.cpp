// Token embedding on the CPU: lookup against a plain gather, backward against finite
// differences of a double reference (repeated tokens included), bitwise independence from the
// thread count, accumulate, and bad arguments (out-of-range ids named with their position).
#include <gtest/gtest.h>

#include <cstring>
#include <string>

#include "csrc/ops/embedding.h"
#include "tests/cases/embedding.h"
#include "testutil.h"

namespace beaver {
namespace {

using test::random_tensor;
using test::to_double;
using test::expect_error;
using test::expect_tail_intact;
using test::SentinelTensor;

std::vector<int32_t> random_ids(int64_t n, int64_t vocab, uint64_t seed) {
  PhiloxStream rng(seed, 3);
  std::vector<int32_t> ids(static_cast<size_t>(n));
  for (auto& id : ids) id = int32_t(rng.next_u32() % uint32_t(vocab));
  return ids;
}

TEST(Embedding, ForwardGathersRows) {
  Context ctx = Context::cpu(2);
  for (const auto& c : cases::kEmbedding) {
    const int64_t t = c.T, v = c.V, h = c.H;
    SCOPED_TRACE(testing::Message() << "T=" << t << " V=" << v << " H=" << h);
    auto ids = random_ids(t, v, 1);
    auto tok = test::int_tensor(ids, Shape{t});
    auto table = random_tensor(Shape{v, h}, 2);
    const SentinelTensor out(DType::F32, Shape{t, h});  // poisoned, with a sentinel tail
    ops::embedding_fwd(ctx, tok, table, out);
    expect_tail_intact(out, "out");
    const auto tb = to_double(table), o = to_double(out);
    for (int64_t i = 0; i < t; ++i)
      for (int64_t j = 0; j < h; ++j)
        ASSERT_EQ(o[size_t(i * h + j)], tb[size_t(ids[size_t(i)] * h + j)]) << i << "," << j;
  }
}

// Loss = sum(table[ids] * R) in double.
double loss(const std::vector<double>& table, const std::vector<int32_t>& ids,
            const std::vector<double>& r, int64_t h) {
  double s = 0;
  for (size_t t = 0; t < ids.size(); ++t)
    for (int64_t j = 0; j < h; ++j) s += table[size_t(ids[t] * h + j)] * r[t * size_t(h) + size_t(j)];
  return s;
}

TEST(Embedding, BackwardMatchesFiniteDifferencesAndAccumulates) {
  Context ctx = Context::cpu(2);
  for (const auto& c : cases::kEmbedding) {
    if (c.finite_diff_cost() > cases::kEmbeddingFiniteDiffMax) continue;
    const int64_t t = c.T, v = c.V, h = c.H;
    SCOPED_TRACE(testing::Message() << "T=" << t << " V=" << v << " H=" << h);
    auto ids = random_ids(t, v, uint64_t(t));  // more tokens than rows: ids repeat
    auto tok = test::int_tensor(ids, Shape{t});
    auto table = random_tensor(Shape{v, h}, 2);
    auto r = random_tensor(Shape{t, h}, 3);
    const auto rd = to_double(r);
    const auto g = test::finite_diff(
        [&](const std::vector<double>& tb) { return loss(tb, ids, rd, h); }, to_double(table));
    const SentinelTensor dt(DType::F32, Shape{v, h});
    ops::embedding_bwd(ctx, tok, r, dt, false);
    BEAVER_EXPECT_CLOSE(to_double(dt), g, 1e-4, 1e-2);
    expect_tail_intact(dt, "dtable");

    const auto acc = test::host_sentinel(random_tensor(Shape{v, h}, 4));
    auto want = to_double(acc);
    for (size_t i = 0; i < want.size(); ++i) want[i] += g[i];
    ops::embedding_bwd(ctx, tok, r, acc, true);
    BEAVER_EXPECT_CLOSE(to_double(acc), want, 1e-4, 1e-2);
    expect_tail_intact(acc, "dtable (accumulated)");
  }
}

TEST(Embedding, BackwardIsBitwiseIndependentOfThreads) {
  const int64_t t = 500, v = 7, h = 1000;
  auto tok = test::int_tensor(random_ids(t, v, 5), Shape{t});
  auto r = random_tensor(Shape{t, h}, 6);
  OwnedTensor d1(DType::F32, Shape{v, h}), d2(DType::F32, Shape{v, h});
  Context c1 = Context::cpu(1), c2 = Context::cpu(2);
  ops::embedding_bwd(c1, tok, r, d1, false);
  ops::embedding_bwd(c2, tok, r, d2, false);
  EXPECT_EQ(std::memcmp(d1.ptr<float>(), d2.ptr<float>(), size_t(v * h) * 4), 0);
}

TEST(Embedding, BackwardSumsInIncreasingT) {
  // Values of very different magnitudes make fp32 addition order visible in the bits.
  const int64_t t = 64, v = 3, h = 300;
  const auto ids = random_ids(t, v, 8);
  auto tok = test::int_tensor(ids, Shape{t});
  auto r = random_tensor(Shape{t, h}, 9);
  float* rp = r.ptr<float>();
  for (int64_t i = 0; i < t; ++i)
    for (int64_t j = 0; j < h; ++j) rp[i * h + j] *= std::ldexp(1.0f, int(i % 7) * 4 - 12);
  std::vector<float> want(size_t(v * h), 0.0f);
  for (int64_t i = 0; i < t; ++i)
    for (int64_t j = 0; j < h; ++j) want[size_t(ids[size_t(i)] * h + j)] += rp[i * h + j];
  OwnedTensor dt(DType::F32, Shape{v, h});
  Context ctx = Context::cpu(2);
  ops::embedding_bwd(ctx, tok, r, dt, false);
  EXPECT_EQ(std::memcmp(dt.ptr<float>(), want.data(), want.size() * 4), 0);
}

TEST(Embedding, BadArgumentsNameOpAndArgument) {
  Context ctx = Context::cpu(1);
  auto table = random_tensor(Shape{5, 3}, 1);
  OwnedTensor out(DType::F32, Shape{4, 3});
  auto bad = test::int_tensor({0, 4, 5, 1}, Shape{4});
  expect_error([&] { ops::embedding_fwd(ctx, bad, table, out); },
               {"embedding_fwd", "token id 5 at position 2", "[0, 5)"});
  auto neg = test::int_tensor({0, -1, 2, 1}, Shape{4});
  expect_error([&] { ops::embedding_fwd(ctx, neg, table, out); },
               {"token id -1 at position 1"});
  // A bad id leaves dtable untouched.
  auto dt = random_tensor(Shape{5, 3}, 9);
  const auto before = to_double(dt);
  expect_error([&] { ops::embedding_bwd(ctx, bad, out, dt, false); },
               {"embedding_bwd", "token id 5 at position 2"});
  EXPECT_EQ(to_double(dt), before);

  auto ok = test::int_tensor({0, 1, 2, 3}, Shape{4});
  OwnedTensor out_bad(DType::F32, Shape{4, 4});
  expect_error([&] { ops::embedding_fwd(ctx, ok, table, out_bad); },
               {"embedding_fwd: out has shape [4, 4]"});
  OwnedTensor tok_f(DType::F32, Shape{4});
  expect_error([&] { ops::embedding_fwd(ctx, tok_f, table, out); },
               {"embedding_fwd: tokens has dtype f32"});
  OwnedTensor table16(DType::BF16, Shape{5, 3}), out16(DType::BF16, Shape{4, 3});
  expect_error([&] { ops::embedding_fwd(ctx, ok, table16, out); },
               {"embedding_fwd: out has dtype f32 but expected bf16"});
  expect_error([&] { ops::embedding_fwd(ctx, ok, table16, out16); },
               {"embedding_fwd (cpu): table has dtype bf16"});
  const Tensor table_gpu(table.view().data, DType::F32, Shape{5, 3}, Device::CUDA);
  expect_error([&] { ops::embedding_fwd(ctx, ok, table_gpu, out); },
               {"embedding_fwd", "not on the context's device"});
  OwnedTensor dout_bad(DType::F32, Shape{3, 3});
  expect_error([&] { ops::embedding_bwd(ctx, ok, dout_bad, dt, false); },
               {"embedding_bwd: dout has shape [3, 3]"});
}

TEST(Embedding, NoTokens) {
  Context ctx = Context::cpu(2);
  OwnedTensor tok(DType::I32, Shape{0}), out(DType::F32, Shape{0, 4});
  auto table = random_tensor(Shape{3, 4}, 1);
  ops::embedding_fwd(ctx, tok, table, out);
  auto dt = random_tensor(Shape{3, 4}, 2);
  ops::embedding_bwd(ctx, tok, out, dt, false);
  for (double v : to_double(dt)) EXPECT_EQ(v, 0.0);
}

}  // namespace
}  // namespace beaver
