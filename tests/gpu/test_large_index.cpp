// The 64-bit index paths of AdamW, the gradient norm and embedding backward on tensors of more
// than 2^31 elements, where the device has the memory (skipped with a message otherwise: AdamW
// needs about 35 GB, the others about 5 GB). Inputs are filled on the device with a byte
// pattern (every element the same value) and one distinct value at the very end, past 2^31, so
// that a 32-bit index that wraps, truncates or stops early changes a checked result: the last
// element's AdamW update against the CPU twin, the norm with its large last element, and the
// embedding row of the one token that sits past 2^31 / H rows.
#include <gtest/gtest.h>

#include <cuda_runtime.h>

#include <cmath>
#include <cstdint>
#include <cstring>
#include <string>
#include <vector>

#include "attn_testutil.h"
#include "csrc/context.h"
#include "csrc/device.h"
#include "csrc/dtype.h"
#include "csrc/ops/adamw.h"
#include "csrc/ops/embedding.h"
#include "csrc/ops/gradnorm.h"
#include "testutil.h"

namespace beaver {
namespace {

constexpr int64_t kBig = (int64_t(1) << 31) + 1024;  // elements: past every 32-bit index

// Skips the test unless `bytes` (plus 1 GiB of slack) are free on the device.
#define REQUIRE_DEVICE_BYTES(bytes)                                                        \
  do {                                                                                     \
    size_t free_ = 0, total_ = 0;                                                          \
    ASSERT_EQ(cudaMemGetInfo(&free_, &total_), cudaSuccess);                               \
    if (double(free_) < double(bytes) + double(1 << 30))                                   \
      GTEST_SKIP() << "needs " << double(bytes) / 1e9 << " GB of device memory, "          \
                   << double(free_) / 1e9 << " GB free of " << double(total_) / 1e9;       \
  } while (0)

// One element of a device tensor, as f32.
float element(const Tensor& t, int64_t i) {
  OwnedTensor h(t.dtype, Shape{1});
  copy_tensor(h, t.slice(i, i + 1));
  return t.dtype == DType::BF16 ? to_f32(h.ptr<bf16>()[0]) : h.ptr<float>()[0];
}

void set_element(const Tensor& t, int64_t i, float x) {
  OwnedTensor h(t.dtype, Shape{1});
  if (t.dtype == DType::BF16)
    h.ptr<bf16>()[0] = to_bf16(x);
  else
    h.ptr<float>()[0] = x;
  copy_tensor(t.slice(i, i + 1), h);
}

void fill_bytes(const Tensor& t, int value) { device_memset(t.data, value, t.nbytes()); }

float pattern_f32() {  // the f32 value of bytes 0x3f3f3f3f
  const uint32_t u = 0x3f3f3f3fu;
  float f;
  std::memcpy(&f, &u, 4);
  return f;
}
float pattern_bf16() { return to_f32(bf16{uint16_t(0x3f3f)}); }

TEST(GpuLargeIndex, AdamWPast2To31) {
  BEAVER_REQUIRE_CUDA();
  REQUIRE_DEVICE_BYTES(double(kBig) * (4 + 2 + 4 + 4 + 2));
  Context g = Context::cuda();
  const Shape s{kBig};
  OwnedTensor master(DType::F32, s, Device::CUDA), grad(DType::BF16, s, Device::CUDA),
      m(DType::F32, s, Device::CUDA), v(DType::F32, s, Device::CUDA),
      lowp(DType::BF16, s, Device::CUDA);
  fill_bytes(master, 0x3f);
  fill_bytes(grad, 0x3f);
  fill_bytes(m, 0);
  fill_bytes(v, 0);
  test::poison_device(lowp);
  set_element(grad, kBig - 1, 2.0f);  // the one distinct gradient, past 2^31
  ops::AdamWConfig cfg;
  cfg.lr = 1e-2f;
  cfg.weight_decay = 0.1f;
  cfg.step = 1;
  const std::vector<ops::ParamSegment> decay{{kBig - 2048, 1024}};  // decay only near the end
  ops::cuda::adamw_step(g, master, grad, m, v, lowp, Tensor(), decay, cfg);
  g.synchronize();

  // The CPU twin on the four distinct situations: plain, decayed, and the last element.
  Context c = Context::cpu(1);
  auto cpu_one = [&](float g0, bool decayed) {
    OwnedTensor cm(DType::F32, {1}), cg(DType::BF16, {1}), cmm(DType::F32, {1}),
        cv(DType::F32, {1}), cl(DType::BF16, {1});
    cm.ptr<float>()[0] = pattern_f32();
    cg.ptr<bf16>()[0] = to_bf16(g0);
    cmm.ptr<float>()[0] = 0.0f;
    cv.ptr<float>()[0] = 0.0f;
    std::vector<ops::ParamSegment> seg;
    if (decayed) seg.push_back({0, 1});
    ops::cpu::adamw_step(c, cm, cg, cmm, cv, cl, Tensor(), seg, cfg);
    return std::vector<float>{cm.ptr<float>()[0], cmm.ptr<float>()[0], cv.ptr<float>()[0]};
  };
  const auto plain = cpu_one(pattern_bf16(), false), decayed = cpu_one(pattern_bf16(), true),
             last = cpu_one(2.0f, false);
  auto check = [&](int64_t i, const std::vector<float>& want) {
    SCOPED_TRACE("element " + std::to_string(i));
    EXPECT_NEAR(element(master, i), want[0], 1e-6f * std::fabs(want[0]) + 1e-7f);
    EXPECT_NEAR(element(m, i), want[1], 1e-6f * std::fabs(want[1]) + 1e-7f);
    EXPECT_NEAR(element(v, i), want[2], 1e-6f * std::fabs(want[2]) + 1e-9f);
    EXPECT_EQ(element(lowp, i), to_f32(to_bf16(element(master, i)))) << "lowp is not master rounded";
  };
  check(0, plain);
  check((int64_t(1) << 31) - 1, plain);
  check(int64_t(1) << 31, plain);
  check(kBig - 2048, decayed);
  check(kBig - 1025, decayed);
  check(kBig - 1024, plain);
  check(kBig - 1, last);
}

TEST(GpuLargeIndex, GradNormPast2To31) {
  BEAVER_REQUIRE_CUDA();
  REQUIRE_DEVICE_BYTES(double(kBig) * 2);
  Context g = Context::cuda();
  OwnedTensor grad(DType::BF16, Shape{kBig}, Device::CUDA), norm(DType::F32, {1}, Device::CUDA);
  fill_bytes(grad, 0x3f);
  set_element(grad, kBig - 1, 256.0f);
  const Tensor list[] = {grad};
  ops::cuda::grad_norm(g, list, norm);
  g.synchronize();
  const double x = pattern_bf16();
  const double want = std::sqrt(double(kBig - 1) * x * x + 256.0 * 256.0);
  EXPECT_NEAR(element(norm, 0), want, 2e-6 * want)
      << "the norm of " << kBig << " elements, the last of them 256";
}

TEST(GpuLargeIndex, EmbeddingBackwardPast2To31) {
  BEAVER_REQUIRE_CUDA();
  const int64_t H = 4096, T = (int64_t(1) << 19) + 3;  // T * H > 2^31
  REQUIRE_DEVICE_BYTES(double(T) * H * 2 + double(T) * 32);
  Context g = Context::cuda();
  std::vector<int32_t> ids(size_t(T), 0);
  ids.back() = 1;  // the one token whose dout row starts past 2^31 elements
  const OwnedTensor tokens = test::to_device_int(ids, {T});
  OwnedTensor dout(DType::BF16, Shape{T, H}, Device::CUDA), dtable(DType::F32, {2, H}, Device::CUDA);
  fill_bytes(dout, 0x3f);
  {
    OwnedTensor row(DType::BF16, Shape{H});
    for (int64_t j = 0; j < H; ++j) row.ptr<bf16>()[j] = to_bf16(float(j % 7) - 3.0f);
    copy_tensor(dout.view().slice(T - 1, T), row.view().view({1, H}));
  }
  test::poison_device(dtable);
  ops::cuda::embedding_bwd(g, tokens, dout, dtable, false);
  g.synchronize();
  const auto got = to_host_f32(dtable);
  const double pad = double(T - 1) * pattern_bf16();  // the pad id's sum over T - 1 rows
  double worst_pad = 0.0, worst_last = 0.0;
  for (int64_t j = 0; j < H; ++j) {
    worst_pad = std::max(worst_pad, std::fabs(double(got[size_t(j)]) - pad) / pad);
    worst_last = std::max(worst_last, std::fabs(double(got[size_t(H + j)]) - (double(j % 7) - 3.0)));
  }
  EXPECT_LE(worst_pad, 1e-4) << "row of id 0 (" << T - 1 << " positions)";
  EXPECT_EQ(worst_last, 0.0) << "row of id 1 (the last token, past 2^31 elements)";
}

}  // namespace
}  // namespace beaver
