// CUDA attention vs the fp32 CPU twin. Accuracy follows the flash-attention rule: the error of
// the kernel against the fp32 reference (on the same bf16-rounded inputs) may be at most a
// small multiple of the error a naive bf16 implementation makes against that reference (every
// matrix product and P rounded to bf16, as bf16 eager code does), plus a small absolute floor.
// Padding positions hold NaN on the GPU side (the reference gets random values there), so any
// read of padding shows up; outputs are poisoned before each run and carry sentinel tails; the
// backward must be bitwise identical from run to run. Cases: tests/cases/attention.h.
#include <gtest/gtest.h>

#include <cmath>
#include <vector>

#include "attn_testutil.h"
#include "csrc/context.h"
#include "csrc/ops/attention.h"
#include "tests/cases/attention.h"
#include "testutil.h"

namespace beaver {
namespace {

using test::max_abs_err;
using test::round_bf16;
using test::to_device;
using test::expect_tail_intact;
using test::SentinelTensor;
using Case = cases::AttentionCase;

// The shared cases whose head size the CUDA kernels support.
std::vector<Case> gpu_cases() {
  std::vector<Case> out;
  for (const Case& c : cases::kAttention)
    if (cases::cuda_head_dim(c.d)) out.push_back(c);
  return out;
}

// A device copy of `v` (bf16) with a sentinel tail, for buffers an op updates in place.
SentinelTensor to_device_sentinel(const std::vector<float>& v, Shape s) {
  SentinelTensor t(DType::BF16, s, Device::CUDA);
  copy_tensor(t, to_device(v, s));
  return t;
}

bool in_range(const Case& c, int b, int i) {
  return i >= c.ranges[size_t(2 * b)] && i < c.ranges[size_t(2 * b + 1)];
}

// Random bf16-exact values; rows outside each range get NaN in the GPU copy.
struct Input {
  std::vector<float> ref, gpu;
};
Input make_input(const Case& c, int heads, uint64_t seed) {
  Input in;
  in.ref = round_bf16(test::random_vec(size_t(c.B) * c.S * heads * c.d, seed));
  in.gpu = in.ref;
  for (int b = 0; b < c.B; ++b)
    for (int i = 0; i < c.S; ++i)
      if (!in_range(c, b, i))
        for (int e = 0; e < heads * c.d; ++e)
          in.gpu[((size_t(b) * c.S + i) * heads) * c.d + e] = NAN;
  return in;
}

// Naive bf16 attention (forward and backward), the yardstick of the accuracy rule.
struct Naive {
  std::vector<float> out, dq, dk, dv;
};
Naive naive_bf16(const Case& c, const std::vector<float>& q, const std::vector<float>& k,
                 const std::vector<float>& v, const std::vector<float>* dout, float scale) {
  const int d = c.d, g = c.nh / c.nkv;
  Naive r;
  r.out.assign(q.size(), 0.0f);
  if (dout) {
    r.dq.assign(q.size(), 0.0f);
    r.dk.assign(k.size(), 0.0f);
    r.dv.assign(k.size(), 0.0f);
  }
  std::vector<float> dk_acc(k.size(), 0.0f), dv_acc(k.size(), 0.0f);
  auto qi = [&](int b, int i, int h) { return ((size_t(b) * c.S + i) * c.nh + h) * d; };
  auto ki = [&](int b, int j, int h) { return ((size_t(b) * c.S + j) * c.nkv + h) * d; };
  for (int b = 0; b < c.B; ++b) {
    const int begin = c.ranges[size_t(2 * b)], end = c.ranges[size_t(2 * b + 1)];
    for (int h = 0; h < c.nh; ++h) {
      const int hk = h / g;
      for (int i = begin; i < end; ++i) {
        std::vector<float> p(size_t(i - begin + 1));
        float m = -INFINITY;
        for (int j = begin; j <= i; ++j) {
          float s = 0.0f;
          for (int e = 0; e < d; ++e) s += q[qi(b, i, h) + e] * k[ki(b, j, hk) + e];
          p[size_t(j - begin)] = round_bf16(s * scale);
          m = std::max(m, p[size_t(j - begin)]);
        }
        float l = 0.0f;
        for (auto& x : p) l += (x = std::exp(x - m));
        for (auto& x : p) x = round_bf16(x / l);
        std::vector<float> o(static_cast<size_t>(d), 0.0f);
        for (int j = begin; j <= i; ++j)
          for (int e = 0; e < d; ++e) o[size_t(e)] += p[size_t(j - begin)] * v[ki(b, j, hk) + e];
        for (int e = 0; e < d; ++e) r.out[qi(b, i, h) + e] = round_bf16(o[size_t(e)]);
        if (!dout) continue;
        const float* go = dout->data() + qi(b, i, h);
        float D = 0.0f;
        for (int e = 0; e < d; ++e) D += go[e] * r.out[qi(b, i, h) + e];
        std::vector<float> gq(static_cast<size_t>(d), 0.0f);
        for (int j = begin; j <= i; ++j) {
          const float pj = p[size_t(j - begin)];
          float dp = 0.0f;
          for (int e = 0; e < d; ++e) dp += go[e] * v[ki(b, j, hk) + e];
          const float ds = round_bf16(pj * (round_bf16(dp) - D));
          for (int e = 0; e < d; ++e) {
            dv_acc[ki(b, j, hk) + e] += pj * go[e];
            dk_acc[ki(b, j, hk) + e] += ds * q[qi(b, i, h) + e] * scale;
            gq[size_t(e)] += ds * k[ki(b, j, hk) + e];
          }
        }
        for (int e = 0; e < d; ++e) r.dq[qi(b, i, h) + e] = round_bf16(gq[size_t(e)] * scale);
      }
    }
  }
  if (dout)
    for (size_t x = 0; x < k.size(); ++x) {
      r.dk[x] = round_bf16(dk_acc[x]);
      r.dv[x] = round_bf16(dv_acc[x]);
    }
  return r;
}

// Every element outside the valid rows must be exactly zero (and was poisoned before).
void expect_zero_outside(const Case& c, int heads, const std::vector<float>& x, const char* what) {
  size_t bad = 0;
  for (int b = 0; b < c.B; ++b)
    for (int i = 0; i < c.S; ++i)
      for (int e = 0; e < heads * c.d; ++e) {
        const float val = x[((size_t(b) * c.S + i) * heads) * c.d + e];
        if (in_range(c, b, i) ? !std::isfinite(val) : val != 0.0f) ++bad;
      }
  EXPECT_EQ(bad, 0u) << what << ": non-finite inside or non-zero outside the ranges";
}

void expect_rule(const char* what, double ours, double naive, double factor, double floor) {
  EXPECT_LE(ours, factor * naive + floor)
      << what << ": error vs fp32 reference " << ours << ", naive bf16 error " << naive;
}

TEST(AttentionCuda, ForwardMatchesCpuWithinFlashRule) {
  BEAVER_REQUIRE_CUDA();
  Context gpu = Context::cuda();
  Context cpu = Context::cpu();
  uint64_t seed = 100;
  for (const Case& c : gpu_cases()) {
    SCOPED_TRACE(testing::Message() << "B=" << c.B << " S=" << c.S << " nh=" << c.nh
                                    << " nkv=" << c.nkv << " d=" << c.d);
    const float scale = 1.0f / std::sqrt(float(c.d));
    const Input q = make_input(c, c.nh, ++seed), k = make_input(c, c.nkv, ++seed),
                v = make_input(c, c.nkv, ++seed);
    const Shape qs{c.B, c.S, c.nh, c.d}, ks{c.B, c.S, c.nkv, c.d}, ls{c.B, c.nh, c.S};
    // fp32 reference on the CPU.
    OwnedTensor rq = test::host_tensor(q.ref, qs), rk = test::host_tensor(k.ref, ks),
                rv = test::host_tensor(v.ref, ks), rr = test::int_tensor(c.ranges, {c.B, 2});
    OwnedTensor rout(DType::F32, qs), rlse(DType::F32, ls);
    ops::attention_fwd(cpu, rq, rk, rv, rr, scale, rout, rlse);
    // GPU.
    OwnedTensor gq = to_device(q.gpu, qs), gk = to_device(k.gpu, ks), gv = to_device(v.gpu, ks);
    OwnedTensor gr = test::to_device_int(c.ranges, {c.B, 2});
    const SentinelTensor gout(DType::BF16, qs, Device::CUDA), glse(DType::F32, ls, Device::CUDA);
    ops::attention_fwd(gpu, gq, gk, gv, gr, scale, gout, glse);
    gpu.synchronize();
    expect_tail_intact(gout, "out");
    expect_tail_intact(glse, "lse");
    const auto out = to_host_f32(gout), lse = to_host_f32(glse);
    const auto ref = to_host_f32(rout), lref = to_host_f32(rlse);
    const Naive naive = naive_bf16(c, q.ref, k.ref, v.ref, nullptr, scale);

    expect_zero_outside(c, c.nh, out, "out");
    expect_rule("out", max_abs_err(out, ref), max_abs_err(naive.out, ref), 2.0, 1e-3);
    EXPECT_LE(max_abs_err(lse, lref), 1e-3) << "lse";
    for (int b = 0; b < c.B; ++b)
      for (int h = 0; h < c.nh; ++h)
        for (int i = 0; i < c.S; ++i)
          if (!in_range(c, b, i)) {
            ASSERT_EQ(lse[(size_t(b) * c.nh + h) * c.S + i], 0.0f) << "lse outside the range";
          }
  }
}

TEST(AttentionCuda, BackwardMatchesCpuAndIsDeterministic) {
  BEAVER_REQUIRE_CUDA();
  Context gpu = Context::cuda();
  Context cpu = Context::cpu();
  uint64_t seed = 200;
  for (const Case& c : gpu_cases()) {
    SCOPED_TRACE(testing::Message() << "B=" << c.B << " S=" << c.S << " nh=" << c.nh
                                    << " nkv=" << c.nkv << " d=" << c.d);
    const float scale = 1.0f / std::sqrt(float(c.d));
    const Input q = make_input(c, c.nh, ++seed), k = make_input(c, c.nkv, ++seed),
                v = make_input(c, c.nkv, ++seed), go = make_input(c, c.nh, ++seed);
    const Shape qs{c.B, c.S, c.nh, c.d}, ks{c.B, c.S, c.nkv, c.d}, ls{c.B, c.nh, c.S};

    OwnedTensor rq = test::host_tensor(q.ref, qs), rk = test::host_tensor(k.ref, ks),
                rv = test::host_tensor(v.ref, ks), rgo = test::host_tensor(go.ref, qs),
                rr = test::int_tensor(c.ranges, {c.B, 2});
    OwnedTensor rout(DType::F32, qs), rlse(DType::F32, ls), rdq(DType::F32, qs),
        rdk(DType::F32, ks), rdv(DType::F32, ks);
    ops::attention_fwd(cpu, rq, rk, rv, rr, scale, rout, rlse);
    ops::attention_bwd(cpu, rq, rk, rv, rout, rgo, rlse, rr, scale, rdq, rdk, rdv);

    OwnedTensor gq = to_device(q.gpu, qs), gk = to_device(k.gpu, ks), gv = to_device(v.gpu, ks),
                ggo = to_device(go.gpu, qs), gr = test::to_device_int(c.ranges, {c.B, 2});
    OwnedTensor gout(DType::BF16, qs, Device::CUDA), glse(DType::F32, ls, Device::CUDA);
    const SentinelTensor gdq(DType::BF16, qs, Device::CUDA), gdk(DType::BF16, ks, Device::CUDA),
        gdv(DType::BF16, ks, Device::CUDA);
    ops::attention_fwd(gpu, gq, gk, gv, gr, scale, gout, glse);
    std::vector<uint8_t> first[3];
    for (int run = 0; run < 2; ++run) {
      for (const Tensor* t : {&gdq.view(), &gdk.view(), &gdv.view()}) test::poison_device(*t);
      ops::attention_bwd(gpu, gq, gk, gv, gout, ggo, glse, gr, scale, gdq, gdk, gdv);
      gpu.synchronize();
      const std::vector<uint8_t> bytes[3] = {test::device_bytes(gdq), test::device_bytes(gdk),
                                             test::device_bytes(gdv)};
      if (run == 0) {
        for (int t = 0; t < 3; ++t) first[t] = bytes[t];
      } else {
        EXPECT_TRUE(bytes[0] == first[0]) << "dq differs between two identical runs";
        EXPECT_TRUE(bytes[1] == first[1]) << "dk differs between two identical runs";
        EXPECT_TRUE(bytes[2] == first[2]) << "dv differs between two identical runs";
      }
      expect_tail_intact(gdq, "dq");
      expect_tail_intact(gdk, "dk");
      expect_tail_intact(gdv, "dv");
    }
    const auto dq = to_host_f32(gdq), dk = to_host_f32(gdk), dv = to_host_f32(gdv);
    const Naive naive = naive_bf16(c, q.ref, k.ref, v.ref, &go.ref, scale);
    expect_zero_outside(c, c.nh, dq, "dq");
    expect_zero_outside(c, c.nkv, dk, "dk");
    expect_zero_outside(c, c.nkv, dv, "dv");
    const auto dq_ref = to_host_f32(rdq), dk_ref = to_host_f32(rdk), dv_ref = to_host_f32(rdv);
    expect_rule("dq", max_abs_err(dq, dq_ref), max_abs_err(naive.dq, dq_ref), 3.0, 2e-3);
    expect_rule("dk", max_abs_err(dk, dk_ref), max_abs_err(naive.dk, dk_ref), 3.0, 2e-3);
    expect_rule("dv", max_abs_err(dv, dv_ref), max_abs_err(naive.dv, dv_ref), 3.0, 2e-3);
  }
}

TEST(AttentionCuda, DecodeMatchesCpuWithinFlashRule) {
  BEAVER_REQUIRE_CUDA();
  Context gpu = Context::cuda();
  Context cpu = Context::cpu();
  uint64_t seed = 300;
  for (const auto& c : cases::kDecode) {
    SCOPED_TRACE(testing::Message() << "B=" << c.B << " nh=" << c.nh << " nkv=" << c.nkv
                                    << " d=" << c.d << " Smax=" << c.Smax);
    const float scale = 1.0f / std::sqrt(float(c.d));
    const Shape qs{c.B, c.nh, c.d}, cs{c.B, c.Smax, c.nkv, c.d};
    const auto q = round_bf16(test::random_vec(size_t(qs.numel()), ++seed));
    // Large keys make the softmax peaky, where a wrong max or merge would show.
    const auto kc = round_bf16(test::random_vec(size_t(cs.numel()), ++seed, -3.0f, 3.0f));
    const auto vc = round_bf16(test::random_vec(size_t(cs.numel()), ++seed));
    auto kg = kc, vg = vc;
    for (int b = 0; b < c.B; ++b)
      for (int j = 0; j < c.Smax; ++j)
        if (j < c.ranges[size_t(2 * b)] || j >= c.ranges[size_t(2 * b + 1)])
          for (int e = 0; e < c.nkv * c.d; ++e)
            kg[(size_t(b) * c.Smax + j) * c.nkv * c.d + e] =
                vg[(size_t(b) * c.Smax + j) * c.nkv * c.d + e] = NAN;

    OwnedTensor rq = test::host_tensor(q, qs), rk = test::host_tensor(kc, cs),
                rv = test::host_tensor(vc, cs), rr = test::int_tensor(c.ranges, {c.B, 2});
    OwnedTensor rout(DType::F32, qs);
    ops::decode_attention(cpu, rq, rk, rv, rr, scale, rout);

    OwnedTensor gq = to_device(q, qs), gk = to_device(kg, cs), gv = to_device(vg, cs),
                gr = test::to_device_int(c.ranges, {c.B, 2});
    const SentinelTensor gout(DType::BF16, qs, Device::CUDA);  // poisoned
    ops::decode_attention(gpu, gq, gk, gv, gr, scale, gout);
    gpu.synchronize();
    expect_tail_intact(gout, "decode out");
    const auto out = to_host_f32(gout), ref = to_host_f32(rout);

    // Naive bf16 decode: the last row of the naive forward with query position end - 1.
    std::vector<float> naive(out.size(), 0.0f);
    const int g = c.nh / c.nkv;
    for (int b = 0; b < c.B; ++b) {
      const int begin = c.ranges[size_t(2 * b)], end = c.ranges[size_t(2 * b + 1)];
      for (int h = 0; h < c.nh && end > begin; ++h) {
        std::vector<float> p;
        float m = -INFINITY;
        for (int j = begin; j < end; ++j) {
          float s = 0.0f;
          for (int e = 0; e < c.d; ++e)
            s += q[(size_t(b) * c.nh + h) * c.d + e] *
                 kc[((size_t(b) * c.Smax + j) * c.nkv + h / g) * c.d + e];
          p.push_back(round_bf16(s * scale));
          m = std::max(m, p.back());
        }
        float l = 0.0f;
        for (auto& x : p) l += (x = std::exp(x - m));
        for (int e = 0; e < c.d; ++e) {
          float o = 0.0f;
          for (int j = begin; j < end; ++j)
            o += round_bf16(p[size_t(j - begin)] / l) *
                 vc[((size_t(b) * c.Smax + j) * c.nkv + h / g) * c.d + e];
          naive[(size_t(b) * c.nh + h) * c.d + e] = round_bf16(o);
        }
      }
    }
    size_t bad = 0;
    for (int b = 0; b < c.B; ++b)
      for (int x = 0; x < c.nh * c.d; ++x) {
        const float val = out[size_t(b) * c.nh * c.d + size_t(x)];
        const bool empty = c.ranges[size_t(2 * b)] == c.ranges[size_t(2 * b + 1)];
        if (empty ? val != 0.0f : !std::isfinite(val)) ++bad;
      }
    EXPECT_EQ(bad, 0u) << "non-finite output, or non-zero output for an empty range";
    expect_rule("decode out", max_abs_err(out, ref), max_abs_err(naive, ref), 2.0, 1e-3);
  }
}

TEST(AttentionCuda, KvAppendMatchesCpuExactly) {
  BEAVER_REQUIRE_CUDA();
  Context gpu = Context::cuda();
  Context cpu = Context::cpu();
  uint64_t seed = 400;
  for (const auto& c : cases::kKvAppend) {
    SCOPED_TRACE(testing::Message() << "B=" << c.B << " n=" << c.n << " nkv=" << c.nkv
                                    << " d=" << c.d);
    const Shape ns{c.B, c.n, c.nkv, c.d}, cs{c.B, c.Smax, c.nkv, c.d};
    const auto kn = round_bf16(test::random_vec(size_t(ns.numel()), ++seed));
    const auto vn = round_bf16(test::random_vec(size_t(ns.numel()), ++seed));
    const auto kc = round_bf16(test::random_vec(size_t(cs.numel()), ++seed));
    const auto vc = round_bf16(test::random_vec(size_t(cs.numel()), ++seed));
    OwnedTensor rkn = test::host_tensor(kn, ns), rvn = test::host_tensor(vn, ns),
                rkc = test::host_tensor(kc, cs), rvc = test::host_tensor(vc, cs),
                rpos = test::int_tensor(c.pos, {c.B});
    ops::kv_append(cpu, rkn, rvn, rkc, rvc, rpos);
    OwnedTensor gkn = to_device(kn, ns), gvn = to_device(vn, ns),
                gpos = test::to_device_int(c.pos, {c.B});
    const SentinelTensor gkc = to_device_sentinel(kc, cs), gvc = to_device_sentinel(vc, cs);
    ops::kv_append(gpu, gkn, gvn, gkc, gvc, gpos);
    gpu.synchronize();
    expect_tail_intact(gkc, "k_cache");
    expect_tail_intact(gvc, "v_cache");
    EXPECT_EQ(max_abs_err(to_host_f32(gkc), to_host_f32(rkc)), 0.0) << "k_cache";
    EXPECT_EQ(max_abs_err(to_host_f32(gvc), to_host_f32(rvc)), 0.0) << "v_cache";
  }
}

TEST(AttentionCuda, RejectsUnsupportedHeadDimAndDtype) {
  BEAVER_REQUIRE_CUDA();
  Context gpu = Context::cuda();
  const Shape qs{1, 4, 2, 32}, ls{1, 2, 4};
  OwnedTensor q(DType::BF16, qs, Device::CUDA), out(DType::BF16, qs, Device::CUDA),
      lse(DType::F32, ls, Device::CUDA);
  OwnedTensor r = test::to_device_int(std::vector<int32_t>{0, 4}, {1, 2});
  try {
    ops::attention_fwd(gpu, q, q, q, r, 1.0f, out, lse);
    FAIL() << "head dim 32 accepted";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("head dim 32"), std::string::npos) << e.what();
  }
  const Shape q64{1, 4, 2, 64};
  OwnedTensor qf(DType::F32, q64, Device::CUDA), outf(DType::F32, q64, Device::CUDA);
  EXPECT_THROW(ops::attention_fwd(gpu, qf, qf, qf, r, 1.0f, outf, lse), Error);
}

}  // namespace
}  // namespace beaver
