// Attention CPU twin: forward (out, lse) against a naive double-precision full-softmax
// reference over MHA/GQA, odd head dims, padded batches and empty rows; backward against
// central finite differences of the double reference and against its analytic backward;
// decode over a KV cache built with kv_append against the prefill's rows; determinism across
// runs and thread counts; and argument errors that name the op and the argument.
#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <functional>
#include <string>
#include <utility>
#include <vector>

#include "csrc/context.h"
#include "csrc/ops/attention.h"
#include "tests/cases/attention.h"
#include "testutil.h"

namespace beaver {
namespace {

using test::compare;
using test::host_tensor;
using test::int_tensor;
using test::poison;
using test::random_vec;
using test::to_double;
using test::expect_tail_intact;
using test::SentinelTensor;

struct Dims {
  int64_t B, S, nh, nkv, d;
  size_t q_numel() const { return size_t(B * S * nh * d); }
  size_t kv_numel() const { return size_t(B * S * nkv * d); }
  size_t q_at(int64_t b, int64_t i, int64_t h) const { return size_t(((b * S + i) * nh + h) * d); }
  size_t kv_at(int64_t b, int64_t j, int64_t g) const {
    return size_t(((b * S + j) * nkv + g) * d);
  }
  size_t lse_at(int64_t b, int64_t h, int64_t i) const { return size_t((b * nh + h) * S + i); }
  Shape q_shape() const { return Shape{B, S, nh, d}; }
  Shape kv_shape() const { return Shape{B, S, nkv, d}; }
};

// ---- Double-precision reference: the full softmax row by row ------------------------------
void ref_fwd(const Dims& s, const std::vector<double>& q, const std::vector<double>& k,
             const std::vector<double>& v, const std::vector<int32_t>& rg, double scale,
             std::vector<double>& out, std::vector<double>& lse) {
  out.assign(s.q_numel(), 0.0);
  lse.assign(size_t(s.B * s.nh * s.S), 0.0);
  std::vector<double> sc(size_t(s.S));
  for (int64_t b = 0; b < s.B; ++b)
    for (int64_t h = 0; h < s.nh; ++h) {
      const int64_t g = h / (s.nh / s.nkv);
      for (int64_t i = rg[2 * b]; i < rg[2 * b + 1]; ++i) {
        double mx = -INFINITY;
        for (int64_t j = rg[2 * b]; j <= i; ++j) {
          double dot = 0;
          for (int64_t c = 0; c < s.d; ++c) dot += q[s.q_at(b, i, h) + c] * k[s.kv_at(b, j, g) + c];
          sc[j] = scale * dot;
          mx = std::max(mx, sc[j]);
        }
        double sum = 0;
        for (int64_t j = rg[2 * b]; j <= i; ++j) sum += std::exp(sc[j] - mx);
        const double L = mx + std::log(sum);
        lse[s.lse_at(b, h, i)] = L;
        for (int64_t j = rg[2 * b]; j <= i; ++j) {
          const double p = std::exp(sc[j] - L);
          for (int64_t c = 0; c < s.d; ++c) out[s.q_at(b, i, h) + c] += p * v[s.kv_at(b, j, g) + c];
        }
      }
    }
}

// Analytic backward of the reference for the loss sum(out * dout).
void ref_bwd(const Dims& s, const std::vector<double>& q, const std::vector<double>& k,
             const std::vector<double>& v, const std::vector<int32_t>& rg, double scale,
             const std::vector<double>& dout, std::vector<double>& dq, std::vector<double>& dk,
             std::vector<double>& dv) {
  dq.assign(s.q_numel(), 0.0);
  dk.assign(s.kv_numel(), 0.0);
  dv.assign(s.kv_numel(), 0.0);
  std::vector<double> out, lse;
  ref_fwd(s, q, k, v, rg, scale, out, lse);
  for (int64_t b = 0; b < s.B; ++b)
    for (int64_t h = 0; h < s.nh; ++h) {
      const int64_t g = h / (s.nh / s.nkv);
      for (int64_t i = rg[2 * b]; i < rg[2 * b + 1]; ++i) {
        const size_t qo = s.q_at(b, i, h);
        double D = 0;
        for (int64_t c = 0; c < s.d; ++c) D += dout[qo + c] * out[qo + c];
        for (int64_t j = rg[2 * b]; j <= i; ++j) {
          const size_t ko = s.kv_at(b, j, g);
          double dot = 0, dp = 0;
          for (int64_t c = 0; c < s.d; ++c) {
            dot += q[qo + c] * k[ko + c];
            dp += dout[qo + c] * v[ko + c];
          }
          const double p = std::exp(scale * dot - lse[s.lse_at(b, h, i)]);
          const double ds = p * (dp - D);
          for (int64_t c = 0; c < s.d; ++c) {
            dv[ko + c] += p * dout[qo + c];
            dq[qo + c] += scale * ds * k[ko + c];
            dk[ko + c] += scale * ds * q[qo + c];
          }
        }
      }
    }
}

// ---- One problem: random inputs and the op's outputs ---------------------------------------
struct Problem {
  Dims s;
  std::vector<int32_t> rg;
  float scale;
  OwnedTensor q, k, v, ranges;

  Problem(Dims dims, std::vector<int32_t> ranges_, uint64_t seed)
      : s(dims),
        rg(std::move(ranges_)),
        scale(1.0f / std::sqrt(float(dims.d))),
        q(test::random_tensor(s.q_shape(), seed, -2.0f, 2.0f)),
        k(test::random_tensor(s.kv_shape(), seed + 1, -2.0f, 2.0f)),
        v(test::random_tensor(s.kv_shape(), seed + 2)),
        ranges(int_tensor(rg, Shape{s.B, 2})) {}
};

// Outputs are poisoned and carry sentinel tails, checked after every run.
struct Fwd {
  SentinelTensor out, lse;
};
Fwd run_fwd(Context& ctx, const Problem& p) {
  Fwd f{SentinelTensor(DType::F32, p.s.q_shape()),
        SentinelTensor(DType::F32, Shape{p.s.B, p.s.nh, p.s.S})};
  ops::attention_fwd(ctx, p.q, p.k, p.v, p.ranges, p.scale, f.out, f.lse);
  expect_tail_intact(f.out, "out");
  expect_tail_intact(f.lse, "lse");
  return f;
}

struct Bwd {
  SentinelTensor dq, dk, dv;
};
Bwd run_bwd(Context& ctx, const Problem& p, const Fwd& f, const Tensor& dout) {
  Bwd g{SentinelTensor(DType::F32, p.s.q_shape()), SentinelTensor(DType::F32, p.s.kv_shape()),
        SentinelTensor(DType::F32, p.s.kv_shape())};
  ops::attention_bwd(ctx, p.q, p.k, p.v, f.out, dout, f.lse, p.ranges, p.scale, g.dq, g.dk, g.dv);
  expect_tail_intact(g.dq, "dq");
  expect_tail_intact(g.dk, "dk");
  expect_tail_intact(g.dv, "dv");
  return g;
}

Dims dims_of(const cases::AttentionCase& c) { return {c.B, c.S, c.nh, c.nkv, c.d}; }

// Ranges for a batch of B rows of length S: full, left padded, right padded, empty, ...
std::vector<int32_t> mixed_ranges(int64_t B, int64_t S) {
  const int32_t s = int32_t(S);
  const std::vector<std::pair<int32_t, int32_t>> kinds = {{0, s},
                                                          {std::min(2, s), s},
                                                          {0, std::max(0, s - 3)},
                                                          {s / 2, s / 2},
                                                          {1, std::max(1, s - 1)}};
  std::vector<int32_t> rg;
  for (int64_t b = 0; b < B; ++b) {
    rg.push_back(kinds[size_t(b) % kinds.size()].first);
    rg.push_back(kinds[size_t(b) % kinds.size()].second);
  }
  return rg;
}

void check_forward(const Dims& s, std::vector<int32_t> rg, uint64_t seed) {
  SCOPED_TRACE(testing::Message() << "B=" << s.B << " S=" << s.S << " nh=" << s.nh
                                  << " nkv=" << s.nkv << " d=" << s.d);
  Context ctx = Context::cpu(2);
  Problem p(s, std::move(rg), seed);
  Fwd f = run_fwd(ctx, p);
  std::vector<double> out, lse;
  ref_fwd(s, to_double(p.q), to_double(p.k), to_double(p.v), p.rg, p.scale, out, lse);
  BEAVER_EXPECT_CLOSE(to_double(f.out), out, 1e-4, 1e-2);
  BEAVER_EXPECT_CLOSE(to_double(f.lse), lse, 2e-6, 1.0);
  // Outside the ranges: exactly zero.
  const auto got = to_double(f.out);
  const auto got_lse = to_double(f.lse);
  for (int64_t b = 0; b < s.B; ++b)
    for (int64_t i = 0; i < s.S; ++i) {
      if (i >= p.rg[2 * b] && i < p.rg[2 * b + 1]) continue;
      for (int64_t h = 0; h < s.nh; ++h) {
        EXPECT_EQ(got_lse[s.lse_at(b, h, i)], 0.0);
        for (int64_t c = 0; c < s.d; ++c) ASSERT_EQ(got[s.q_at(b, i, h) + c], 0.0) << b << " " << i;
      }
    }
}

TEST(AttentionFwd, MatchesReferenceMhaAndGqaOverHeadDims) {
  const std::pair<int64_t, int64_t> heads[] = {{2, 2}, {4, 2}, {6, 1}};
  uint64_t seed = 100;
  for (auto [nh, nkv] : heads)
    for (int64_t d : {1, 3, 5, 12, 16, 64})
      check_forward({5, 9, nh, nkv, d}, mixed_ranges(5, 9), seed++);
}

TEST(AttentionFwd, SingleTokenAndOddLengths) {
  check_forward({2, 1, 4, 2, 3}, {0, 1, 0, 1}, 1);
  check_forward({2, 1, 2, 1, 5}, {0, 1, 1, 1}, 2);  // one row empty
  check_forward({3, 7, 6, 1, 7}, mixed_ranges(3, 7), 3);
}

TEST(AttentionFwd, SpansSeveralKeyBlocks) {
  // Longer than one 64-key block, with left padding so the blocks do not start at 0.
  check_forward({2, 97, 2, 1, 64}, {3, 97, 0, 65}, 5);
}

TEST(AttentionFwd, SharedCases) {
  uint64_t seed = 500;
  for (const auto& c : cases::kAttention) check_forward(dims_of(c), c.ranges, seed++);
}

TEST(AttentionFwd, EmptyBatchRowIsAllZero) {
  check_forward({3, 6, 2, 2, 4}, {2, 2, 0, 6, 6, 6}, 6);
}

// ---- Backward ------------------------------------------------------------------------------
TEST(AttentionBwd, MatchesFiniteDifferencesOfReference) {
  const Dims s{3, 5, 4, 2, 3};
  const std::vector<int32_t> rg = {1, 5, 0, 4, 2, 2};  // left pad, right pad, empty
  Context ctx = Context::cpu(2);
  Problem p(s, rg, 21);
  const auto R = random_vec(s.q_numel(), 22);
  OwnedTensor dout = host_tensor(R, s.q_shape());
  Fwd f = run_fwd(ctx, p);
  Bwd g = run_bwd(ctx, p, f, dout);

  // Loss sum(out * R) of the double reference, as a function of q, k, v concatenated.
  const size_t nq = s.q_numel(), nkv = s.kv_numel();
  std::vector<double> x = to_double(p.q);
  for (auto* t : {&p.k, &p.v}) {
    const auto part = to_double(*t);
    x.insert(x.end(), part.begin(), part.end());
  }
  const std::vector<double> Rd(R.begin(), R.end());
  auto loss = [&](const std::vector<double>& xs) {
    const std::vector<double> qd(xs.begin(), xs.begin() + long(nq));
    const std::vector<double> kd(xs.begin() + long(nq), xs.begin() + long(nq + nkv));
    const std::vector<double> vd(xs.begin() + long(nq + nkv), xs.end());
    std::vector<double> out, lse;
    ref_fwd(s, qd, kd, vd, rg, p.scale, out, lse);
    double sum = 0;
    for (size_t i = 0; i < out.size(); ++i) sum += out[i] * Rd[i];
    return sum;
  };
  const auto fd = test::finite_diff(loss, x, 1e-5);
  const std::vector<double> fd_q(fd.begin(), fd.begin() + long(nq));
  const std::vector<double> fd_k(fd.begin() + long(nq), fd.begin() + long(nq + nkv));
  const std::vector<double> fd_v(fd.begin() + long(nq + nkv), fd.end());

  BEAVER_EXPECT_CLOSE(to_double(g.dq), fd_q, 1e-4, 1e-2);
  BEAVER_EXPECT_CLOSE(to_double(g.dk), fd_k, 1e-4, 1e-2);
  BEAVER_EXPECT_CLOSE(to_double(g.dv), fd_v, 1e-4, 1e-2);

  // The analytic double backward (used for the larger shapes) agrees with the differences.
  std::vector<double> dq, dk, dv;
  ref_bwd(s, to_double(p.q), to_double(p.k), to_double(p.v), rg, p.scale, Rd, dq, dk, dv);
  BEAVER_EXPECT_CLOSE(dq, fd_q, 1e-7, 1e-3);
  BEAVER_EXPECT_CLOSE(dk, fd_k, 1e-7, 1e-3);
  BEAVER_EXPECT_CLOSE(dv, fd_v, 1e-7, 1e-3);
}

void check_backward(const Dims& s, const std::vector<int32_t>& rg, uint64_t seed) {
  SCOPED_TRACE(testing::Message() << "B=" << s.B << " S=" << s.S << " nh=" << s.nh
                                  << " nkv=" << s.nkv << " d=" << s.d);
  Context ctx = Context::cpu(2);
  Problem p(s, rg, seed);
  const auto R = random_vec(s.q_numel(), seed + 7);
  OwnedTensor dout = host_tensor(R, s.q_shape());
  Fwd f = run_fwd(ctx, p);
  Bwd g = run_bwd(ctx, p, f, dout);
  std::vector<double> dq, dk, dv;
  ref_bwd(s, to_double(p.q), to_double(p.k), to_double(p.v), rg, p.scale,
          std::vector<double>(R.begin(), R.end()), dq, dk, dv);
  BEAVER_EXPECT_CLOSE(to_double(g.dq), dq, 1e-4, 3e-2);
  BEAVER_EXPECT_CLOSE(to_double(g.dk), dk, 1e-4, 3e-2);
  BEAVER_EXPECT_CLOSE(to_double(g.dv), dv, 1e-4, 3e-2);
}

TEST(AttentionBwd, MatchesAnalyticReferenceOnSharedCases) {
  uint64_t seed = 31;
  for (const auto& c : cases::kAttention) check_backward(dims_of(c), c.ranges, seed++);
}

// ---- Decode ---------------------------------------------------------------------------------
TEST(DecodeAttention, EqualsPrefillRowsWithCacheFromKvAppend) {
  const int64_t B = 3, T = 75, nh = 6, nkv = 2, d = 16, Smax = 80, P = 50;
  const std::vector<int32_t> begins = {0, 5, 49};
  std::vector<int32_t> rg;
  for (int32_t b0 : begins) rg.insert(rg.end(), {b0, int32_t(T)});
  Problem p({B, T, nh, nkv, d}, rg, 41);
  Context ctx = Context::cpu(2);
  Fwd f = run_fwd(ctx, p);

  // Poisoned: unwritten cache rows must never be read; sentinel tails: nor written past.
  const SentinelTensor kc(DType::F32, Shape{B, Smax, nkv, d}), vc(DType::F32, Shape{B, Smax, nkv, d});
  // Prefill: rows [0, P) of every sequence in one append; a contiguous copy of that slice.
  auto tokens = [&](const OwnedTensor& src, int64_t t0, int64_t n) {
    OwnedTensor t(DType::F32, Shape{B, n, nkv, d});
    for (int64_t b = 0; b < B; ++b)
      std::memcpy(t.ptr<float>() + b * n * nkv * d, src.ptr<float>() + (b * T + t0) * nkv * d,
                  size_t(n * nkv * d) * sizeof(float));
    return t;
  };
  ops::kv_append(ctx, tokens(p.k, 0, P), tokens(p.v, 0, P), kc, vc,
                 int_tensor(std::vector<int32_t>(B, 0), Shape{B}));
  const auto fwd_out = to_double(f.out);
  size_t checked = 0;
  for (int64_t t = P; t < T; ++t) {
    ops::kv_append(ctx, tokens(p.k, t, 1), tokens(p.v, t, 1), kc, vc,
                   int_tensor(std::vector<int32_t>(B, int32_t(t)), Shape{B}));
    OwnedTensor qt(DType::F32, Shape{B, nh, d});
    const SentinelTensor out(DType::F32, Shape{B, nh, d});
    for (int64_t b = 0; b < B; ++b)
      std::memcpy(qt.ptr<float>() + b * nh * d, p.q.ptr<float>() + (b * T + t) * nh * d,
                  size_t(nh * d) * sizeof(float));
    std::vector<int32_t> drg;
    for (int32_t b0 : begins) drg.insert(drg.end(), {b0, int32_t(t + 1)});
    poison(out);
    ops::decode_attention(ctx, qt, kc, vc, int_tensor(drg, Shape{B, 2}), p.scale, out);
    // Decode runs the prefill's row code on one query: the same bits, not just close values.
    for (int64_t b = 0; b < B; ++b)
      for (int64_t e = 0; e < nh * d; ++e) {
        const float want = float(fwd_out[size_t((b * T + t) * nh * d + e)]);
        ASSERT_EQ(out.ptr<float>()[b * nh * d + e], want) << "t=" << t << " b=" << b << " e=" << e;
        ++checked;
      }
    expect_tail_intact(out, "decode out");
  }
  expect_tail_intact(kc, "k_cache");
  expect_tail_intact(vc, "v_cache");
  EXPECT_EQ(checked, size_t((T - P) * B * nh * d));
}

TEST(DecodeAttention, EmptyRangeGivesZeros) {
  Context ctx = Context::cpu(1);
  auto q = test::random_tensor(Shape{2, 2, 4}, 51);
  auto kc = test::random_tensor(Shape{2, 8, 1, 4}, 52);
  auto vc = test::random_tensor(Shape{2, 8, 1, 4}, 53);
  const SentinelTensor out(DType::F32, Shape{2, 2, 4});  // poisoned
  ops::decode_attention(ctx, q, kc, vc, int_tensor({3, 3, 0, 8}, Shape{2, 2}), 0.5f, out);
  expect_tail_intact(out, "out");
  for (int e = 0; e < 8; ++e) EXPECT_EQ(out.ptr<float>()[e], 0.0f);
  for (int e = 8; e < 16; ++e) EXPECT_TRUE(std::isfinite(out.ptr<float>()[e]));
}

TEST(KvAppend, WritesRowsAtEachPositionAndRejectsOverflow) {
  Context ctx = Context::cpu(1);
  const int64_t B = 2, n = 3, nkv = 2, d = 2, Smax = 6;
  auto kn = test::random_tensor(Shape{B, n, nkv, d}, 61);
  auto vn = test::random_tensor(Shape{B, n, nkv, d}, 62);
  const SentinelTensor kc(DType::F32, Shape{B, Smax, nkv, d}), vc(DType::F32, Shape{B, Smax, nkv, d});
  zero_tensor(kc);
  zero_tensor(vc);
  ops::kv_append(ctx, kn, vn, kc, vc, int_tensor({1, 3}, Shape{B}));
  expect_tail_intact(kc, "k_cache");
  expect_tail_intact(vc, "v_cache");
  const int64_t row = nkv * d;
  for (int64_t b = 0; b < B; ++b)
    for (int64_t j = 0; j < Smax; ++j) {
      const int64_t start = b == 0 ? 1 : 3;
      for (int64_t e = 0; e < row; ++e) {
        const bool written = j >= start && j < start + n;
        const float want_k = written ? kn.ptr<float>()[(b * n + j - start) * row + e] : 0.0f;
        const float want_v = written ? vn.ptr<float>()[(b * n + j - start) * row + e] : 0.0f;
        EXPECT_EQ(kc.ptr<float>()[(b * Smax + j) * row + e], want_k) << b << " " << j;
        EXPECT_EQ(vc.ptr<float>()[(b * Smax + j) * row + e], want_v) << b << " " << j;
      }
    }
  for (const std::vector<int32_t>& bad :
       {std::vector<int32_t>{0, 4}, std::vector<int32_t>{-1, 0}}) {
    try {
      ops::kv_append(ctx, kn, vn, kc, vc, int_tensor(bad, Shape{B}));
      ADD_FAILURE() << "expected an error for pos " << bad[0] << ", " << bad[1];
    } catch (const Error& e) {
      const std::string m = e.what();
      EXPECT_NE(m.find("kv_append: pos["), std::string::npos) << m;
      EXPECT_NE(m.find("outside the cache's [0, 6)"), std::string::npos) << m;
    }
  }
  // Position Smax - n is the last that fits.
  EXPECT_NO_THROW(ops::kv_append(ctx, kn, vn, kc, vc, int_tensor({3, 0}, Shape{B})));
  expect_tail_intact(kc, "k_cache");
  expect_tail_intact(vc, "v_cache");
}

// ---- Determinism ----------------------------------------------------------------------------
TEST(Attention, DeterministicAcrossRunsAndThreadCounts) {
  const Dims s{2, 150, 4, 2, 16};
  Problem p(s, {0, 150, 20, 140}, 71);
  OwnedTensor dout = test::random_tensor(s.q_shape(), 72);
  auto run = [&](int threads) {
    Context ctx = Context::cpu(threads);
    Fwd f = run_fwd(ctx, p);
    Bwd g = run_bwd(ctx, p, f, dout);
    std::vector<std::vector<float>> all;
    for (const SentinelTensor* t : {&f.out, &f.lse, &g.dq, &g.dk, &g.dv})
      all.push_back(to_host_f32(*t));
    return all;
  };
  const auto a = run(2), b = run(2), one = run(1);
  const char* names[] = {"out", "lse", "dq", "dk", "dv"};
  for (size_t t = 0; t < a.size(); ++t) {
    // Every element is computed by one task in a fixed order, so the thread count does not
    // change a single bit.
    EXPECT_EQ(std::memcmp(a[t].data(), b[t].data(), a[t].size() * 4), 0)
        << names[t] << " run to run";
    EXPECT_EQ(std::memcmp(a[t].data(), one[t].data(), a[t].size() * 4), 0)
        << names[t] << " 1 vs 2 threads";
  }
}

// ---- Argument errors ------------------------------------------------------------------------
void expect_error(const std::function<void()>& f, const std::vector<std::string>& parts) {
  try {
    f();
    ADD_FAILURE() << "expected a beaver::Error mentioning " << parts[0];
  } catch (const Error& e) {
    const std::string m = e.what();
    for (const auto& part : parts) EXPECT_NE(m.find(part), std::string::npos) << m;
  }
}

TEST(Attention, BadArgumentsNameOpAndArgument) {
  Context ctx = Context::cpu(1);
  const Dims s{2, 5, 4, 2, 3};
  Problem p(s, {0, 5, 1, 4}, 81);
  OwnedTensor out(DType::F32, s.q_shape()), lse(DType::F32, Shape{2, 4, 5});
  auto k_bad = test::random_tensor(Shape{2, 5, 2, 4}, 82);
  expect_error([&] { ops::attention_fwd(ctx, p.q, k_bad, p.v, p.ranges, 0.5f, out, lse); },
               {"attention_fwd", "k has shape [2, 5, 2, 4]"});
  auto k3 = test::random_tensor(Shape{2, 5, 3, 3}, 83);
  expect_error([&] { ops::attention_fwd(ctx, p.q, k3, k3, p.ranges, 0.5f, out, lse); },
               {"attention_fwd", "4 heads", "3 kv heads", "nh % nkv"});
  expect_error(
      [&] {
        ops::attention_fwd(ctx, p.q, p.k, p.v, int_tensor({0, 6, 0, 5}, Shape{2, 2}), 0.5f, out,
                           lse);
      },
      {"attention_fwd", "ranges[0] = [0, 6)", "[0, 5]"});
  expect_error(
      [&] {
        ops::attention_fwd(ctx, p.q, p.k, p.v, int_tensor({0, 5, 4, 3}, Shape{2, 2}), 0.5f, out,
                           lse);
      },
      {"attention_fwd", "ranges[1] = [4, 3)"});
  expect_error(
      [&] {
        ops::attention_fwd(ctx, p.q, p.k, p.v, test::random_tensor(Shape{2, 2}, 1), 0.5f, out, lse);
      },
      {"attention_fwd", "ranges has dtype f32"});
  OwnedTensor lse_bad(DType::F32, Shape{2, 5, 4});
  expect_error([&] { ops::attention_fwd(ctx, p.q, p.k, p.v, p.ranges, 0.5f, out, lse_bad); },
               {"attention_fwd", "lse has shape"});

  OwnedTensor dq(DType::F32, s.q_shape()), dk(DType::F32, s.kv_shape()),
      dv(DType::F32, s.kv_shape());
  OwnedTensor dk_bad(DType::F32, s.q_shape());
  expect_error(
      [&] {
        ops::attention_bwd(ctx, p.q, p.k, p.v, out, out, lse, p.ranges, 0.5f, dq, dk_bad, dv);
      },
      {"attention_bwd", "dk has shape"});
  expect_error(
      [&] {
        ops::attention_bwd(ctx, p.q, p.k, p.v, out, out, lse, int_tensor({0, 5, 0, 9}, Shape{2, 2}),
                           0.5f, dq, dk, dv);
      },
      {"attention_bwd", "ranges[1]"});

  auto q1 = test::random_tensor(Shape{2, 4, 3}, 84);
  auto kc = test::random_tensor(Shape{2, 8, 2, 3}, 85);
  OwnedTensor o1(DType::F32, Shape{2, 4, 3});
  expect_error(
      [&] {
        ops::decode_attention(ctx, q1, kc, kc, int_tensor({0, 9, 0, 1}, Shape{2, 2}), 0.5f, o1);
      },
      {"decode_attention", "ranges[0] = [0, 9)", "[0, 8]"});
  auto vc_bad = test::random_tensor(Shape{2, 7, 2, 3}, 86);
  expect_error(
      [&] {
        ops::decode_attention(ctx, q1, kc, vc_bad, int_tensor({0, 1, 0, 1}, Shape{2, 2}), 0.5f, o1);
      },
      {"decode_attention", "v_cache has shape"});
  auto kn = test::random_tensor(Shape{2, 1, 2, 4}, 87);
  expect_error(
      [&] {
        ops::kv_append(ctx, kn, kn, kc, kc, int_tensor({0, 0}, Shape{2}));
      },
      {"kv_append", "k_cache has shape"});
}

}  // namespace
}  // namespace beaver
