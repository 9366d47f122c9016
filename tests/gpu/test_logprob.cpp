// GPU tests of the fused log-softmax + gather / cross-entropy (kernels/logprob.cu) against the
// CPU twin: both signs, forward and backward, f32 (1e-5 relative) and bf16 logits (the bf16
// rule; 4x for the gradient), vocabularies from 1 to 128256 including odd sizes, ignored rows,
// out-of-range targets (zero rows on CUDA), the in-place backward, and run-to-run bitwise
// determinism.
#include <gtest/gtest.h>

#include "csrc/ops/logprob.h"
#include "tests/cases/logprob.h"
#include "gpu/gpu_testutil.h"

namespace beaver::test {
namespace {

using Dims = cases::LogprobShape;

std::vector<int32_t> targets_of(const Dims& sh, uint64_t seed) {
  PhiloxStream rng(seed, 3);
  std::vector<int32_t> t(size_t(sh.T));
  for (auto& x : t) x = int32_t(rng.next_u32() % uint32_t(sh.V));
  if (sh.T > 2) t[1] = ops::kIgnoreIndex;  // one ignored row
  return t;
}

struct Result {
  std::vector<float> out, lse, dlogits;
};

Result cpu_run(Context& c, const std::vector<float>& logits, const std::vector<int32_t>& tg,
               const std::vector<float>& dout, const Dims& sh, float sign) {
  const OwnedTensor hl = host_tensor(logits, {sh.T, sh.V});
  const OwnedTensor ht = int_tensor(tg, {sh.T}), hd = host_tensor(dout, {sh.T});
  const OwnedTensor out(DType::F32, {sh.T}), lse(DType::F32, {sh.T});
  const OwnedTensor dl(DType::F32, {sh.T, sh.V});
  ops::cpu::logprob_fwd(c, hl, ht, out, lse, ops::kIgnoreIndex, sign);
  ops::cpu::logprob_bwd(c, hl, ht, lse, hd, dl, ops::kIgnoreIndex, sign);
  return {to_host_f32(out), to_host_f32(lse), to_host_f32(dl)};
}

struct GpuRun {
  OwnedTensor logits, targets;
  SentinelTensor out, lse;
  OwnedTensor dout;
  SentinelTensor dlogits;
};

GpuRun gpu_run(Context& g, const std::vector<float>& logits, const std::vector<int32_t>& tg,
               const std::vector<float>& dout, const Dims& sh, DType d, float sign) {
  GpuRun r{upload(logits, {sh.T, sh.V}, d),
           upload_i32(tg, {sh.T}),
           SentinelTensor(DType::F32, {sh.T}, Device::CUDA),
           SentinelTensor(DType::F32, {sh.T}, Device::CUDA),
           upload(dout, {sh.T}, DType::F32),
           SentinelTensor(d, {sh.T, sh.V}, Device::CUDA)};  // poisoned, with sentinel tails
  ops::cuda::logprob_fwd(g, r.logits, r.targets, r.out, r.lse, ops::kIgnoreIndex, sign);
  ops::cuda::logprob_bwd(g, r.logits, r.targets, r.lse, r.dout, r.dlogits, ops::kIgnoreIndex,
                         sign);
  return r;
}

TEST(GpuLogprob, ForwardBackwardMatchCpu) {
  BEAVER_REQUIRE_CUDA();
  Context g = Context::cuda();
  Context c = Context::cpu(2);
  uint64_t seed = 7000;
  for (DType d : kFloat)
    for (const Dims& sh : cases::kLogprob)
      for (float sign : {1.0f, -1.0f}) {
        SCOPED_TRACE(dtype_str(d) + " T=" + std::to_string(sh.T) + " V=" + std::to_string(sh.V) +
                     (sign > 0 ? " logprob" : " cross-entropy"));
        const auto logits = random_vec(size_t(sh.T * sh.V), ++seed, -8.0f, 8.0f);
        const auto tg = targets_of(sh, ++seed);
        const auto dout = random_vec(size_t(sh.T), ++seed);
        const Result ref = cpu_run(c, logits, tg, dout, sh, sign);
        const Result naive = cpu_run(c, round_bf16(logits), tg, dout, sh, sign);
        const GpuRun r = gpu_run(g, logits, tg, dout, sh, d, sign);
        expect_matches(d, download(g, r.out), naive.out, ref.out, 2.0, 1e-5, "out", 1e-5, 1.0);
        expect_matches(d, download(g, r.lse), naive.lse, ref.lse, 2.0, 1e-5, "lse", 1e-5, 1.0);
        expect_matches(d, download(g, r.dlogits), round_bf16(naive.dlogits), ref.dlogits, 4.0,
                       1e-6, "dlogits", 1e-5, 1e-4);
        expect_tail_intact(r.out, "out");
        expect_tail_intact(r.lse, "lse");
        expect_tail_intact(r.dlogits, "dlogits");
      }
}

TEST(GpuLogprob, BitwiseReproducible) {
  BEAVER_REQUIRE_CUDA();
  Context g = Context::cuda();
  const Dims sh{16, 50257};
  const auto logits = random_vec(size_t(sh.T * sh.V), 71, -10.0f, 10.0f);
  const auto tg = targets_of(sh, 72);
  const auto dout = random_vec(size_t(sh.T), 73);
  for (DType d : kFloat) {
    const GpuRun a = gpu_run(g, logits, tg, dout, sh, d, 1.0f);
    const GpuRun b = gpu_run(g, logits, tg, dout, sh, d, 1.0f);
    EXPECT_EQ(download_raw(g, a.lse), download_raw(g, b.lse)) << dtype_str(d);
    EXPECT_EQ(download_raw(g, a.out), download_raw(g, b.out)) << dtype_str(d);
    EXPECT_EQ(download_raw(g, a.dlogits), download_raw(g, b.dlogits)) << dtype_str(d);
  }
}

TEST(GpuLogprob, InPlaceBackwardAndOutOfRangeTargets) {
  BEAVER_REQUIRE_CUDA();
  Context g = Context::cuda();
  Context c = Context::cpu(2);
  const Dims sh{5, 4099};
  const auto logits = random_vec(size_t(sh.T * sh.V), 81, -5.0f, 5.0f);
  auto tg = targets_of(sh, 82);
  const auto dout = random_vec(size_t(sh.T), 83);
  const Result ref = cpu_run(c, logits, tg, dout, sh, -1.0f);
  // In place: dlogits overwrites logits.
  const SentinelTensor dl = upload_sentinel(logits, {sh.T, sh.V}, DType::F32);
  const OwnedTensor dt = upload_i32(tg, {sh.T});
  const SentinelTensor out(DType::F32, {sh.T}, Device::CUDA), lse(DType::F32, {sh.T}, Device::CUDA);
  const OwnedTensor dd = upload(dout, {sh.T}, DType::F32);
  ops::cuda::logprob_fwd(g, dl, dt, out, lse, ops::kIgnoreIndex, -1.0f);
  ops::cuda::logprob_bwd(g, dl, dt, lse, dd, dl, ops::kIgnoreIndex, -1.0f);
  expect_close_f32(download(g, dl), ref.dlogits, 1e-5, 1e-4, "in-place dlogits");
  expect_tail_intact(dl, "dlogits (in place)");
  // A target outside [0, V) is an ignored row on CUDA: zero output and a zero gradient row.
  tg[2] = int32_t(sh.V) + 3;
  const OwnedTensor dl2 = upload(logits, {sh.T, sh.V}, DType::F32), dt2 = upload_i32(tg, {sh.T});
  const SentinelTensor grad(DType::F32, {sh.T, sh.V}, Device::CUDA);  // poisoned
  poison_device(g, out);
  ops::cuda::logprob_fwd(g, dl2, dt2, out, lse, ops::kIgnoreIndex, 1.0f);
  ops::cuda::logprob_bwd(g, dl2, dt2, lse, dd, grad, ops::kIgnoreIndex, 1.0f);
  EXPECT_EQ(download(g, out)[2], 0.0f);
  EXPECT_EQ(download(g, lse)[2], 0.0f);
  const auto gr = download(g, grad);
  for (int64_t v = 0; v < sh.V; ++v) ASSERT_EQ(gr[size_t(2 * sh.V + v)], 0.0f) << "v=" << v;
  EXPECT_EQ(count_nonfinite(gr), 0u);
  for (const SentinelTensor* t : {&out, &lse, &grad}) expect_tail_intact(*t, "out/lse/dlogits");
}

}  // namespace
}  // namespace beaver::test
