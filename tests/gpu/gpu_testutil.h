// Helpers for the GPU tests (tests/gpu/test_<family>.cpp): moving fp32 host data to the device
// in any float dtype and back, NaN-poisoning device outputs, raw bytes for bitwise
// determinism checks, and the bf16 acceptance rule. Outputs are allocated as SentinelTensor
// (tests/testutil.h, either device) so that a write past their end fails the test.
//
// The bf16 rule: a bf16 kernel is judged against the fp32 CPU reference by comparing its error
// with the error of a naive bf16 implementation (the CPU reference run on bf16-rounded inputs,
// its output rounded to bf16). Ours may be at most `factor` times worse, plus a small absolute
// floor (so exact-zero naive errors do not demand exactness).
#pragma once

#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <string>
#include <vector>

#include "csrc/context.h"
#include "csrc/device.h"
#include "csrc/dtype.h"
#include "csrc/tensor.h"
#include "testutil.h"

namespace beaver::test {

// The float dtypes the CUDA ops take (f32 and bf16): the GPU tests run their cases in each.
inline constexpr DType kFloat[] = {DType::F32, DType::BF16};

// Host fp32 values as the bytes of dtype d (rounded to nearest-even).
inline std::vector<uint8_t> pack_as(const std::vector<float>& v, DType d) {
  std::vector<uint8_t> raw(v.size() * dtype_size(d));
  for (size_t i = 0; i < v.size(); ++i) {
    if (d == DType::F32) {
      std::memcpy(raw.data() + 4 * i, &v[i], 4);
    } else if (d == DType::BF16) {
      const bf16 h = to_bf16(v[i]);
      std::memcpy(raw.data() + 2 * i, &h.bits, 2);
    } else if (d == DType::F16) {
      const f16 h = to_f16(v[i]);
      std::memcpy(raw.data() + 2 * i, &h.bits, 2);
    } else {
      BEAVER_FAIL("upload: dtype ", dtype_name(d), " is not a float dtype");
    }
  }
  return raw;
}

// Host fp32 values → a new tensor of dtype d on the device (rounded to nearest-even).
inline OwnedTensor upload(const std::vector<float>& v, Shape s, DType d) {
  BEAVER_CHECK(int64_t(v.size()) == s.numel(), "upload: ", v.size(), " values for ", s.str());
  OwnedTensor t(d, s, Device::CUDA);
  const auto raw = pack_as(v, d);
  if (!raw.empty()) device_memcpy(t.view().data, Device::CUDA, raw.data(), Device::CPU, raw.size());
  return t;
}

// The same, as a SentinelTensor: for device buffers an op reads and then updates in place.
inline SentinelTensor upload_sentinel(const std::vector<float>& v, Shape s, DType d) {
  BEAVER_CHECK(int64_t(v.size()) == s.numel(), "upload_sentinel: ", v.size(), " values for ",
               s.str());
  SentinelTensor t(d, s, Device::CUDA);
  const auto raw = pack_as(v, d);
  if (!raw.empty()) device_memcpy(t.view().data, Device::CUDA, raw.data(), Device::CPU, raw.size());
  return t;
}

inline OwnedTensor upload_i32(const std::vector<int32_t>& v, Shape s) {
  BEAVER_CHECK(int64_t(v.size()) == s.numel(), "upload_i32: ", v.size(), " values for ", s.str());
  OwnedTensor t(DType::I32, s, Device::CUDA);
  if (!v.empty()) device_memcpy(t.view().data, Device::CUDA, v.data(), Device::CPU, v.size() * 4);
  return t;
}

// Host fp32 values → a new CPU tensor of float dtype d (for the CPU twins' non-f32 paths).
inline OwnedTensor host_typed(const std::vector<float>& v, Shape s, DType d) {
  BEAVER_CHECK(int64_t(v.size()) == s.numel(), "host_typed: ", v.size(), " values for ", s.str());
  OwnedTensor t(d, s);
  for (size_t i = 0; i < v.size(); ++i) {
    if (d == DType::F32)
      t.ptr<float>()[i] = v[i];
    else if (d == DType::BF16)
      t.ptr<bf16>()[i] = to_bf16(v[i]);
    else if (d == DType::F16)
      t.ptr<f16>()[i] = to_f16(v[i]);
    else
      BEAVER_FAIL("host_typed: dtype ", dtype_name(d), " is not a float dtype");
  }
  return t;
}

// Waits for the context's stream, then copies the tensor back as fp32.
inline std::vector<float> download(const Context& ctx, const Tensor& t) {
  ctx.synchronize();
  return to_host_f32(t);
}

// Raw bytes of a device tensor (after the stream finishes), for bitwise comparisons.
inline std::vector<uint8_t> download_raw(const Context& ctx, const Tensor& t) {
  ctx.synchronize();
  std::vector<uint8_t> raw(t.nbytes());
  if (!raw.empty()) device_memcpy(raw.data(), Device::CPU, t.data, Device::CUDA, raw.size());
  return raw;
}

// Fills a device float tensor with all-ones bytes: NaN in f32, bf16 and f16 alike.
inline void poison_device(const Context& ctx, const Tensor& t) {
  ctx.synchronize();
  if (t.nbytes()) device_memset(t.data, 0xff, t.nbytes());
}

inline std::vector<float> round_bf16(std::vector<float> v) {
  for (float& x : v) x = to_f32(to_bf16(x));
  return v;
}

inline std::vector<float> round_to(std::vector<float> v, DType d) {
  if (d == DType::BF16) return round_bf16(std::move(v));
  if (d == DType::F16)
    for (float& x : v) x = to_f32(to_f16(x));
  return v;
}

inline std::vector<double> to_dvec(const std::vector<float>& v) { return {v.begin(), v.end()}; }

inline double max_abs_err(const std::vector<float>& got, const std::vector<float>& want) {
  double e = 0.0;
  for (size_t i = 0; i < std::min(got.size(), want.size()); ++i) {
    const double d = std::fabs(double(got[i]) - double(want[i]));
    if (!(d <= e)) e = std::isfinite(d) ? d : 1e300;  // NaN counts as the worst
  }
  return e;
}

inline size_t count_nonfinite(const std::vector<float>& v) {
  return size_t(std::count_if(v.begin(), v.end(), [](float x) { return !std::isfinite(x); }));
}

// fp32 paths: relative error within tol, with an absolute floor on the denominator.
inline void expect_close_f32(const std::vector<float>& got, const std::vector<float>& want,
                             double tol, double floor, const std::string& what) {
  SCOPED_TRACE(what);
  ASSERT_EQ(got.size(), want.size());
  BEAVER_EXPECT_CLOSE(to_dvec(got), to_dvec(want), tol, floor);
}

// The bf16 rule (see the header comment): max |ours - ref| <= factor * max |naive - ref| + floor.
inline void expect_bf16_rule(const std::vector<float>& ours, const std::vector<float>& naive,
                             const std::vector<float>& ref, double factor, double abs_floor,
                             const std::string& what) {
  SCOPED_TRACE(what);
  ASSERT_EQ(ours.size(), ref.size());
  ASSERT_EQ(naive.size(), ref.size());
  EXPECT_EQ(count_nonfinite(ours), 0u) << "non-finite values in the GPU output";
  const double e_ours = max_abs_err(ours, ref), e_naive = max_abs_err(naive, ref);
  EXPECT_LE(e_ours, factor * e_naive + abs_floor)
      << "GPU error " << e_ours << " vs naive bf16 error " << e_naive;
}

// Both checks in one: fp32 dtype → relative tolerance; bf16 → the bf16 rule.
inline void expect_matches(DType d, const std::vector<float>& ours,
                           const std::vector<float>& naive, const std::vector<float>& ref,
                           double factor, double abs_floor, const std::string& what,
                           double f32_tol = 1e-5, double f32_floor = 1e-3) {
  if (d == DType::F32)
    expect_close_f32(ours, ref, f32_tol, f32_floor, what);
  else
    expect_bf16_rule(ours, naive, ref, factor, abs_floor, what);
}

inline std::string dtype_str(DType d) { return std::string(dtype_name(d)); }

}  // namespace beaver::test
