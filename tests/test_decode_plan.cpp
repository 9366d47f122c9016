// The split arithmetic of CUDA split-KV decode (kernels/attention/decode_plan.h), checked on the
// CPU: for every length the used splits tile [0, len) exactly, in order, none empty, each at
// least kMinKeysPerSplit keys but the last; short rows use few splits whatever the grid's
// count; the grid's count grows as occupancy falls (head dim 128 fits fewer blocks per SM),
// never exceeds what a full cache can use, and stays within [1, kMaxSplits].
#include <gtest/gtest.h>

#include <vector>

#include "kernels/attention/decode_plan.h"

namespace beaver::ops::cuda::attn {
namespace {

TEST(DecodePlan, UsedSplitsTileTheRowExactly) {
  for (int n_split = 1; n_split <= kMaxSplits; ++n_split)
    for (int len : {0, 1, 2, 255, 256, 257, 511, 1000, 2048, 4097, 32768, 100003}) {
      SCOPED_TRACE("len " + std::to_string(len) + " n_split " + std::to_string(n_split));
      const DecodeSplit sp = decode_split(len, n_split);
      ASSERT_LE(sp.used, n_split);
      if (len == 0) {
        EXPECT_EQ(sp.used, 0);
        continue;
      }
      ASSERT_GE(sp.used, 1);
      // Emulate the kernel's bounds: split s covers [s * per, min(len, s * per + per)).
      int next = 0;
      for (int s = 0; s < sp.used; ++s) {
        const int s0 = s * sp.per, s1 = std::min(len, s0 + sp.per);
        EXPECT_EQ(s0, next) << "split " << s << " does not start where the previous ended";
        EXPECT_GT(s1, s0) << "split " << s << " is empty";
        if (s + 1 < sp.used) {
          EXPECT_GE(s1 - s0, kMinKeysPerSplit);
        }
        next = s1;
      }
      EXPECT_EQ(next, len) << "the used splits do not reach the end of the row";
      // The splits beyond `used` start at or past the end: nothing is lost by skipping them.
      EXPECT_GE(sp.used * sp.per, len);
      EXPECT_LT((sp.used - 1) * sp.per, len);
    }
}

TEST(DecodePlan, ShortRowsUseFewSplitsInALongCache) {
  const int n_split = decode_split_count(/*rows=*/8, /*n_sm=*/132, /*blocks_per_sm=*/4,
                                         /*capacity=*/16384);
  EXPECT_GT(n_split, 8);
  EXPECT_EQ(decode_split(100, n_split).used, 1);
  EXPECT_EQ(decode_split(600, n_split).used, 3);
  EXPECT_EQ(decode_split(16384, n_split).used, n_split);
}

TEST(DecodePlan, SplitCountFollowsOccupancyAndCapacity) {
  // Fewer resident blocks per SM (head dim 128) -> fewer splits to fill the same waves.
  const int lo = decode_split_count(32, 132, 3, 1 << 16);
  const int hi = decode_split_count(32, 132, 8, 1 << 16);
  EXPECT_LT(lo, hi);
  EXPECT_EQ(lo, (132 * 3 * 2 + 31) / 32);
  // Never more splits than a full cache fills with kMinKeysPerSplit keys each.
  EXPECT_EQ(decode_split_count(1, 132, 8, 1000), 4);
  EXPECT_EQ(decode_split_count(1, 132, 8, 1), 1);
  // Bounds.
  EXPECT_EQ(decode_split_count(1, 132, 16, 1 << 20), kMaxSplits);
  EXPECT_EQ(decode_split_count(100000, 132, 1, 1 << 20), 1);
  EXPECT_EQ(decode_split_count(0, 132, 1, 1 << 20), 1);
}

}  // namespace
}  // namespace beaver::ops::cuda::attn
