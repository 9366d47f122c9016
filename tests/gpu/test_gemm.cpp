// GPU tests of the cuBLASLt GEMM (kernels/gemm.cu) against the CPU twin: all four transpose
// combinations, odd shapes, alpha/beta (C poisoned when beta == 0, so it must not be read),
// f32 (1e-5 relative, floored at sqrt(K)) and bf16 inputs with bf16 or f32 output (the bf16
// rule), K = 0, an odd-offset view, unsupported dtype pairs, and run-to-run bitwise
// determinism (cuBLASLt's algorithm choice and split-K must not vary between identical calls).
// C carries a sentinel tail.
#include <gtest/gtest.h>

#include <cmath>

#include "csrc/ops/gemm.h"
#include "tests/cases/gemm.h"
#include "gpu/gpu_testutil.h"

namespace beaver::test {
namespace {

using Dims = cases::GemmShape;

struct Types {
  DType ab, c;
};
const Types kTypes[] = {{DType::F32, DType::F32}, {DType::BF16, DType::BF16},
                        {DType::BF16, DType::F32}};

Shape a_shape(const Dims& d, bool ta) { return ta ? Shape{d.K, d.M} : Shape{d.M, d.K}; }
Shape b_shape(const Dims& d, bool tb) { return tb ? Shape{d.N, d.K} : Shape{d.K, d.N}; }

std::vector<float> cpu_gemm(Context& c, const std::vector<float>& a, const std::vector<float>& b,
                            const std::vector<float>& c0, const Dims& d, bool ta, bool tb,
                            float alpha, float beta) {
  const OwnedTensor ha = host_tensor(a, a_shape(d, ta)), hb = host_tensor(b, b_shape(d, tb));
  const OwnedTensor hc = host_tensor(c0, {d.M, d.N});
  ops::cpu::gemm(c, ha, ta, hb, tb, hc, alpha, beta);
  return to_host_f32(hc);
}

TEST(GpuGemm, MatchesCpuForAllTransposes) {
  BEAVER_REQUIRE_CUDA();
  Context g = Context::cuda();
  Context c = Context::cpu(2);
  uint64_t seed = 3000;
  for (const Types& ty : kTypes)
    for (const Dims& d : cases::kGemm)
      for (int t = 0; t < 4; ++t)
        for (int scal = 0; scal < 2; ++scal) {
          const bool ta = t & 1, tb = t & 2;
          const float alpha = scal ? 0.5f : 1.0f, beta = scal ? 0.75f : 0.0f;
          SCOPED_TRACE("a/b " + dtype_str(ty.ab) + " c " + dtype_str(ty.c) + " M=" +
                       std::to_string(d.M) + " N=" + std::to_string(d.N) + " K=" +
                       std::to_string(d.K) + (ta ? " a^T" : "") + (tb ? " b^T" : "") +
                       " beta=" + std::to_string(beta));
          const auto a = random_vec(size_t(d.M * d.K), ++seed);
          const auto b = random_vec(size_t(d.K * d.N), ++seed);
          auto c0 = random_vec(size_t(d.M * d.N), ++seed);
          if (ty.c == DType::BF16) c0 = round_bf16(c0);
          const auto ref = cpu_gemm(c, a, b, c0, d, ta, tb, alpha, beta);
          const auto naive = round_to(
              cpu_gemm(c, round_to(a, ty.ab), round_to(b, ty.ab), c0, d, ta, tb, alpha, beta),
              ty.c);
          const OwnedTensor da = upload(a, a_shape(d, ta), ty.ab);
          const OwnedTensor db = upload(b, b_shape(d, tb), ty.ab);
          const SentinelTensor dc = upload_sentinel(c0, {d.M, d.N}, ty.c);
          if (beta == 0.0f) poison_device(g, dc);  // must not be read
          ops::cuda::gemm(g, da, ta, db, tb, dc, alpha, beta);
          expect_tail_intact(dc, "C");
          const double floor = std::sqrt(double(d.K));
          expect_matches(ty.ab, download(g, dc), naive, ref, 2.0, 1e-4 * floor, "C", 1e-5,
                         floor);
        }
}

TEST(GpuGemm, BitwiseReproducible) {
  BEAVER_REQUIRE_CUDA();
  Context g = Context::cuda();
  uint64_t seed = 4000;
  for (const Types& ty : kTypes)
    for (const Dims& d : {Dims{17, 33, 65}, Dims{70, 300, 2048}, Dims{128, 256, 4096}})
      for (int t = 0; t < 4; ++t) {
        const bool ta = t & 1, tb = t & 2;
        SCOPED_TRACE("a/b " + dtype_str(ty.ab) + " c " + dtype_str(ty.c) + " K=" +
                     std::to_string(d.K) + (ta ? " a^T" : "") + (tb ? " b^T" : ""));
        const auto a = random_vec(size_t(d.M * d.K), ++seed);
        const auto b = random_vec(size_t(d.K * d.N), ++seed);
        const auto c0 = round_bf16(random_vec(size_t(d.M * d.N), ++seed));
        const OwnedTensor da = upload(a, a_shape(d, ta), ty.ab);
        const OwnedTensor db = upload(b, b_shape(d, tb), ty.ab);
        std::vector<uint8_t> first;
        for (int run = 0; run < 3; ++run) {
          const SentinelTensor dc = upload_sentinel(c0, {d.M, d.N}, ty.c);
          ops::cuda::gemm(g, da, ta, db, tb, dc, 0.5f, 0.75f);
          expect_tail_intact(dc, "C");
          const auto raw = download_raw(g, dc);
          if (run == 0)
            first = raw;
          else
            EXPECT_EQ(raw, first) << "two identical GEMMs differ bitwise";
        }
      }
}

TEST(GpuGemm, ZeroInnerDimensionScalesC) {
  BEAVER_REQUIRE_CUDA();
  Context g = Context::cuda();
  const auto c0 = random_vec(12, 5);
  const OwnedTensor da(DType::F32, {3, 0}, Device::CUDA), db(DType::F32, {0, 4}, Device::CUDA);
  const SentinelTensor dc = upload_sentinel(c0, {3, 4}, DType::F32);
  ops::cuda::gemm(g, da, false, db, false, dc, 1.0f, 0.5f);
  expect_tail_intact(dc, "C");
  const auto got = download(g, dc);
  for (size_t i = 0; i < 12; ++i) EXPECT_EQ(got[i], 0.5f * c0[i]);
}

TEST(GpuGemm, OddOffsetViewAndBadDtypes) {
  BEAVER_REQUIRE_CUDA();
  Context g = Context::cuda();
  Context c = Context::cpu(2);
  const Dims d{5, 9, 11};
  const auto a = random_vec(size_t((d.M + 1) * d.K), 1), b = random_vec(size_t(d.K * d.N), 2);
  const OwnedTensor da = upload(a, {d.M + 1, d.K}, DType::F32), db = upload(b, {d.K, d.N}, DType::F32);
  const SentinelTensor dc(DType::F32, {d.M, d.N}, Device::CUDA);  // poisoned
  // Rows 1..M of A: the view starts 44 bytes in, so cuBLASLt must pick an algorithm that
  // accepts a 4-byte-aligned operand.
  ops::cuda::gemm(g, da.view().slice(1, d.M + 1), false, db, false, dc, 1.0f, 0.0f);
  const auto ref = cpu_gemm(c, std::vector<float>(a.begin() + d.K, a.end()), b,
                            std::vector<float>(size_t(d.M * d.N), 0.0f), d, false, false, 1.0f,
                            0.0f);
  expect_close_f32(download(g, dc), ref, 1e-5, 1.0, "C from an offset view");
  expect_tail_intact(dc, "C");
  const OwnedTensor cb(DType::BF16, {d.M, d.N}, Device::CUDA);
  EXPECT_THROW(ops::cuda::gemm(g, da.view().slice(1, d.M + 1), false, db, false, cb, 1.0f, 0.0f),
               Error);  // f32 inputs with a bf16 output are not supported
}

}  // namespace
}  // namespace beaver::test
