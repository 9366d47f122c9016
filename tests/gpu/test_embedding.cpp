// GPU tests of the embedding lookup and its deterministic backward (kernels/embedding.cu)
// against the CPU twin: f32 and bf16 tables, hidden sizes that do and do not allow 16-byte
// packs, heavily repeated ids, accumulate on and off, f32 and bf16 dout/dtable, out-of-range
// ids (zero rows forward, ignored backward), and run-to-run bitwise determinism. Outputs carry
// sentinel tails.
#include <gtest/gtest.h>

#include "csrc/ops/embedding.h"
#include "tests/cases/embedding.h"
#include "gpu/gpu_testutil.h"

namespace beaver::test {
namespace {

using Dims = cases::EmbeddingShape;

// Ids drawn from a small range so that many repeat (the backward must sum them in order).
std::vector<int32_t> tokens_of(const Dims& sh, uint64_t seed) {
  PhiloxStream rng(seed, 5);
  const uint32_t range = uint32_t(std::min<int64_t>(sh.V, 1 + sh.T / 4));
  std::vector<int32_t> t(size_t(sh.T));
  for (auto& x : t) x = int32_t((rng.next_u32() % range) * uint32_t(sh.V / range));
  return t;
}

std::vector<float> cpu_bwd(Context& c, const std::vector<int32_t>& tok,
                           const std::vector<float>& dout, const std::vector<float>& dtable0,
                           const Dims& sh, bool accumulate) {
  const OwnedTensor ht = int_tensor(tok, {sh.T}), hd = host_tensor(dout, {sh.T, sh.H});
  const OwnedTensor hdt = host_tensor(dtable0, {sh.V, sh.H});
  ops::cpu::embedding_bwd(c, ht, hd, hdt, accumulate);
  return to_host_f32(hdt);
}

TEST(GpuEmbedding, ForwardCopiesRows) {
  BEAVER_REQUIRE_CUDA();
  Context g = Context::cuda();
  Context c = Context::cpu(2);
  uint64_t seed = 60;
  for (DType d : kFloat)
    for (const Dims& sh : cases::kEmbedding) {
      SCOPED_TRACE(dtype_str(d) + " T=" + std::to_string(sh.T) + " V=" + std::to_string(sh.V) +
                   " H=" + std::to_string(sh.H));
      const auto table = random_vec(size_t(sh.V * sh.H), ++seed);
      const auto tok = tokens_of(sh, ++seed);
      const OwnedTensor ht = int_tensor(tok, {sh.T}), htab = host_tensor(table, {sh.V, sh.H});
      const OwnedTensor hout(DType::F32, {sh.T, sh.H});
      ops::cpu::embedding_fwd(c, ht, htab, hout);
      const OwnedTensor dt = upload_i32(tok, {sh.T}), dtab = upload(table, {sh.V, sh.H}, d);
      const SentinelTensor out(d, {sh.T, sh.H}, Device::CUDA);  // poisoned
      ops::cuda::embedding_fwd(g, dt, dtab, out);
      // A copy: exact, up to the table's own rounding to bf16.
      EXPECT_EQ(max_abs_err(download(g, out), round_to(to_host_f32(hout), d)), 0.0);
      expect_tail_intact(out, "out");
    }
}

TEST(GpuEmbedding, ForwardOutOfRangeIdGivesZeroRow) {
  BEAVER_REQUIRE_CUDA();
  Context g = Context::cuda();
  const int64_t V = 10, H = 16;
  const auto table = random_vec(size_t(V * H), 3);
  const std::vector<int32_t> tok = {2, -1, 10, 9};
  const OwnedTensor dt = upload_i32(tok, {4}), dtab = upload(table, {V, H}, DType::F32);
  const SentinelTensor out(DType::F32, {4, H}, Device::CUDA);  // poisoned
  ops::cuda::embedding_fwd(g, dt, dtab, out);
  const auto o = download(g, out);
  expect_tail_intact(out, "out");
  for (int64_t j = 0; j < H; ++j) {
    EXPECT_EQ(o[size_t(j)], table[size_t(2 * H + j)]);
    EXPECT_EQ(o[size_t(H + j)], 0.0f);
    EXPECT_EQ(o[size_t(2 * H + j)], 0.0f);
    EXPECT_EQ(o[size_t(3 * H + j)], table[size_t(9 * H + j)]);
  }
}

TEST(GpuEmbedding, BackwardMatchesCpuAndIsReproducible) {
  BEAVER_REQUIRE_CUDA();
  Context g = Context::cuda();
  Context c = Context::cpu(2);
  uint64_t seed = 80;
  for (DType dd : kFloat)      // dout dtype
    for (DType td : kFloat)    // dtable dtype
      for (const Dims& sh : cases::kEmbedding)
        for (bool accumulate : {false, true}) {
          SCOPED_TRACE("dout " + dtype_str(dd) + " dtable " + dtype_str(td) + " T=" +
                       std::to_string(sh.T) + " V=" + std::to_string(sh.V) + " H=" +
                       std::to_string(sh.H) + (accumulate ? " accumulate" : ""));
          const auto tok = tokens_of(sh, ++seed);
          auto dout = random_vec(size_t(sh.T * sh.H), ++seed);
          auto dtable0 = random_vec(size_t(sh.V * sh.H), ++seed);
          if (dd == DType::BF16) dout = round_bf16(dout);
          if (td == DType::BF16) dtable0 = round_bf16(dtable0);
          const auto ref = cpu_bwd(c, tok, dout, dtable0, sh, accumulate);
          const OwnedTensor dt = upload_i32(tok, {sh.T}), ddo = upload(dout, {sh.T, sh.H}, dd);
          std::vector<uint8_t> first;
          for (int run = 0; run < 2; ++run) {
            const SentinelTensor dtab = upload_sentinel(dtable0, {sh.V, sh.H}, td);
            if (!accumulate) poison_device(g, dtab);
            ops::cuda::embedding_bwd(g, dt, ddo, dtab, accumulate);
            const auto got = download(g, dtab);
            expect_tail_intact(dtab, "dtable");
            if (td == DType::F32)
              expect_close_f32(got, ref, 1e-5, 10.0, "dtable");
            else  // rounded once at the end: the naive result is the rounded reference
              expect_bf16_rule(got, round_bf16(ref), ref, 2.0, 1e-6, "dtable");
            const auto raw = download_raw(g, dtab);
            if (run == 0)
              first = raw;
            else
              EXPECT_EQ(raw, first) << "two identical backward passes differ bitwise";
          }
        }
}

TEST(GpuEmbedding, BackwardIgnoresOutOfRangeIds) {
  BEAVER_REQUIRE_CUDA();
  Context g = Context::cuda();
  Context c = Context::cpu(2);
  const Dims sh{6, 5, 8};
  const std::vector<int32_t> tok = {1, 7, 1, -3, 4, 1};
  const std::vector<int32_t> valid = {1, 1, 4, 1};
  const auto dout = random_vec(size_t(sh.T * sh.H), 11);
  std::vector<float> dvalid;
  for (int64_t t : {0, 2, 4, 5})
    dvalid.insert(dvalid.end(), dout.begin() + t * sh.H, dout.begin() + (t + 1) * sh.H);
  const auto ref = cpu_bwd(c, valid, dvalid, std::vector<float>(size_t(sh.V * sh.H), 0.0f),
                           {4, sh.V, sh.H}, false);
  const OwnedTensor dt = upload_i32(tok, {sh.T}), ddo = upload(dout, {sh.T, sh.H}, DType::F32);
  const SentinelTensor dtab(DType::F32, {sh.V, sh.H}, Device::CUDA);  // poisoned
  ops::cuda::embedding_bwd(g, dt, ddo, dtab, false);
  expect_close_f32(download(g, dtab), ref, 1e-6, 1.0, "dtable without the bad ids");
  expect_tail_intact(dtab, "dtable");
}

}  // namespace
}  // namespace beaver::test
