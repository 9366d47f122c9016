// The partition of embedding backward (kernels/embedding.cu), as host + device functions so that
// the CUDA launch and a CPU test (tests/test_embedding_plan.cpp) use the same index logic.
//
// After the stable sort, equal ids form runs of consecutive positions k in [a, b) of the sorted
// list. The list is cut into fixed segments of kSegment positions; segment g is [g*S, (g+1)*S)
// clipped to T. Within a segment a run contributes one piece (its positions inside the segment):
//   - kLocal: the run starts and ends inside this segment; the block of this segment sums it in
//     increasing k, from the old row when accumulating, and writes the row;
//   - kHead:  the run began in an earlier segment (it covers the segment's first position); the
//     piece's sum, from 0, is stored as the segment's partial slot 0;
//   - kTail:  the run begins in this segment and continues past its end; the piece's sum, from
//     0, is stored as the segment's partial slot 1.
// A run crossing a boundary (the pad id of a padded batch, thousands of positions long) is then
// finished by the combine pass: the block of the segment where it begins adds, in segment
// order, its slot 1 and the slot 0 of every later segment up to the one holding its last
// position, starting from the old row when accumulating. No run is summed by one block over
// more than kSegment positions plus one partial per segment it spans, and the sum order is
// fixed by T alone, so the result is bitwise reproducible.
#pragma once

#include <cstdint>

#if defined(__CUDACC__)
#define BEAVER_EMB_HD __host__ __device__ __forceinline__
#else
#define BEAVER_EMB_HD inline
#endif

namespace beaver::ops::embedding_plan {

constexpr int64_t kSegment = 128;

enum class Piece : int { kLocal = 0, kHead = 1, kTail = 2 };

BEAVER_EMB_HD int64_t segments(int64_t T) { return (T + kSegment - 1) / kSegment; }
BEAVER_EMB_HD int64_t segment_begin(int64_t g) { return g * kSegment; }
BEAVER_EMB_HD int64_t segment_end(int64_t g, int64_t T) {
  const int64_t e = (g + 1) * kSegment;
  return e < T ? e : T;
}

// The end (exclusive) of the piece of key keys[p0] starting at p0, inside [p0, seg_end).
template <typename K>
BEAVER_EMB_HD int64_t piece_end(const K* keys, int64_t p0, int64_t seg_end) {
  int64_t p = p0 + 1;
  while (p < seg_end && keys[p] == keys[p0]) ++p;
  return p;
}

// Kind of the piece [p0, p1) of segment [sb, se) in a sorted list of T keys.
template <typename K>
BEAVER_EMB_HD Piece piece_kind(const K* keys, int64_t T, int64_t p0, int64_t p1, int64_t sb,
                               int64_t se) {
  const K v = keys[p0];
  if (p0 == sb && sb > 0 && keys[sb - 1] == v) return Piece::kHead;
  if (p1 == se && se < T && keys[se] == v) return Piece::kTail;
  return Piece::kLocal;
}

// The segment holding the last position of the run of keys[from] (binary search on the sorted
// list for the first position after `from` with a larger key).
template <typename K>
BEAVER_EMB_HD int64_t last_segment_of_run(const K* keys, int64_t T, int64_t from) {
  const K v = keys[from];
  int64_t lo = from + 1, hi = T;  // first index > from with keys[index] != v lies in [lo, hi]
  while (lo < hi) {
    const int64_t mid = lo + (hi - lo) / 2;
    if (keys[mid] == v)
      lo = mid + 1;
    else
      hi = mid;
  }
  return (lo - 1) / kSegment;
}

// For the combine pass: the start of the run that begins in segment g and crosses its end, or
// -1 when no run does (the segment's last piece is local, or it began in an earlier segment).
template <typename K>
BEAVER_EMB_HD int64_t crossing_run_start(const K* keys, int64_t T, int64_t g) {
  const int64_t sb = segment_begin(g), se = segment_end(g, T);
  if (se >= T || keys[se] != keys[se - 1]) return -1;  // nothing crosses the end
  const K v = keys[se - 1];
  int64_t a = se - 1;
  while (a > sb && keys[a - 1] == v) --a;
  if (a == sb && sb > 0 && keys[sb - 1] == v) return -1;  // began earlier: another segment's
  return a;
}

}  // namespace beaver::ops::embedding_plan
