// Counter-based random numbers (Philox4x32-10, Salmon et al. 2011). The same function runs on
// the host and in CUDA kernels, so a (seed, stream, index) triple gives the same number on
// both backends: that is what makes CPU and GPU sampling comparable and runs reproducible.
//
// Layout of one draw: key = seed (64 bits); counter = (block index (64 bits), stream (64
// bits)). Each block yields four 32-bit words; element i of a stream is word i % 4 of block
// i / 4. "stream" separates independent uses (a sequence id, a parameter tensor, a step).
#pragma once

#include <cstdint>

#if defined(__CUDACC__)
#define BEAVER_HD __host__ __device__ __forceinline__
#else
#define BEAVER_HD inline
#endif

namespace beaver {

struct PhiloxOut {
  uint32_t w[4];
};

BEAVER_HD void philox_mulhilo(uint32_t a, uint32_t b, uint32_t& hi, uint32_t& lo) {
  const uint64_t p = uint64_t(a) * uint64_t(b);
  hi = uint32_t(p >> 32);
  lo = uint32_t(p);
}

BEAVER_HD PhiloxOut philox4x32_10(uint64_t seed, uint64_t block, uint64_t stream) {
  uint32_t c0 = uint32_t(block), c1 = uint32_t(block >> 32);
  uint32_t c2 = uint32_t(stream), c3 = uint32_t(stream >> 32);
  uint32_t k0 = uint32_t(seed), k1 = uint32_t(seed >> 32);
  for (int round = 0; round < 10; ++round) {
    uint32_t hi0, lo0, hi1, lo1;
    philox_mulhilo(0xD2511F53u, c0, hi0, lo0);
    philox_mulhilo(0xCD9E8D57u, c2, hi1, lo1);
    const uint32_t n0 = hi1 ^ c1 ^ k0, n1 = lo1, n2 = hi0 ^ c3 ^ k1, n3 = lo0;
    c0 = n0;
    c1 = n1;
    c2 = n2;
    c3 = n3;
    k0 += 0x9E3779B9u;
    k1 += 0xBB67AE85u;
  }
  return PhiloxOut{{c0, c1, c2, c3}};
}

BEAVER_HD uint32_t philox_u32(uint64_t seed, uint64_t stream, uint64_t index) {
  return philox4x32_10(seed, index >> 2, stream).w[index & 3];
}

// Uniform in [0, 1) with 24 random bits: exactly representable in fp32, never 1.0.
BEAVER_HD float u32_to_uniform(uint32_t x) { return float(x >> 8) * (1.0f / 16777216.0f); }

BEAVER_HD float philox_uniform(uint64_t seed, uint64_t stream, uint64_t index) {
  return u32_to_uniform(philox_u32(seed, stream, index));
}

// Host convenience: a sequential reader of one stream.
class PhiloxStream {
 public:
  PhiloxStream(uint64_t seed, uint64_t stream) : seed_(seed), stream_(stream) {}
  uint32_t next_u32() { return philox_u32(seed_, stream_, index_++); }
  float uniform() { return u32_to_uniform(next_u32()); }
  // Standard normal by Box-Muller (uses two draws).
  float normal();
  uint64_t position() const { return index_; }
  void seek(uint64_t index) { index_ = index; }

 private:
  uint64_t seed_, stream_, index_ = 0;
};

}  // namespace beaver
