// GPU tests of SwiGLU (kernels/swiglu.cu) against the CPU twin: forward and backward in f32
// (1e-5 relative) and bf16 (the bf16 rule), odd shapes, the in-place backward, and a check that
// the device sentinel tail catches an overlong write.
#include <gtest/gtest.h>

#include "csrc/ops/swiglu.h"
#include "tests/cases/swiglu.h"
#include "gpu/gpu_testutil.h"

namespace beaver::test {
namespace {


struct Ref {
  std::vector<float> out, dgate, dup;
};

Ref cpu_ref(Context& c, const std::vector<float>& gate, const std::vector<float>& up,
            const std::vector<float>& dout, Shape s) {
  const OwnedTensor hg = host_tensor(gate, s), hu = host_tensor(up, s), hd = host_tensor(dout, s);
  const OwnedTensor ho(DType::F32, s), hdg(DType::F32, s), hdu(DType::F32, s);
  ops::cpu::swiglu_fwd(c, hg, hu, ho);
  ops::cpu::swiglu_bwd(c, hg, hu, hd, hdg, hdu);
  return {to_host_f32(ho), to_host_f32(hdg), to_host_f32(hdu)};
}

TEST(GpuSwiglu, ForwardBackwardMatchCpu) {
  BEAVER_REQUIRE_CUDA();
  Context g = Context::cuda();
  Context c = Context::cpu(2);
  uint64_t seed = 10;
  for (DType d : kFloat)
    for (const auto& sh : cases::kSwiglu) {
      const Shape s{sh.T, sh.I};
      SCOPED_TRACE(dtype_str(d) + " " + s.str());
      const size_t n = size_t(s.numel());
      const auto gate = random_vec(n, ++seed, -6.0f, 6.0f);
      const auto up = random_vec(n, ++seed, -2.0f, 2.0f);
      const auto dout = random_vec(n, ++seed, -1.0f, 1.0f);
      const Ref ref = cpu_ref(c, gate, up, dout, s);
      const Ref naive = cpu_ref(c, round_bf16(gate), round_bf16(up), round_bf16(dout), s);

      const OwnedTensor dg = upload(gate, s, d), du = upload(up, s, d), dd = upload(dout, s, d);
      const SentinelTensor out(d, s, Device::CUDA), dgate(d, s, Device::CUDA),
          dup(d, s, Device::CUDA);  // poisoned, with sentinel tails
      ops::cuda::swiglu_fwd(g, dg, du, out);
      ops::cuda::swiglu_bwd(g, dg, du, dd, dgate, dup);
      expect_matches(d, download(g, out), round_bf16(naive.out), ref.out, 2.0, 1e-5, "out");
      expect_matches(d, download(g, dgate), round_bf16(naive.dgate), ref.dgate, 2.0, 1e-5,
                     "dgate", 1e-5, 1e-2);
      expect_matches(d, download(g, dup), round_bf16(naive.dup), ref.dup, 2.0, 1e-5, "dup");
      expect_tail_intact(out, "out");
      expect_tail_intact(dgate, "dgate");
      expect_tail_intact(dup, "dup");
    }
}

// The device sentinel tail catches a kernel that writes past its output: the same launch,
// handed a view one row longer than the allocation, overwrites the first sentinel bytes.
TEST(GpuSwiglu, SentinelCatchesAnOverlongWrite) {
  BEAVER_REQUIRE_CUDA();
  Context g = Context::cuda();
  const Shape s{3, 7}, longer{4, 7};
  const OwnedTensor gate = upload(random_vec(28, 1), longer, DType::F32);
  const OwnedTensor up = upload(random_vec(28, 2), longer, DType::F32);
  const SentinelTensor out(DType::F32, s, Device::CUDA);
  ops::cuda::swiglu_fwd(g, gate.view().slice(0, 3), up.view().slice(0, 3), out);
  EXPECT_EQ(out.tail_damage(), "");
  ops::cuda::swiglu_fwd(g, gate, up, Tensor(out.view().data, DType::F32, longer, Device::CUDA));
  EXPECT_NE(out.tail_damage().find("byte 0 past the end of f32[3, 7]"), std::string::npos)
      << out.tail_damage();
}

TEST(GpuSwiglu, BackwardInPlace) {
  BEAVER_REQUIRE_CUDA();
  Context g = Context::cuda();
  Context c = Context::cpu(2);
  const Shape s{7, 129};
  const size_t n = size_t(s.numel());
  const auto gate = random_vec(n, 41, -4.0f, 4.0f), up = random_vec(n, 42), dout = random_vec(n, 43);
  const Ref ref = cpu_ref(c, gate, up, dout, s);
  const SentinelTensor dg = upload_sentinel(gate, s, DType::F32), du = upload_sentinel(up, s, DType::F32);
  const OwnedTensor dd = upload(dout, s, DType::F32);
  ops::cuda::swiglu_bwd(g, dg, du, dd, dg, du);  // gradients overwrite their inputs
  expect_close_f32(download(g, dg), ref.dgate, 1e-5, 1e-2, "dgate in place");
  expect_close_f32(download(g, du), ref.dup, 1e-5, 1e-3, "dup in place");
  expect_tail_intact(dg, "dgate in place");
  expect_tail_intact(du, "dup in place");
}

}  // namespace
}  // namespace beaver::test
