// CUDA flash attention on the cases the basic GPU test does not reach: peaky scores (standard
// deviation of the scaled scores >= 3, checked on the inputs, so the running max and the
// rescaling of the online softmax really act), sequence lengths of 2048 and more, GQA at batch 1
// (few blocks in the grid), and lengths that are a multiple of no tile size (the kernels' tiles
// are 16, 32, 64 and 128 rows). Forward and backward against the fp32 CPU twin on the same
// bf16-rounded inputs; padding rows hold NaN on the GPU side; outputs are poisoned first; the
// backward must be bitwise identical from run to run. Where cuDNN is in the build and usable,
// its fused SDPA (tests/gpu/cudnn_sdpa.h) is a second, independent oracle at the long lengths.
#include <gtest/gtest.h>

#include <cmath>
#include <cstdio>
#include <memory>
#include <string>
#include <vector>

#include "attn_testutil.h"
#include "csrc/context.h"
#include "csrc/ops/attention.h"
#include "cudnn_sdpa.h"
#include "testutil.h"

namespace beaver {
namespace {

using test::max_abs_err;
using test::round_bf16;
using test::to_device;

struct Case {
  const char* name;
  int B, S, nh, nkv, d;
  std::vector<int32_t> ranges;  // [B, 2]
  float q_gain;                 // q is scaled by this to make the scores peaky
};

bool in_range(const Case& c, int b, int i) {
  return i >= c.ranges[size_t(2 * b)] && i < c.ranges[size_t(2 * b + 1)];
}

struct Input {
  std::vector<float> ref, gpu;  // gpu: NaN on padding rows
};

Input make_input(const Case& c, int heads, uint64_t seed, float gain) {
  Input in;
  in.ref = test::random_vec(size_t(c.B) * c.S * heads * c.d, seed);
  for (auto& x : in.ref) x = round_bf16(x * gain);
  in.gpu = in.ref;
  for (int b = 0; b < c.B; ++b)
    for (int i = 0; i < c.S; ++i)
      if (!in_range(c, b, i))
        for (int e = 0; e < heads * c.d; ++e) in.gpu[((size_t(b) * c.S + i) * heads) * c.d + e] = NAN;
  return in;
}

// Standard deviation of the scaled scores q_i·k_j * scale over a sample of valid causal pairs.
double score_std(const Case& c, const Input& q, const Input& k, float scale) {
  double s1 = 0.0, s2 = 0.0;
  int64_t n = 0;
  const int group = c.nh / c.nkv;
  for (int b = 0; b < c.B; ++b)
    for (int i = c.ranges[size_t(2 * b)]; i < c.ranges[size_t(2 * b + 1)]; i += 7)
      for (int j = c.ranges[size_t(2 * b)]; j <= i; j += 11)
        for (int h = 0; h < c.nh; h += 3) {
          double dot = 0.0;
          for (int e = 0; e < c.d; ++e)
            dot += double(q.ref[((size_t(b) * c.S + i) * c.nh + h) * c.d + e]) *
                   double(k.ref[((size_t(b) * c.S + j) * c.nkv + h / group) * c.d + e]);
          dot *= scale;
          s1 += dot;
          s2 += dot * dot;
          ++n;
        }
  const double mean = s1 / double(n);
  return std::sqrt(std::max(0.0, s2 / double(n) - mean * mean));
}

double max_abs(const std::vector<float>& v) {
  double m = 0.0;
  for (float x : v) m = std::max(m, double(std::fabs(x)));
  return m;
}

// Every element outside the valid rows is exactly zero, every one inside finite.
size_t bad_outside(const Case& c, int heads, const std::vector<float>& x) {
  size_t bad = 0;
  for (int b = 0; b < c.B; ++b)
    for (int i = 0; i < c.S; ++i)
      for (int e = 0; e < heads * c.d; ++e) {
        const float val = x[((size_t(b) * c.S + i) * heads) * c.d + e];
        if (in_range(c, b, i) ? !std::isfinite(val) : val != 0.0f) ++bad;
      }
  return bad;
}

// bf16 outputs against the fp32 reference: within a few bf16 steps of the largest value. A
// wrong rescale or a missed tile gives errors of the order of the values themselves.
void expect_near_ref(const char* what, const std::vector<float>& got,
                     const std::vector<float>& ref, double rel) {
  const double err = max_abs_err(got, ref), scale = max_abs(ref);
  EXPECT_LE(err, rel * scale + 1e-3) << what << ": max error " << err << " against values up to "
                                     << scale;
}

void run_case(const Case& c, uint64_t seed, bool backward) {
  SCOPED_TRACE(std::string(c.name) + ": B=" + std::to_string(c.B) + " S=" +
               std::to_string(c.S) + " nh=" + std::to_string(c.nh) + " nkv=" +
               std::to_string(c.nkv) + " d=" + std::to_string(c.d));
  Context gpu = Context::cuda();
  Context cpu = Context::cpu();
  const float scale = 1.0f / std::sqrt(float(c.d));
  const Input q = make_input(c, c.nh, seed, c.q_gain), k = make_input(c, c.nkv, seed + 1, 1.0f),
              v = make_input(c, c.nkv, seed + 2, 1.0f), go = make_input(c, c.nh, seed + 3, 1.0f);
  if (c.q_gain > 1.0f) {
    ASSERT_GE(score_std(c, q, k, scale), 3.0) << "the scores are not peaky";
  }
  const Shape qs{c.B, c.S, c.nh, c.d}, ks{c.B, c.S, c.nkv, c.d}, ls{c.B, c.nh, c.S};

  OwnedTensor rq = test::host_tensor(q.ref, qs), rk = test::host_tensor(k.ref, ks),
              rv = test::host_tensor(v.ref, ks), rgo = test::host_tensor(go.ref, qs),
              rr = test::int_tensor(c.ranges, {c.B, 2});
  OwnedTensor rout(DType::F32, qs), rlse(DType::F32, ls);
  ops::attention_fwd(cpu, rq, rk, rv, rr, scale, rout, rlse);

  OwnedTensor gq = to_device(q.gpu, qs), gk = to_device(k.gpu, ks), gv = to_device(v.gpu, ks),
              ggo = to_device(go.gpu, qs);
  OwnedTensor gr = test::to_device_int(c.ranges, {c.B, 2});
  OwnedTensor gout(DType::BF16, qs, Device::CUDA), glse(DType::F32, ls, Device::CUDA);
  test::poison_device(gout);
  test::poison_device(glse);
  ops::attention_fwd(gpu, gq, gk, gv, gr, scale, gout, glse);
  gpu.synchronize();
  const auto out = to_host_f32(gout), lse = to_host_f32(glse);
  const auto ref = to_host_f32(rout), lref = to_host_f32(rlse);
  EXPECT_EQ(bad_outside(c, c.nh, out), 0u) << "out: non-finite inside or non-zero outside";
  expect_near_ref("out", out, ref, 1.5e-2);
  double lse_err = 0.0;
  for (size_t i = 0; i < lse.size(); ++i)
    lse_err = std::max(lse_err, std::fabs(double(lse[i]) - double(lref[i])) /
                                    std::max(1.0, std::fabs(double(lref[i]))));
  EXPECT_LE(lse_err, 1e-3) << "lse (relative above 1)";

  // The second oracle: cuDNN's fused SDPA on the same inputs (full rows only: cuDNN's causal
  // mask has no per-row ranges).
  std::unique_ptr<test::CudnnSdpa> oracle;
  OwnedTensor out_c(DType::BF16, qs, Device::CUDA), lse_c(DType::F32, ls, Device::CUDA);
  if (test::full_rows(c.B, c.ranges, c.S)) {
    oracle = std::make_unique<test::CudnnSdpa>(gpu, c.B, c.S, c.nh, c.nkv, c.d, scale, backward);
    const std::string why = oracle->forward(gq, gk, gv, out_c, lse_c);
    if (why.empty()) {
      gpu.synchronize();
      expect_near_ref("out vs cuDNN", out, to_host_f32(out_c), 1.5e-2);
      expect_near_ref("lse vs cuDNN", lse, to_host_f32(lse_c), 1e-3);
    } else {
      std::printf("cuDNN oracle skipped: %s\n", why.c_str());
      oracle.reset();
    }
  }
  if (!backward) return;

  OwnedTensor rdq(DType::F32, qs), rdk(DType::F32, ks), rdv(DType::F32, ks);
  ops::attention_bwd(cpu, rq, rk, rv, rout, rgo, rlse, rr, scale, rdq, rdk, rdv);
  std::vector<uint8_t> first[3];
  for (int run = 0; run < 2; ++run) {
    OwnedTensor dq(DType::BF16, qs, Device::CUDA), dk(DType::BF16, ks, Device::CUDA),
        dv(DType::BF16, ks, Device::CUDA);
    test::poison_device(dq);
    test::poison_device(dk);
    test::poison_device(dv);
    ops::attention_bwd(gpu, gq, gk, gv, gout, ggo, glse, gr, scale, dq, dk, dv);
    gpu.synchronize();
    if (run == 0) {
      const auto hdq = to_host_f32(dq), hdk = to_host_f32(dk), hdv = to_host_f32(dv);
      EXPECT_EQ(bad_outside(c, c.nh, hdq), 0u) << "dq";
      EXPECT_EQ(bad_outside(c, c.nkv, hdk), 0u) << "dk";
      EXPECT_EQ(bad_outside(c, c.nkv, hdv), 0u) << "dv";
      expect_near_ref("dq", hdq, to_host_f32(rdq), 3e-2);
      expect_near_ref("dk", hdk, to_host_f32(rdk), 3e-2);
      expect_near_ref("dv", hdv, to_host_f32(rdv), 3e-2);
      if (oracle) {
        OwnedTensor dq_c(DType::BF16, qs, Device::CUDA), dk_c(DType::BF16, ks, Device::CUDA),
            dv_c(DType::BF16, ks, Device::CUDA);
        const std::string why =
            oracle->backward(gq, gk, gv, out_c, ggo, lse_c, dq_c, dk_c, dv_c);
        EXPECT_TRUE(why.empty()) << why;
        if (why.empty()) {
          gpu.synchronize();
          expect_near_ref("dq vs cuDNN", hdq, to_host_f32(dq_c), 3e-2);
          expect_near_ref("dk vs cuDNN", hdk, to_host_f32(dk_c), 3e-2);
          expect_near_ref("dv vs cuDNN", hdv, to_host_f32(dv_c), 3e-2);
        }
      }
      first[0] = test::device_bytes(dq);
      first[1] = test::device_bytes(dk);
      first[2] = test::device_bytes(dv);
    } else {
      EXPECT_EQ(test::device_bytes(dq), first[0]) << "dq differs between identical runs";
      EXPECT_EQ(test::device_bytes(dk), first[1]) << "dk differs between identical runs";
      EXPECT_EQ(test::device_bytes(dv), first[2]) << "dv differs between identical runs";
    }
  }
}

TEST(AttentionStress, PeakyScores) {
  BEAVER_REQUIRE_CUDA();
  run_case({"peaky d128 padded", 2, 333, 4, 2, 128, {0, 333, 19, 300}, 9.0f}, 1000, true);
  run_case({"peaky d64 MQA", 2, 201, 4, 1, 64, {5, 201, 0, 177}, 12.0f}, 1100, true);
}

TEST(AttentionStress, LongSequences) {
  BEAVER_REQUIRE_CUDA();
  // 2085 and 4099 are multiples of no tile size; full rows, so cuDNN can check them too.
  run_case({"long d128 GQA", 1, 2085, 4, 1, 128, {0, 2085}, 4.0f}, 1200, true);
  run_case({"long d64", 1, 4099, 2, 2, 64, {0, 4099}, 1.0f}, 1300, true);
}

TEST(AttentionStress, GqaAtBatchOne) {
  BEAVER_REQUIRE_CUDA();
  run_case({"GQA batch 1", 1, 517, 8, 2, 128, {0, 517}, 6.0f}, 1400, true);
  run_case({"GQA batch 1 left pad", 1, 259, 8, 4, 64, {3, 259}, 1.0f}, 1500, true);
}

TEST(AttentionStress, LengthsOfNoTileMultiple) {
  BEAVER_REQUIRE_CUDA();
  for (int S : {17, 33, 65, 129, 191}) {
    run_case({"odd length", 2, S, 2, 1, 128, {0, S, 1, S - 2}, 3.0f}, 1600 + uint64_t(S), true);
    run_case({"odd length", 1, S, 4, 2, 64, {0, S}, 1.0f}, 1700 + uint64_t(S), false);
  }
}

}  // namespace
}  // namespace beaver
