// GPU tests of the elementwise ops (kernels/elementwise.cu) against the CPU twins: convert for
// every f32/bf16/f16 pair (exact: one rounding on both sides), add/axpy/scale/fill in f32
// (1e-5) and bf16 (the bf16 rule), odd sizes and odd offsets (the non-vector path). Written
// buffers carry sentinel tails.
#include <gtest/gtest.h>

#include "csrc/ops/elementwise.h"
#include "tests/cases/elementwise.h"
#include "gpu/gpu_testutil.h"

namespace beaver::test {
namespace {


std::string tag(DType d, int64_t n) { return dtype_str(d) + " n=" + std::to_string(n); }

TEST(GpuElementwise, ConvertEveryPairExactly) {
  BEAVER_REQUIRE_CUDA();
  Context g = Context::cuda();
  Context c = Context::cpu(2);
  const DType types[] = {DType::F32, DType::BF16, DType::F16};
  uint64_t seed = 100;
  for (DType sd : types)
    for (DType dd : types)
      for (int64_t n : cases::kElementwiseSizes) {
        SCOPED_TRACE(dtype_str(sd) + " -> " + tag(dd, n));
        const auto x = random_vec(size_t(n), ++seed, -300.0f, 300.0f);
        const OwnedTensor src = upload(x, {n}, sd);
        const SentinelTensor dst(dd, {n}, Device::CUDA);  // poisoned
        ops::cuda::convert(g, src, dst);
        const auto got = download(g, dst);
        expect_tail_intact(dst, "dst");
        const OwnedTensor hsrc = host_typed(x, {n}, sd);
        const OwnedTensor hdst(dd, {n});
        ops::cpu::convert(c, hsrc, hdst);
        const auto want = to_host_f32(hdst);
        ASSERT_EQ(count_nonfinite(got), 0u);
        EXPECT_EQ(max_abs_err(got, want), 0.0);
      }
}

TEST(GpuElementwise, AddAxpyScaleFill) {
  BEAVER_REQUIRE_CUDA();
  Context g = Context::cuda();
  Context c = Context::cpu(2);
  uint64_t seed = 200;
  for (DType d : kFloat)
    for (int64_t n : cases::kElementwiseSizes) {
      SCOPED_TRACE(tag(d, n));
      const auto a = random_vec(size_t(n), ++seed, -2.0f, 2.0f);
      const auto b = random_vec(size_t(n), ++seed, -2.0f, 2.0f);
      const float alpha = -0.37f;
      // CPU reference on exact inputs, and the naive bf16 version (inputs and output rounded).
      auto run_cpu = [&](const std::vector<float>& av, const std::vector<float>& bv, int which) {
        const OwnedTensor ha = host_tensor(av, {n}), hb = host_tensor(bv, {n});
        const OwnedTensor ho(DType::F32, {n});
        if (which == 0) ops::cpu::add(c, ha, hb, ho);
        if (which == 1) {
          ops::cpu::axpy(c, alpha, ha, hb);
          copy_tensor(ho, hb);
        }
        if (which == 2) {
          ops::cpu::scale(c, ha, alpha);
          copy_tensor(ho, ha);
        }
        if (which == 3) ops::cpu::fill(c, ho, alpha);
        return to_host_f32(ho);
      };
      for (int which = 0; which < 4; ++which) {
        const char* names[] = {"add", "axpy", "scale", "fill"};
        SCOPED_TRACE(names[which]);
        // Every written buffer (out, y of axpy, x of scale) has a sentinel tail.
        const SentinelTensor da = upload_sentinel(a, {n}, d), db = upload_sentinel(b, {n}, d);
        const SentinelTensor dout(d, {n}, Device::CUDA);  // poisoned
        std::vector<float> got;
        if (which == 0) {
          ops::cuda::add(g, da, db, dout);
          got = download(g, dout);
        } else if (which == 1) {
          ops::cuda::axpy(g, alpha, da, db);
          got = download(g, db);
        } else if (which == 2) {
          ops::cuda::scale(g, da, alpha);
          got = download(g, da);
        } else {
          ops::cuda::fill(g, dout, alpha);
          got = download(g, dout);
        }
        const auto ref = run_cpu(a, b, which);
        const auto naive = round_bf16(run_cpu(round_bf16(a), round_bf16(b), which));
        expect_matches(d, got, naive, ref, 2.0, 1e-6, names[which]);
        for (const SentinelTensor* t : {&da, &db, &dout}) expect_tail_intact(*t, names[which]);
      }
    }
}

TEST(GpuElementwise, AddInPlaceAndOddOffset) {
  BEAVER_REQUIRE_CUDA();
  Context g = Context::cuda();
  Context c = Context::cpu(2);
  const int64_t n = 1001;
  const auto a = random_vec(size_t(n + 1), 301), b = random_vec(size_t(n + 1), 302);
  // Views one element in: not 16-byte aligned, so the element-wise path runs.
  const SentinelTensor da = upload_sentinel(a, {n + 1}, DType::F32);
  const OwnedTensor db = upload(b, {n + 1}, DType::F32);
  const Tensor va = da.view().slice(1, n + 1), vb = db.view().slice(1, n + 1);
  ops::cuda::add(g, va, vb, va);  // out aliases a
  const auto got = download(g, va);
  const OwnedTensor ha = host_tensor(std::vector<float>(a.begin() + 1, a.end()), {n});
  const OwnedTensor hb = host_tensor(std::vector<float>(b.begin() + 1, b.end()), {n});
  ops::cpu::add(c, ha, hb, ha);
  expect_close_f32(got, to_host_f32(ha), 1e-6, 1e-3, "in-place add at an odd offset");
  // The element before the view is untouched.
  EXPECT_EQ(download(g, da)[0], a[0]);
  expect_tail_intact(da, "a (out of the in-place add)");  // nor the one after it
}

TEST(GpuElementwise, RejectsUnsupportedDtype) {
  BEAVER_REQUIRE_CUDA();
  Context g = Context::cuda();
  const OwnedTensor x(DType::F16, {8}, Device::CUDA);
  EXPECT_THROW(ops::cuda::scale(g, x, 2.0f), Error);
}

}  // namespace
}  // namespace beaver::test
