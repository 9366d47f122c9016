// How split-KV decode (kernels/attention/decode.cu) divides one sequence's cache into splits, as
// host + device functions so that the launch, both kernels and a CPU test
// (tests/test_decode_plan.cpp) use the same arithmetic.
//
// The launch picks a split count n_split for the grid from the device (resident blocks per
// multiprocessor of the kernel actually launched, so the head-dim-128 variant's lower occupancy
// counts) and the cache capacity. Each row then uses only as many splits as its real length
// needs: splits of at least kMinKeysPerSplit keys, so a short row in a long cache runs one or two
// splits and the other blocks of its row exit at once; the merge reads only the used splits.
#pragma once

#include <cstdint>

#if defined(__CUDACC__)
#define BEAVER_DEC_HD __host__ __device__ __forceinline__
#else
#define BEAVER_DEC_HD inline
#endif

namespace beaver::ops::cuda::attn {

constexpr int kMinKeysPerSplit = 256;
constexpr int kMaxSplits = 64;

struct DecodeSplit {
  int per;   // keys per split (the last used split may hold fewer)
  int used;  // splits that hold at least one key: 0 for an empty row
};

// The splits of a row of `len` keys when the grid has n_split >= 1 of them.
BEAVER_DEC_HD DecodeSplit decode_split(int len, int n_split) {
  if (len <= 0) return {kMinKeysPerSplit, 0};
  int per = (len + n_split - 1) / n_split;
  if (per < kMinKeysPerSplit) per = kMinKeysPerSplit;
  return {per, (len + per - 1) / per};
}

// The grid's split count: enough blocks for `waves` full waves of the card (n_sm multiprocessors,
// blocks_per_sm resident blocks of the decode kernel each) over `rows` = batch x KV heads x head
// chunks blocks per split, at most kMaxSplits and no more than a full cache of `capacity` keys
// can use.
inline int decode_split_count(int64_t rows, int n_sm, int blocks_per_sm, int capacity,
                              int waves = 2) {
  if (rows <= 0) return 1;
  const int64_t slots = int64_t(n_sm) * blocks_per_sm * waves;
  int64_t n = (slots + rows - 1) / rows;
  const int64_t by_len = (int64_t(capacity) + kMinKeysPerSplit - 1) / kMinKeysPerSplit;
  if (n > by_len) n = by_len;
  if (n > kMaxSplits) n = kMaxSplits;
  return n < 1 ? 1 : int(n);
}

}  // namespace beaver::ops::cuda::attn
