// Helpers for the attention and sampling GPU tests: bf16 rounding on the host (so the CPU
// reference sees exactly the values the GPU sees), uploads to the device in a chosen dtype,
// NaN poisoning of device outputs, and error measures.
#pragma once

#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <vector>

#include "csrc/device.h"
#include "csrc/dtype.h"
#include "csrc/tensor.h"

namespace beaver::test {

inline float round_bf16(float x) { return to_f32(to_bf16(x)); }

inline std::vector<float> round_bf16(std::vector<float> v) {
  for (auto& x : v) x = round_bf16(x);
  return v;
}

// Host f32 values → a device tensor of dtype dt (F32 or BF16).
inline OwnedTensor to_device(const std::vector<float>& v, Shape s, DType dt = DType::BF16) {
  EXPECT_EQ(int64_t(v.size()), s.numel());
  OwnedTensor host(dt, s);
  if (dt == DType::BF16) {
    for (size_t i = 0; i < v.size(); ++i) host.ptr<bf16>()[i] = to_bf16(v[i]);
  } else {
    std::copy(v.begin(), v.end(), host.ptr<float>());
  }
  OwnedTensor dev(dt, s, Device::CUDA);
  copy_tensor(dev, host);
  return dev;
}

template <typename T>
OwnedTensor to_device_int(const std::vector<T>& v, Shape s) {
  OwnedTensor host(dtype_of<T>::value, s);
  std::copy(v.begin(), v.end(), host.ptr<T>());
  OwnedTensor dev(dtype_of<T>::value, s, Device::CUDA);
  copy_tensor(dev, host);
  return dev;
}

template <typename T>
std::vector<T> to_host_int(const Tensor& t) {
  OwnedTensor host(t.dtype, t.shape);
  copy_tensor(host, t);
  return std::vector<T>(host.ptr<T>(), host.ptr<T>() + t.numel());
}

// All-ones bytes: NaN for f32 and bf16, -1 for integers.
inline void poison_device(const Tensor& t) { device_memset(t.data, 0xff, t.nbytes()); }

// The raw bytes of a device tensor (for bitwise run-to-run comparisons).
inline std::vector<uint8_t> device_bytes(const Tensor& t) {
  std::vector<uint8_t> b(t.nbytes());
  device_memcpy(b.data(), Device::CPU, t.data, Device::CUDA, b.size());
  return b;
}

// Largest |a - b|; NaN or a size mismatch counts as infinite.
inline double max_abs_err(const std::vector<float>& a, const std::vector<float>& b) {
  if (a.size() != b.size()) return INFINITY;
  double m = 0.0;
  for (size_t i = 0; i < a.size(); ++i) {
    const double d = std::fabs(double(a[i]) - double(b[i]));
    if (!(d <= m)) m = std::isnan(d) ? INFINITY : d;
  }
  return m;
}

}  // namespace beaver::test
