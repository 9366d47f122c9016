// GPU tests of the one-launch AdamW (kernels/adamw.cu) against the CPU twin: f32 and bf16
// grads, with and without a device grad_scale, with a bf16 or f16 low-precision copy, decay
// segments unsorted and starting inside a vector pack, odd sizes and an odd
// offset (element-wise path), several steps (bias correction), and bitwise determinism.
// Master, m and v within 1e-5 relative; lowp must equal the updated master rounded.
#include <gtest/gtest.h>

#include "csrc/ops/adamw.h"
#include "tests/cases/adamw.h"
#include "gpu/gpu_testutil.h"

namespace beaver::test {
namespace {

using cases::adamw_segments;

struct State {
  std::vector<float> p, g, m, v;
};

State make_state(int64_t n, uint64_t seed, bool bf16_grad) {
  State s{random_vec(size_t(n), seed + 1), random_vec(size_t(n), seed + 2, -0.1f, 0.1f),
          random_vec(size_t(n), seed + 3, -0.01f, 0.01f),
          random_vec(size_t(n), seed + 4, 0.0f, 1e-3f)};
  if (bf16_grad) s.g = round_bf16(s.g);  // the CPU twin then sees exactly the GPU's grads
  return s;
}

State cpu_step(Context& c, const State& s0, const std::vector<ops::ParamSegment>& segs,
               const ops::AdamWConfig& cfg, const float* gscale) {
  const int64_t n = int64_t(s0.p.size());
  const OwnedTensor p = host_tensor(s0.p, {n}), g = host_tensor(s0.g, {n});
  const OwnedTensor m = host_tensor(s0.m, {n}), v = host_tensor(s0.v, {n});
  OwnedTensor gs;
  if (gscale) gs = host_tensor({*gscale}, {1});
  ops::cpu::adamw_step(c, p, g, m, v, Tensor{}, gscale ? gs.view() : Tensor{}, segs, cfg);
  return {to_host_f32(p), s0.g, to_host_f32(m), to_host_f32(v)};
}

TEST(GpuAdamW, MatchesCpu) {
  BEAVER_REQUIRE_CUDA();
  Context g = Context::cuda();
  Context c = Context::cpu(2);
  uint64_t seed = 900;
  for (int64_t n : cases::kAdamwSizes)
    for (int variant = 0; variant < 3; ++variant) {
      const DType gd = variant == 1 ? DType::BF16 : DType::F32;
      const DType ld = variant == 0 ? DType::BF16 : variant == 1 ? DType::F16 : DType::F32;
      const bool with_lowp = variant != 2, with_scale = variant != 0;
      SCOPED_TRACE("n=" + std::to_string(n) + " grad " + dtype_str(gd) +
                   (with_lowp ? " lowp " + dtype_str(ld) : "") + (with_scale ? " scaled" : ""));
      seed += 10;
      State s = make_state(n, seed, gd == DType::BF16);
      ops::AdamWConfig cfg;
      cfg.lr = 1e-3f;
      cfg.weight_decay = 0.1f;
      const auto segs = adamw_segments(n);
      const float gscale = 0.625f;
      // Updated in place, with sentinel tails; the low-precision copy starts poisoned.
      const SentinelTensor dp = upload_sentinel(s.p, {n}, DType::F32);
      const OwnedTensor dg = upload(s.g, {n}, gd);
      const SentinelTensor dm = upload_sentinel(s.m, {n}, DType::F32);
      const SentinelTensor dv = upload_sentinel(s.v, {n}, DType::F32);
      const OwnedTensor dgs = upload({gscale}, {1}, DType::F32);
      const SentinelTensor dl(with_lowp ? ld : DType::BF16, {n}, Device::CUDA);
      for (int64_t step = 1; step <= 3; ++step) {  // bias correction changes with the step
        cfg.step = step;
        s = cpu_step(c, s, segs, cfg, with_scale ? &gscale : nullptr);
        ops::cuda::adamw_step(g, dp, dg, dm, dv, with_lowp ? dl.view() : Tensor{},
                              with_scale ? dgs.view() : Tensor{}, segs, cfg);
      }
      const auto gp = download(g, dp);
      expect_close_f32(gp, s.p, 1e-5, 1e-3, "master");
      expect_close_f32(download(g, dm), s.m, 1e-5, 1e-6, "m");
      expect_close_f32(download(g, dv), s.v, 1e-5, 1e-9, "v");
      if (with_lowp) {
        const auto lp = download(g, dl);
        EXPECT_EQ(max_abs_err(lp, round_to(gp, ld)), 0.0) << "lowp is not the rounded master";
      }
      for (const SentinelTensor* t : {&dp, &dm, &dv, &dl}) expect_tail_intact(*t, "master/m/v/lowp");
    }
}

TEST(GpuAdamW, OddOffsetAndDeterminism) {
  BEAVER_REQUIRE_CUDA();
  Context g = Context::cuda();
  Context c = Context::cpu(2);
  const int64_t n = 5003;
  const State s0 = make_state(n + 1, 1234, false);
  ops::AdamWConfig cfg;
  cfg.lr = 2e-3f;
  cfg.weight_decay = 0.05f;
  cfg.step = 5;
  const auto segs = adamw_segments(n);
  // Views one element in: the element-wise path.
  auto tail = [](const std::vector<float>& v) { return std::vector<float>(v.begin() + 1, v.end()); };
  const State ref = cpu_step(c, {tail(s0.p), tail(s0.g), tail(s0.m), tail(s0.v)}, segs, cfg, nullptr);
  std::vector<uint8_t> first;
  for (int run = 0; run < 2; ++run) {
    // The views end where the buffers do: the sentinel tails catch a write past them.
    const SentinelTensor dp = upload_sentinel(s0.p, {n + 1}, DType::F32);
    const OwnedTensor dg = upload(s0.g, {n + 1}, DType::F32);
    const SentinelTensor dm = upload_sentinel(s0.m, {n + 1}, DType::F32);
    const SentinelTensor dv = upload_sentinel(s0.v, {n + 1}, DType::F32);
    const Tensor vp = dp.view().slice(1, n + 1);
    ops::cuda::adamw_step(g, vp, dg.view().slice(1, n + 1), dm.view().slice(1, n + 1),
                          dv.view().slice(1, n + 1), Tensor{}, Tensor{}, segs, cfg);
    expect_close_f32(download(g, vp), ref.p, 1e-5, 1e-3, "master at an odd offset");
    EXPECT_EQ(download(g, dp)[0], s0.p[0]) << "element before the view changed";
    for (const SentinelTensor* t : {&dp, &dm, &dv}) expect_tail_intact(*t, "master/m/v");
    const auto raw = download_raw(g, vp);
    if (run == 0)
      first = raw;
    else
      EXPECT_EQ(raw, first) << "two identical steps differ bitwise";
  }
}

}  // namespace
}  // namespace beaver::test
