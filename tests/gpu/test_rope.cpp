// GPU tests of rotary embedding (kernels/rope.cu) against the CPU twin: forward and inverse in
// f32 (1e-5 relative) and bf16 (the bf16 rule), long positions (large angles), odd head counts
// and head sizes whose half is not a multiple of the vector width. x carries a sentinel tail.
#include <gtest/gtest.h>

#include <cmath>

#include "csrc/ops/rope.h"
#include "tests/cases/rope.h"
#include "gpu/gpu_testutil.h"

namespace beaver::test {
namespace {


std::vector<float> inv_freq_of(int64_t d) {
  std::vector<float> f(size_t(d / 2));
  for (int64_t i = 0; i < d / 2; ++i)
    f[size_t(i)] = float(std::pow(10000.0, -2.0 * double(i) / double(d)));
  return f;
}

std::vector<int32_t> positions_of(int64_t T, uint64_t seed) {
  PhiloxStream rng(seed, 1);
  std::vector<int32_t> p(static_cast<size_t>(T));
  for (auto& x : p) x = int32_t(rng.next_u32() % 131072u);  // up to 128k: large angles
  return p;
}

std::vector<float> cpu_rope(Context& c, const std::vector<float>& x, Shape s,
                            const std::vector<int32_t>& pos, const std::vector<float>& freq,
                            bool inverse) {
  const OwnedTensor hx = host_tensor(x, s);
  const OwnedTensor hp = int_tensor(pos, {int64_t(pos.size())});
  const OwnedTensor hf = host_tensor(freq, {int64_t(freq.size())});
  ops::cpu::rope_apply(c, hx, hp, hf, inverse);
  return to_host_f32(hx);
}

TEST(GpuRope, ForwardAndInverseMatchCpu) {
  BEAVER_REQUIRE_CUDA();
  Context g = Context::cuda();
  Context c = Context::cpu(2);
  uint64_t seed = 500;
  for (DType d : kFloat)
    for (const auto& sh : cases::kRope)
      for (bool inverse : {false, true}) {
        const Shape s{sh.T, sh.heads, sh.d};
        SCOPED_TRACE(dtype_str(d) + " " + s.str() + (inverse ? " inverse" : " forward"));
        const auto x = random_vec(size_t(s.numel()), ++seed);
        const auto pos = positions_of(sh.T, ++seed);
        const auto freq = inv_freq_of(sh.d);
        const auto ref = cpu_rope(c, x, s, pos, freq, inverse);
        const auto naive = round_bf16(cpu_rope(c, round_bf16(x), s, pos, freq, inverse));
        const SentinelTensor dx = upload_sentinel(x, s, d);
        const OwnedTensor dp = upload_i32(pos, {sh.T});
        const OwnedTensor df = upload(freq, {sh.d / 2}, DType::F32);
        ops::cuda::rope_apply(g, dx, dp, df, inverse);
        expect_matches(d, download(g, dx), naive, ref, 2.0, 1e-6, "rotated x", 1e-5, 1e-2);
        expect_tail_intact(dx, "x (rotated in place)");
      }
}

TEST(GpuRope, InverseUndoesForward) {
  BEAVER_REQUIRE_CUDA();
  Context g = Context::cuda();
  const Shape s{11, 5, 128};
  const auto x = random_vec(size_t(s.numel()), 77);
  const SentinelTensor dx = upload_sentinel(x, s, DType::F32);
  const OwnedTensor dp = upload_i32(positions_of(11, 78), {11});
  const OwnedTensor df = upload(inv_freq_of(128), {64}, DType::F32);
  ops::cuda::rope_apply(g, dx, dp, df, false);
  const auto rotated = download(g, dx);
  EXPECT_GT(max_abs_err(rotated, x), 1e-2);  // it did rotate
  ops::cuda::rope_apply(g, dx, dp, df, true);
  expect_close_f32(download(g, dx), x, 1e-5, 1e-2, "round trip");
  expect_tail_intact(dx, "x (rotated in place)");
}

}  // namespace
}  // namespace beaver::test
