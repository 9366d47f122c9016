// A branch-free fp32 exp for the CPU twins' inner loops (softmax-like sums and gradients over
// large vocabularies). std::exp is a library call the compiler cannot vectorise without
// -ffast-math; this one is plain arithmetic, so loops over it vectorise at -O3 with the
// baseline instruction set, and it gives the same bits whatever the thread count.
// Accuracy: within ~2 ulp of exp for x in [-86, 88.7]; below -86 (exp < 5e-38, negligible
// beside any softmax sum, which is >= 1) it returns 0, so -inf gives 0; above 88.72 it returns
// +inf; NaN propagates.
#pragma once

#include <cmath>
#include <cstdint>
#include <cstring>

namespace beaver::ops::cpu {

inline uint32_t exp_bits(float x) {
  uint32_t u;
  std::memcpy(&u, &x, 4);
  return u;
}
inline float exp_from_bits(uint32_t u) {
  float x;
  std::memcpy(&x, &u, 4);
  return x;
}

inline float exp_f32(float x) {
  // x = n ln2 + r with |r| <= ln2 / 2; exp(x) = 2^n * exp(r). n comes from rounding x log2(e)
  // with the 1.5 * 2^23 shifter: the low mantissa bits of t then hold n as an integer, which
  // avoids a float-to-int conversion (undefined out of range, and a vectoriser blocker).
  const float shifter = 12582912.0f;
  const float t = x * 1.44269504088896341f + shifter;
  const float nf = t - shifter;
  // ln2 split in two so that nf * ln2_hi is exact.
  const float r = (x - nf * 0.693359375f) - nf * -2.12194440e-4f;
  // Taylor series to degree 7 on |r| <= 0.35: truncation error < 1e-8 relative.
  float p = 1.0f / 5040.0f;
  p = p * r + 1.0f / 720.0f;
  p = p * r + 1.0f / 120.0f;
  p = p * r + 1.0f / 24.0f;
  p = p * r + 1.0f / 6.0f;
  p = p * r + 0.5f;
  p = p * r + 1.0f;
  p = p * r + 1.0f;
  // 2^n for n in [-124, 128], built as 2^(n-1) * 2 so that the exponent field stays valid.
  const uint32_t n = exp_bits(t) - exp_bits(shifter);
  const float y = p * exp_from_bits((n + 126u) << 23) * 2.0f;
  // Out-of-range inputs are fixed up with bit masks rather than branches or selects on float
  // compares: the compiler keeps the arithmetic unconditional, so the loop vectorises.
  // isless/isgreater are the quiet compares (no FP exception on NaN).
  const uint32_t under = 0u - uint32_t(std::isless(x, -86.0f));
  const uint32_t over = 0u - uint32_t(std::isgreater(x, 88.72f));
  const uint32_t nan = 0u - uint32_t(x != x);
  uint32_t out = exp_bits(y) & ~(under | over | nan);
  out |= over & 0x7f800000u;  // +inf
  out |= nan & exp_bits(x);   // the NaN itself
  return exp_from_bits(out);
}

}  // namespace beaver::ops::cpu
