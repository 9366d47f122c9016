// GPU tests of the global gradient norm and clipping (kernels/gradnorm.cu) against the CPU
// twin: many tensors of mixed f32/bf16 and odd sizes (more than one launch's worth), odd
// offsets, empty lists, clip_coef on both sides of max_norm, scale_by reading coef on the
// device, and bitwise determinism of the norm. Written buffers carry sentinel tails.
#include <gtest/gtest.h>

#include <span>

#include "csrc/ops/gradnorm.h"
#include "tests/cases/gradnorm.h"
#include "gpu/gpu_testutil.h"

namespace beaver::test {
namespace {

struct Grads {
  std::vector<std::vector<float>> values;
  std::vector<DType> dtypes;
};

Grads make_grads(int count, uint64_t seed, bool mixed) {
  Grads g;
  const auto sizes = cases::gradnorm_sizes(count, seed);
  for (int i = 0; i < count; ++i) {
    const size_t n = size_t(sizes[size_t(i)]);
    const DType d = mixed && i % 2 ? DType::BF16 : DType::F32;
    auto v = random_vec(n, seed + 100 + uint64_t(i), -0.5f, 0.5f);
    if (d == DType::BF16) v = round_bf16(v);  // the CPU twin sees exactly the GPU's values
    g.values.push_back(std::move(v));
    g.dtypes.push_back(d);
  }
  return g;
}

float cpu_norm(Context& c, const Grads& g) {
  std::vector<OwnedTensor> owned;
  std::vector<Tensor> views;
  for (const auto& v : g.values) owned.push_back(host_tensor(v, {int64_t(v.size())}));
  for (const auto& o : owned) views.push_back(o.view());
  const OwnedTensor norm(DType::F32, {1});
  ops::cpu::grad_norm(c, std::span<const Tensor>(views), norm);
  return norm.ptr<float>()[0];
}

struct OnDevice {
  std::vector<SentinelTensor> owned;  // scale_by writes them in place
  std::vector<Tensor> views;
};

OnDevice upload_grads(const Grads& g) {
  OnDevice d;
  for (size_t i = 0; i < g.values.size(); ++i)
    d.owned.push_back(upload_sentinel(g.values[i], {int64_t(g.values[i].size())}, g.dtypes[i]));
  for (const auto& o : d.owned) d.views.push_back(o.view());
  return d;
}

TEST(GpuGradnorm, NormMatchesCpuAndIsReproducible) {
  BEAVER_REQUIRE_CUDA();
  Context gpu = Context::cuda();
  Context c = Context::cpu(2);
  for (int count : cases::kGradnormTensorCounts) {
    SCOPED_TRACE("tensors=" + std::to_string(count));
    const Grads g = make_grads(count, 40 + uint64_t(count), true);
    const float want = cpu_norm(c, g);
    const OnDevice d = upload_grads(g);
    const SentinelTensor norm(DType::F32, {1}, Device::CUDA);
    std::vector<uint8_t> first;
    for (int run = 0; run < 2; ++run) {
      poison_device(gpu, norm);
      ops::cuda::grad_norm(gpu, std::span<const Tensor>(d.views), norm);
      const float got = download(gpu, norm)[0];
      expect_close_f32({got}, {want}, 1e-5, 1e-6, "norm");
      const auto raw = download_raw(gpu, norm);
      if (run == 0)
        first = raw;
      else
        EXPECT_EQ(raw, first) << "two identical norms differ bitwise";
    }
    expect_tail_intact(norm, "norm");
  }
}

TEST(GpuGradnorm, OddOffsetView) {
  BEAVER_REQUIRE_CUDA();
  Context gpu = Context::cuda();
  Context c = Context::cpu(2);
  const auto v = random_vec(10001, 5);
  Grads g;
  g.values.push_back(std::vector<float>(v.begin() + 3, v.end()));
  g.dtypes.push_back(DType::F32);
  const OwnedTensor whole = upload(v, {10001}, DType::F32);
  const Tensor view = whole.view().slice(3, 10001);
  const SentinelTensor norm(DType::F32, {1}, Device::CUDA);
  ops::cuda::grad_norm(gpu, std::span<const Tensor>(&view, 1), norm);
  expect_close_f32(download(gpu, norm), {cpu_norm(c, g)}, 1e-5, 1e-6, "norm of a view");
  expect_tail_intact(norm, "norm");
}

TEST(GpuGradnorm, ClipCoefAndScaleByMatchCpu) {
  BEAVER_REQUIRE_CUDA();
  Context gpu = Context::cuda();
  Context c = Context::cpu(2);
  const Grads g = make_grads(9, 77, true);
  const float norm_value = cpu_norm(c, g);
  for (float max_norm : {norm_value * 0.25f, norm_value * 4.0f}) {  // clipping and not
    SCOPED_TRACE("max_norm=" + std::to_string(max_norm));
    const OwnedTensor hn = host_tensor({norm_value}, {1}), hc(DType::F32, {1});
    ops::cpu::clip_coef(c, hn, max_norm, hc);
    const float want_coef = hc.ptr<float>()[0];

    const OnDevice d = upload_grads(g);
    const SentinelTensor dn(DType::F32, {1}, Device::CUDA), dc(DType::F32, {1}, Device::CUDA);
    ops::cuda::grad_norm(gpu, std::span<const Tensor>(d.views), dn);
    ops::cuda::clip_coef(gpu, dn, max_norm, dc);
    const float coef = download(gpu, dc)[0];
    expect_close_f32({coef}, {want_coef}, 1e-5, 1e-6, "coef");
    ops::cuda::scale_by(gpu, std::span<const Tensor>(d.views), dc);
    for (size_t i = 0; i < g.values.size(); ++i) {
      // CPU twin of scale_by on the f32 values with the same coefficient.
      const OwnedTensor hv = host_tensor(g.values[i], {int64_t(g.values[i].size())});
      const OwnedTensor hcoef = host_tensor({coef}, {1});
      const Tensor hview = hv.view();
      ops::cpu::scale_by(c, std::span<const Tensor>(&hview, 1), hcoef);
      auto want = to_host_f32(hv);
      if (g.dtypes[i] == DType::BF16) want = round_bf16(want);  // one rounding on store
      expect_close_f32(download(gpu, d.views[i]), want, 1e-6, 1e-6,
                       "scaled tensor " + std::to_string(i) + " " + dtype_str(g.dtypes[i]));
      expect_tail_intact(d.owned[i], "scaled tensor " + std::to_string(i));
    }
    expect_tail_intact(dn, "norm");
    expect_tail_intact(dc, "coef");
  }
}

}  // namespace
}  // namespace beaver::test
