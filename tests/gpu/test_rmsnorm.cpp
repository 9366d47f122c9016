// GPU tests of the fused residual-add RMSNorm (kernels/rmsnorm.cu) against the CPU twin:
// forward (with and without residual) and backward (with and without dresidual, dweight
// accumulated or not) in f32 (1e-5 relative) and bf16 (the bf16 rule; 4x for gradients),
// odd hidden sizes (element-wise path), a hidden size that needs more than 48 KB of shared
// memory, and run-to-run bitwise determinism of the backward. Outputs carry sentinel tails.
#include <gtest/gtest.h>

#include <algorithm>

#include "csrc/ops/rmsnorm.h"
#include "tests/cases/rmsnorm.h"
#include "gpu/gpu_testutil.h"

namespace beaver::test {
namespace {

struct Dims {
  int64_t T, H;
};
constexpr float kEps = 1e-5f;

struct Inputs {
  std::vector<float> x, res, w, dout, dres;
};

Inputs make_inputs(const Dims& sh, uint64_t seed) {
  const size_t n = size_t(sh.T * sh.H);
  return {random_vec(n, seed + 1, -2.0f, 2.0f), random_vec(n, seed + 2),
          random_vec(size_t(sh.H), seed + 3, 0.5f, 1.5f), random_vec(n, seed + 4),
          random_vec(n, seed + 5)};
}

Inputs rounded(const Inputs& in) {
  return {round_bf16(in.x), round_bf16(in.res), round_bf16(in.w), round_bf16(in.dout),
          round_bf16(in.dres)};
}

// What a plain bf16 implementation normalises when there is a residual: h = x + residual
// computed from bf16 inputs and stored in bf16 (then run without a residual).
Inputs rounded_sum(const Inputs& in) {
  Inputs r = rounded(in);
  for (size_t i = 0; i < r.x.size(); ++i) r.x[i] += r.res[i];
  r.x = round_bf16(r.x);
  return r;
}

struct Outputs {
  std::vector<float> out, res_out, rstd, dx, dw;
};

// The CPU twin: forward, then backward from its residual_out and rstd.
Outputs cpu_run(Context& c, const Inputs& in, const Dims& sh, bool with_res, bool with_dres,
                bool accumulate, const std::vector<float>& dw0) {
  const Shape s{sh.T, sh.H};
  const OwnedTensor x = host_tensor(in.x, s), res = host_tensor(in.res, s);
  const OwnedTensor w = host_tensor(in.w, {sh.H});
  const OwnedTensor out(DType::F32, s), res_out(DType::F32, s), rstd(DType::F32, {sh.T});
  ops::cpu::rmsnorm_fwd(c, x, with_res ? res.view() : Tensor{}, w, kEps, out, res_out, rstd);
  const OwnedTensor dout = host_tensor(in.dout, s), dres = host_tensor(in.dres, s);
  const OwnedTensor dx(DType::F32, s), dw = host_tensor(dw0, {sh.H});
  ops::cpu::rmsnorm_bwd(c, dout, res_out, w, rstd, with_dres ? dres.view() : Tensor{}, dx, dw,
                        accumulate);
  return {to_host_f32(out), to_host_f32(res_out), to_host_f32(rstd), to_host_f32(dx),
          to_host_f32(dw)};
}

struct GpuRun {
  OwnedTensor x, res, w;
  SentinelTensor out, res_out, rstd;
  OwnedTensor dout, dres;
  SentinelTensor dx, dw;
};

GpuRun gpu_run(Context& g, const Inputs& in, const Dims& sh, DType d, bool with_res,
               bool with_dres, bool accumulate, const std::vector<float>& dw0) {
  const Shape s{sh.T, sh.H};
  GpuRun t{upload(in.x, s, d),
           upload(in.res, s, d),
           upload(in.w, {sh.H}, d),
           SentinelTensor(d, s, Device::CUDA),
           SentinelTensor(d, s, Device::CUDA),
           SentinelTensor(DType::F32, {sh.T}, Device::CUDA),
           upload(in.dout, s, d),
           upload(in.dres, s, d),
           SentinelTensor(d, s, Device::CUDA),
           upload_sentinel(dw0, {sh.H}, DType::F32)};
  poison_device(g, t.out);
  poison_device(g, t.res_out);
  poison_device(g, t.rstd);
  poison_device(g, t.dx);
  if (!accumulate) poison_device(g, t.dw);
  ops::cuda::rmsnorm_fwd(g, t.x, with_res ? t.res.view() : Tensor{}, t.w, kEps, t.out, t.res_out,
                         t.rstd);
  ops::cuda::rmsnorm_bwd(g, t.dout, t.res_out, t.w, t.rstd, with_dres ? t.dres.view() : Tensor{},
                         t.dx, t.dw, accumulate);
  return t;
}

TEST(GpuRmsnorm, ForwardBackwardMatchCpu) {
  BEAVER_REQUIRE_CUDA();
  Context g = Context::cuda();
  Context c = Context::cpu(2);
  uint64_t seed = 1000;
  for (DType d : kFloat)
    for (const auto& cs : cases::kRmsnorm)
      for (int variant = 0; variant < 2; ++variant) {
        const Dims sh{cs.rows(), cs.H};
        const bool with_res = variant == 0, with_dres = variant == 0, accumulate = variant == 1;
        SCOPED_TRACE(dtype_str(d) + " T=" + std::to_string(sh.T) + " H=" + std::to_string(sh.H) +
                     (with_res ? " residual" : " no residual"));
        seed += 10;
        const Inputs in = make_inputs(sh, seed);
        const auto dw0 = random_vec(size_t(sh.H), seed + 7);
        const Outputs ref = cpu_run(c, in, sh, with_res, with_dres, accumulate, dw0);
        // The naive bf16 version: inputs rounded, h rounded after the add, outputs rounded.
        const Outputs naive = with_res
                                  ? cpu_run(c, rounded_sum(in), sh, false, with_dres, accumulate, dw0)
                                  : cpu_run(c, rounded(in), sh, false, with_dres, accumulate, dw0);
        const GpuRun t = gpu_run(g, in, sh, d, with_res, with_dres, accumulate, dw0);
        const double dw_floor = std::max(1.0, double(sh.T) / 8.0);
        expect_matches(d, download(g, t.out), round_bf16(naive.out), ref.out, 2.0, 1e-5, "out");
        expect_matches(d, download(g, t.res_out), round_bf16(naive.res_out), ref.res_out, 2.0,
                       1e-5, "residual_out");
        expect_matches(d, download(g, t.rstd), naive.rstd, ref.rstd, 2.0, 1e-6, "rstd");
        expect_matches(d, download(g, t.dx), round_bf16(naive.dx), ref.dx, 4.0, 1e-4, "dx",
                       1e-5, 1e-2);
        expect_matches(d, download(g, t.dw), naive.dw, ref.dw, 4.0, 1e-4, "dweight", 1e-5,
                       dw_floor);
        expect_tail_intact(t.out, "out");
        expect_tail_intact(t.res_out, "residual_out");
        expect_tail_intact(t.rstd, "rstd");
        expect_tail_intact(t.dx, "dx");
        expect_tail_intact(t.dw, "dweight");
      }
}

TEST(GpuRmsnorm, BackwardIsBitwiseReproducible) {
  BEAVER_REQUIRE_CUDA();
  Context g = Context::cuda();
  for (DType d : kFloat) {
    const Dims sh{300, 1024};
    const Inputs in = make_inputs(sh, 2024);
    const auto dw0 = random_vec(size_t(sh.H), 2031);
    const GpuRun a = gpu_run(g, in, sh, d, true, true, false, dw0);
    const GpuRun b = gpu_run(g, in, sh, d, true, true, false, dw0);
    EXPECT_EQ(download_raw(g, a.dx), download_raw(g, b.dx)) << dtype_str(d);
    EXPECT_EQ(download_raw(g, a.dw), download_raw(g, b.dw)) << dtype_str(d);
    EXPECT_EQ(download_raw(g, a.out), download_raw(g, b.out)) << dtype_str(d);
  }
}

TEST(GpuRmsnorm, ResidualOutMayAliasResidual) {
  BEAVER_REQUIRE_CUDA();
  Context g = Context::cuda();
  Context c = Context::cpu(2);
  const Dims sh{9, 96};
  const Inputs in = make_inputs(sh, 3030);
  const Outputs ref = cpu_run(c, in, sh, true, false, false, std::vector<float>(96, 0.0f));
  const Shape s{sh.T, sh.H};
  const OwnedTensor x = upload(in.x, s, DType::F32);
  const SentinelTensor res = upload_sentinel(in.res, s, DType::F32);  // updated in place
  const OwnedTensor w = upload(in.w, {sh.H}, DType::F32);
  const SentinelTensor out(DType::F32, s, Device::CUDA);
  ops::cuda::rmsnorm_fwd(g, x, res, w, kEps, out, res, Tensor{});
  expect_close_f32(download(g, res), ref.res_out, 1e-6, 1e-3, "residual updated in place");
  expect_close_f32(download(g, out), ref.out, 1e-5, 1e-3, "out");
  expect_tail_intact(out, "out");
  expect_tail_intact(res, "residual (updated in place)");
}

}  // namespace
}  // namespace beaver::test
