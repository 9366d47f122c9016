// The partition of CUDA embedding backward (kernels/embedding_plan.h), emulated on the CPU with
// the same index functions the two kernels use: every run of a valid id is written exactly once,
// by one pass or the other, with the sum of all its positions (against a double reference);
// the sentinel key is never written; no pass walks more than one segment of positions per
// block. Cases: a pad id filling most of a long batch, runs ending exactly on segment
// boundaries, a single id, lengths around the segment size.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <map>
#include <vector>

#include "kernels/embedding_plan.h"
#include "testutil.h"

namespace beaver {
namespace {

namespace ep = ops::embedding_plan;

struct Emulated {
  std::vector<double> row;     // [V] written value (one column)
  std::vector<int> writes;     // [V] how many times each row was written
  int64_t max_positions = 0;   // most positions one pass-1 block summed
};

// The two kernels of kernels/embedding.cu for one column, block by block. keys sorted (stable),
// values[k] = dout[pos[k]] of that column; V is the sentinel key.
Emulated emulate(const std::vector<uint32_t>& keys, const std::vector<float>& values, int64_t V) {
  const int64_t T = int64_t(keys.size());
  const int64_t S = ep::segments(T);
  Emulated e;
  e.row.assign(size_t(V), 0.0);
  e.writes.assign(size_t(V), 0);
  std::vector<float> partial(size_t(2 * S), std::nanf(""));
  for (int64_t g = 0; g < S; ++g) {  // pass 1
    const int64_t sb = ep::segment_begin(g), se = ep::segment_end(g, T);
    e.max_positions = std::max(e.max_positions, se - sb);
    for (int64_t p0 = sb; p0 < se;) {
      const int64_t p1 = ep::piece_end(keys.data(), p0, se);
      EXPECT_GT(p1, p0);
      const uint32_t v = keys[size_t(p0)];
      if (int64_t(v) < V) {
        float acc = 0.0f;
        for (int64_t k = p0; k < p1; ++k) acc += values[size_t(k)];
        const ep::Piece kind = ep::piece_kind(keys.data(), T, p0, p1, sb, se);
        if (kind == ep::Piece::kLocal) {
          e.row[v] = acc;
          ++e.writes[v];
        } else {
          partial[size_t(2 * g + (kind == ep::Piece::kHead ? 0 : 1))] = acc;
        }
      }
      p0 = p1;
    }
  }
  for (int64_t g = 0; g < S; ++g) {  // pass 2
    const int64_t a = ep::crossing_run_start(keys.data(), T, g);
    if (a < 0 || int64_t(keys[size_t(a)]) >= V) continue;
    const int64_t last = ep::last_segment_of_run(keys.data(), T, a);
    EXPECT_GT(last, g);
    float acc = partial[size_t(2 * g + 1)];
    for (int64_t h = g + 1; h <= last; ++h) acc += partial[size_t(2 * h)];
    e.row[keys[size_t(a)]] = acc;
    ++e.writes[keys[size_t(a)]];
  }
  return e;
}

void check(std::vector<uint32_t> keys, int64_t V, uint64_t seed) {
  std::stable_sort(keys.begin(), keys.end());
  const auto values = test::random_vec(keys.size(), seed);
  std::vector<double> want(size_t(V), 0.0);
  std::vector<int> present(size_t(V), 0);
  for (size_t k = 0; k < keys.size(); ++k)
    if (keys[k] < V) {
      want[keys[k]] += double(values[k]);
      present[keys[k]] = 1;
    }
  const Emulated e = emulate(keys, values, V);
  EXPECT_LE(e.max_positions, ep::kSegment);
  for (int64_t v = 0; v < V; ++v) {
    SCOPED_TRACE("id " + std::to_string(v) + " of " + std::to_string(V) + ", T=" +
                 std::to_string(keys.size()));
    EXPECT_EQ(e.writes[size_t(v)], present[size_t(v)]) << "row written the wrong number of times";
    // f32 sums of at most a few thousand values in [-1, 1]
    EXPECT_NEAR(e.row[size_t(v)], want[size_t(v)], 1e-5 * double(keys.size()) + 1e-6);
  }
}

TEST(EmbeddingPlan, PadIdFillsMostOfTheBatch) {
  PhiloxStream rng(7, 1);
  for (int64_t T : {1, 127, 128, 129, 255, 256, 257, 1000, 4096, 5001}) {
    std::vector<uint32_t> keys(static_cast<size_t>(T));
    for (auto& k : keys) k = (rng.next_u32() % 10 < 8) ? 0u : 1 + rng.next_u32() % 50;
    check(keys, 51, uint64_t(T));
  }
}

TEST(EmbeddingPlan, RunsEndingOnSegmentBoundaries) {
  for (int64_t len : {ep::kSegment, 2 * ep::kSegment, ep::kSegment - 1, ep::kSegment + 1}) {
    std::vector<uint32_t> keys;
    for (uint32_t v = 0; v < 7; ++v) keys.insert(keys.end(), size_t(len), v);
    check(keys, 7, uint64_t(len));
  }
}

TEST(EmbeddingPlan, OneIdOnly) {
  for (int64_t T : {1, 128, 129, 3 * 128, 3 * 128 + 5}) check(std::vector<uint32_t>(T, 3u), 4, 9);
}

TEST(EmbeddingPlan, SentinelKeysAreNeverWritten) {
  // Out-of-range ids sort into the sentinel V at the end, here a run crossing segments.
  std::vector<uint32_t> keys(300, 5u);  // V = 5: all sentinel but the first 70
  for (size_t i = 0; i < 70; ++i) keys[i] = uint32_t(i % 3);
  check(keys, 5, 3);
}

TEST(EmbeddingPlan, RandomIdsManyLengths) {
  PhiloxStream rng(11, 2);
  for (int trial = 0; trial < 40; ++trial) {
    const int64_t T = 1 + rng.next_u32() % 2000;
    const int64_t V = 1 + rng.next_u32() % 40;
    std::vector<uint32_t> keys(static_cast<size_t>(T));
    for (auto& k : keys) k = rng.next_u32() % uint32_t(V + 1);  // some sentinels too
    check(keys, V, uint64_t(trial));
  }
}

}  // namespace
}  // namespace beaver
