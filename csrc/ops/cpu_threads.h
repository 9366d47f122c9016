// How the CPU twins split work over the Context's OpenMP threads without paying for a parallel
// region they do not need.
//
// libgomp allocates (and frees) a team for every parallel region that runs on one thread, which
// includes a region whose `if` clause is false and every region of a one-thread Context; and an
// orphaned `schedule(dynamic)` loop outside a team allocates its work share. The training step
// runs a few hundred such regions, so these helpers run the work inline on the calling thread
// whenever one thread would do it, and open a region only for a real team:
//   parallel_region(threads, parallel, body)  body(tid, nthreads) on each thread of a team of
//                                             `threads`, or body(0, 1) inline when threads is 1
//                                             or `parallel` is false;
//   parallel_range(threads, n, parallel, fn)  fn(begin, end) over a static split of [0, n) into
//                                             one contiguous part per thread (the split depends
//                                             only on n and the thread count);
//   static_part(n, tid, nthreads)             that split's part for one thread;
//   DynamicCounter / for_dynamic              inside a region: hand out the indices of [0, n) one
//                                             at a time to whichever thread asks next (OpenMP's
//                                             schedule(dynamic, 1) without its work share).
// Determinism: the helpers only decide which thread computes which indices. The ops that use
// them write disjoint outputs per index (or reduce per fixed chunk, independent of the split),
// so for a fixed thread count the results are bitwise the same, and most are the same for any
// thread count. A body that needs every thread to finish a phase calls `#pragma omp barrier`
// (a no-op when the body runs inline).
#pragma once

#include <omp.h>

#include <algorithm>
#include <atomic>
#include <cstdint>
#include <utility>

namespace beaver::ops::cpu {

template <typename Body>
void parallel_region(int threads, bool parallel, Body&& body) {
  if (threads <= 1 || !parallel) {
    body(0, 1);
    return;
  }
#pragma omp parallel num_threads(threads)
  body(omp_get_thread_num(), omp_get_num_threads());
}

// Part `tid` of `nthreads` of [0, n): the first n % nthreads parts have one index more.
inline std::pair<int64_t, int64_t> static_part(int64_t n, int tid, int nthreads) {
  const int64_t q = n / nthreads, r = n % nthreads;
  const int64_t begin = int64_t(tid) * q + std::min<int64_t>(tid, r);
  return {begin, begin + q + (tid < r ? 1 : 0)};
}

template <typename Fn>
void parallel_range(int threads, int64_t n, bool parallel, Fn&& fn) {
  if (n <= 0) return;
  parallel_region(threads, parallel && n > 1, [&](int tid, int nthreads) {
    const auto [begin, end] = static_part(n, tid, nthreads);
    if (begin < end) fn(begin, end);
  });
}

// Shared by the threads of one region (declare it before the region, one per loop).
struct DynamicCounter {
  std::atomic<int64_t> next{0};
};

template <typename Fn>
void for_dynamic(DynamicCounter& counter, int64_t n, Fn&& fn) {
  for (int64_t i = counter.next.fetch_add(1, std::memory_order_relaxed); i < n;
       i = counter.next.fetch_add(1, std::memory_order_relaxed))
    fn(i);
}

}  // namespace beaver::ops::cpu
