// Shared test helpers: seeded random tensors (never zeros), comparisons with readable
// failure messages, finite differences in double, output poisoning, sentinel-tailed outputs,
// and the GPU skip.
#pragma once

#include <gtest/gtest.h>

#include <cmath>
#include <cstdint>
#include <cstring>
#include <functional>
#include <limits>
#include <string>
#include <string_view>
#include <vector>

#include "csrc/context.h"
#include "csrc/device.h"
#include "csrc/philox.h"
#include "csrc/tensor.h"

namespace beaver::test {

// Uniform values in [lo, hi) from a Philox stream (seeded, reproducible).
inline std::vector<float> random_vec(size_t n, uint64_t seed, float lo = -1.0f, float hi = 1.0f) {
  PhiloxStream rng(seed, 0x7e57);
  std::vector<float> v(n);
  for (auto& x : v) x = lo + (hi - lo) * rng.uniform();
  return v;
}

inline OwnedTensor host_tensor(const std::vector<float>& v, Shape s) {
  BEAVER_CHECK(int64_t(v.size()) == s.numel(), "host_tensor: ", v.size(), " values for ",
               s.str());
  OwnedTensor t(DType::F32, s);
  std::copy(v.begin(), v.end(), t.ptr<float>());
  return t;
}

inline OwnedTensor random_tensor(Shape s, uint64_t seed, float lo = -1.0f, float hi = 1.0f) {
  return host_tensor(random_vec(size_t(s.numel()), seed, lo, hi), s);
}

inline OwnedTensor int_tensor(const std::vector<int32_t>& v, Shape s) {
  OwnedTensor t(DType::I32, s);
  std::copy(v.begin(), v.end(), t.ptr<int32_t>());
  return t;
}

// Fills a float tensor with NaN so that unwritten outputs show up.
inline void poison(const Tensor& t) {
  float* p = t.ptr<float>();
  for (int64_t i = 0; i < t.numel(); ++i) p[i] = std::numeric_limits<float>::quiet_NaN();
}

// An output tensor followed by a tail of sentinel bytes, on either device: an op that writes
// past the end of its output (a wrong stride, an off-by-one bound) changes the tail, which
// expect_tail_intact reports. The tensor itself starts poisoned (all-ones bytes: NaN in every
// float dtype), so unwritten elements show up too.
inline constexpr size_t kSentinelBytes = 256;
inline uint8_t sentinel_byte(size_t i) { return uint8_t(0xA5 ^ (i * 0x3B)); }

class SentinelTensor {
 public:
  SentinelTensor(DType dtype, Shape shape, Device device = Device::CPU)
      : bytes_(size_t(shape.numel()) * dtype_size(dtype)),
        buf_(bytes_ + kSentinelBytes, device),
        view_(buf_.data(), dtype, shape, device) {
    std::vector<uint8_t> host(bytes_ + kSentinelBytes, 0xff);
    for (size_t i = 0; i < kSentinelBytes; ++i) host[bytes_ + i] = sentinel_byte(i);
    if (device == Device::CPU)
      std::memcpy(buf_.data(), host.data(), host.size());
    else
      device_memcpy(buf_.data(), device, host.data(), Device::CPU, host.size());
  }
  const Tensor& view() const { return view_; }
  operator const Tensor&() const { return view_; }  // NOLINT: ops take views
  template <typename T>
  T* ptr() const { return view_.ptr<T>(); }
  int64_t numel() const { return view_.numel(); }

  // "" when the tail is as written at construction; otherwise where the first change is.
  // Waits for all device work first.
  std::string tail_damage() const {
    std::vector<uint8_t> tail(kSentinelBytes);
    const uint8_t* end = static_cast<const uint8_t*>(buf_.data()) + bytes_;
    if (view_.device == Device::CPU)
      std::memcpy(tail.data(), end, kSentinelBytes);
    else
      device_memcpy(tail.data(), Device::CPU, end, view_.device, kSentinelBytes);  // syncs
    for (size_t i = 0; i < kSentinelBytes; ++i)
      if (tail[i] != sentinel_byte(i))
        return "byte " + std::to_string(i) + " past the end of " + view_.str() +
               " was overwritten";
    return "";
  }

 private:
  size_t bytes_;
  Buffer buf_;
  Tensor view_;
};

inline void expect_tail_intact(const SentinelTensor& t, std::string_view name) {
  EXPECT_EQ(t.tail_damage(), "") << "output " << name;
}

// A CPU f32 SentinelTensor holding `v` (for buffers an op reads and then updates in place).
inline SentinelTensor host_sentinel(const std::vector<float>& v, Shape s) {
  BEAVER_CHECK(int64_t(v.size()) == s.numel(), "host_sentinel: ", v.size(), " values for ",
               s.str());
  SentinelTensor t(DType::F32, s);
  std::copy(v.begin(), v.end(), t.ptr<float>());
  return t;
}
inline SentinelTensor host_sentinel(const Tensor& like) {
  return host_sentinel(to_host_f32(like), like.shape);
}

inline std::vector<double> to_double(const Tensor& t) {
  auto f = to_host_f32(t);
  return {f.begin(), f.end()};
}

// Largest |a - b| / max(|b|, floor) over all elements, and where it happened.
struct ErrorReport {
  double max_rel = 0.0;
  double max_abs = 0.0;
  size_t worst = 0;
  size_t bad_nonfinite = 0;
};

inline ErrorReport compare(const std::vector<double>& got, const std::vector<double>& want,
                           double floor = 1e-6) {
  ErrorReport r;
  EXPECT_EQ(got.size(), want.size());
  for (size_t i = 0; i < std::min(got.size(), want.size()); ++i) {
    if (!std::isfinite(got[i]) && std::isfinite(want[i])) ++r.bad_nonfinite;
    const double abs = std::fabs(got[i] - want[i]);
    const double rel = abs / std::max(std::fabs(want[i]), floor);
    if (!(rel <= r.max_rel)) {  // NaN-safe: NaN becomes the worst
      r.max_rel = std::isfinite(rel) ? rel : std::numeric_limits<double>::infinity();
      r.worst = i;
    }
    r.max_abs = std::max(r.max_abs, std::isfinite(abs) ? abs : 1e300);
  }
  return r;
}

// Asserts max relative error (with an absolute floor on the denominator) is within tol.
#define BEAVER_EXPECT_CLOSE(got, want, tol, floor)                                          \
  do {                                                                                      \
    const auto beaver_r_ = ::beaver::test::compare((got), (want), (floor));                 \
    EXPECT_EQ(beaver_r_.bad_nonfinite, 0u) << "non-finite values where finite expected";    \
    EXPECT_LE(beaver_r_.max_rel, (tol))                                                     \
        << "worst element " << beaver_r_.worst << ": got " << (got)[beaver_r_.worst]        \
        << " want " << (want)[beaver_r_.worst] << " (max abs err " << beaver_r_.max_abs    \
        << ")";                                                                             \
  } while (0)

// Central finite difference of a scalar function of a parameter vector, in double.
inline std::vector<double> finite_diff(const std::function<double(const std::vector<double>&)>& f,
                                       std::vector<double> x, double h = 1e-5) {
  std::vector<double> g(x.size());
  for (size_t i = 0; i < x.size(); ++i) {
    const double x0 = x[i];
    x[i] = x0 + h;
    const double fp = f(x);
    x[i] = x0 - h;
    const double fm = f(x);
    x[i] = x0;
    g[i] = (fp - fm) / (2 * h);
  }
  return g;
}

// Runs f and expects a beaver::Error whose message contains every one of `parts` (the op, the
// argument, the problem). `parts` is a braced list or any range of strings.
template <typename F, typename Parts = std::initializer_list<std::string_view>>
void expect_error(F&& f, const Parts& parts) {
  try {
    f();
    ADD_FAILURE() << "expected a beaver::Error";
  } catch (const Error& e) {
    const std::string m = e.what();
    for (const auto& p : parts)
      EXPECT_NE(m.find(std::string_view(p)), std::string::npos) << "'" << p << "' not in: " << m;
  }
}

// Skips the current test, with the reason, when no CUDA device is usable.
#define BEAVER_REQUIRE_CUDA()                                               \
  do {                                                                      \
    std::string beaver_why_;                                                \
    if (!::beaver::cuda_available(&beaver_why_)) GTEST_SKIP() << beaver_why_; \
  } while (0)

}  // namespace beaver::test
