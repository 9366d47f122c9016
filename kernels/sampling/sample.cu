// CUDA next-token sampling without sorting the vocabulary (definition in csrc/ops/sampling.h).
//
// One block per row; every step is a pass over the row (logits stay in L1/L2 between passes):
//   max / argmax → (top-k) radix select of the k-th largest logit: four 8-bit histogram passes
//   on an order-preserving integer key, ties at the threshold resolved by index with an ordered
//   scan → (top-p) the same search on the probability bits, weighted by probability mass:
//   eight 4-bit passes find the largest threshold τ whose mass Σ_{p ≥ τ} reaches top_p × kept
//   mass, ties at τ again resolved in index order → inverse-CDF draw in index order over
//   contiguous per-thread segments with u = philox_uniform(seed[b], step, 0).
// Precision: fp32 throughout (bf16 logits are widened on load); p = exp((logit - max) / T), the
// CPU twin's expression (a division: 1/T of a subnormal T would overflow). A row with a NaN or
// without a finite maximum yields token -1, as on the CPU.
// Determinism: counts use integer atomics (order-free); every mass sum has a fixed order
// (per-thread slots in shared memory, then a fixed tree), so a seed always gives the same token.
// The block-wide pieces (shared layout, keys, aggregated counts, n-th match) are in block.cuh.
#include <cmath>
#include <cstdint>

#include "csrc/ops/sampling.h"
#include "csrc/philox.h"
#include "kernels/sampling/block.cuh"

namespace beaver::ops::cuda {
namespace {

using namespace sampling;
using detail::stream_of;
using detail::warp_sum;

struct SampleParams {
  const void* logits;
  const int64_t* seeds;
  int* tokens;
  int V;
  float temperature;
  int top_k;
  float top_p;
  uint64_t step;
};

template <typename T>
__global__ void __launch_bounds__(kThreads, 1) sample_kernel(const SampleParams p) {
  __shared__ Shared sh;
  const int b = int(blockIdx.x), tid = int(threadIdx.x);
  const int lane = tid & 31, warp = tid >> 5;
  const int V = p.V;
  const T* row = static_cast<const T*>(p.logits) + int64_t(b) * V;

  // ---- 1. max and the lowest index holding it -------------------------------------------------
  float best = -INFINITY;
  int best_i = V;
  bool has_nan = false;
  for (int i = tid; i < V; i += kThreads) {
    const float x = load_logit(row, i);
    has_nan |= x != x;
    if (best_i == V || x > best) {
      best = x;
      best_i = i;
    }
  }
#pragma unroll
  for (int off = 16; off > 0; off >>= 1) {
    const float ob = __shfl_xor_sync(kFull, best, off);
    const int oi = __shfl_xor_sync(kFull, best_i, off);
    if (oi != V && (best_i == V || ob > best || (ob == best && oi < best_i))) {
      best = ob;
      best_i = oi;
    }
  }
  if (lane == 0) {
    sh.red_f[warp] = best;
    sh.red_i[warp] = best_i;
  }
  const bool bad_row = __syncthreads_or(has_nan);
  best = sh.red_f[0];
  best_i = sh.red_i[0];
  for (int w = 1; w < kWarps; ++w) {
    const float ob = sh.red_f[w];
    const int oi = sh.red_i[w];
    if (oi != V && (best_i == V || ob > best || (ob == best && oi < best_i))) {
      best = ob;
      best_i = oi;
    }
  }
  __syncthreads();
  if (bad_row || !isfinite(best)) {  // no distribution (NaN, +inf or all -inf): -1
    if (tid == 0) p.tokens[b] = -1;
    return;
  }
  if (p.temperature == 0.0f) {
    if (tid == 0) p.tokens[b] = best_i < V ? best_i : 0;
    return;
  }
  const float mx = best, temp = p.temperature;

  // ---- 2. top-k: the k-th largest logit key, and the last index kept among its ties ----------
  const bool use_k = p.top_k > 0 && p.top_k < V;
  uint32_t kth = 0;
  int cut_k = V;
  if (use_k) {
    uint32_t prefix = 0, mask = 0;
    int remaining = p.top_k, last_bin_count = 0;
    for (int pass = 0; pass < 4; ++pass) {
      const int shift = 24 - 8 * pass;
      for (int i = tid; i < 256; i += kThreads) sh.hist[i] = 0;
      __syncthreads();
      for (int base = 0; base < V; base += kThreads) {  // uniform trip count for match_any
        const int i = base + tid;
        const uint32_t key = i < V ? order_key(load_logit(row, i)) : 0u;
        const bool in = i < V && (key & mask) == prefix;
        aggregated_add(sh.hist, in ? int((key >> shift) & 255u) : -1, lane);
      }
      __syncthreads();
      if (warp == 0) {
        // Lane l owns bins 8l..8l+7; count above each lane's range by a suffix scan.
        int own = 0;
#pragma unroll
        for (int e = 0; e < 8; ++e) own += int(sh.hist[lane * 8 + e]);
        int suffix = own;  // inclusive: bins >= 8·lane
#pragma unroll
        for (int off = 1; off < 32; off <<= 1) {
          const int o = __shfl_down_sync(kFull, suffix, off);
          if (lane + off < 32) suffix += o;
        }
        const int above = suffix - own;
        if (above < remaining && remaining <= suffix) {
          int acc = above;
          for (int e = 7; e >= 0; --e) {
            const int c = int(sh.hist[lane * 8 + e]);
            if (acc + c >= remaining) {
              sh.result_i[1] = lane * 8 + e;
              sh.result_i[2] = remaining - acc;
              sh.result_i[3] = c;
              break;
            }
            acc += c;
          }
        }
      }
      __syncthreads();
      prefix |= uint32_t(sh.result_i[1]) << shift;
      mask |= 255u << shift;
      remaining = sh.result_i[2];
      last_bin_count = sh.result_i[3];
      __syncthreads();
    }
    kth = prefix;
    if (remaining < last_bin_count)
      cut_k = block_nth(V, remaining, [&](int i) { return order_key(load_logit(row, i)) == kth; },
                        sh);
  }
  auto kept_k = [=](int i, float x) {
    if (!use_k) return true;
    const uint32_t key = order_key(x);
    return key > kth || (key == kth && i <= cut_k);
  };

  // ---- 3. top-p: largest τ with Σ_{kept, p ≥ τ} p ≥ top_p · Σ_kept p ---------------------------
  const bool use_p = p.top_p < 1.0f;
  uint32_t tau_key = 0;
  int cut_p = V;
  if (use_p) {
    float part = 0.0f;
    for (int i = tid; i < V; i += kThreads) {
      const float x = load_logit(row, i);
      if (kept_k(i, x)) part += expf((x - mx) / temp);
    }
    const float target = p.top_p * detail::block_sum(part, sh.red_sum);
    uint32_t prefix = 0, mask = 0;
    float mass_above = 0.0f;
    int cnt_eq = 0;
    for (int pass = 0; pass < 8; ++pass) {
      const int shift = 28 - 4 * pass;
#pragma unroll
      for (int d = 0; d < 16; ++d) sh.slots[d][tid] = 0.0f;
      if (tid < 16) sh.bin_cnt[tid] = 0u;
      __syncthreads();
      for (int base = 0; base < V; base += kThreads) {  // uniform trip count for match_any
        const int i = base + tid;
        int d = -1;
        if (i < V) {
          const float x = load_logit(row, i);
          if (kept_k(i, x)) {
            const float pv = expf((x - mx) / temp);
            const uint32_t key = __float_as_uint(pv);  // p >= 0: bits order like the values
            if ((key & mask) == prefix) {
              d = int((key >> shift) & 15u);
              sh.slots[d][tid] += pv;
            }
          }
        }
        aggregated_add(sh.bin_cnt, d, lane);
      }
      __syncthreads();
      {  // warp w sums digit w over all threads' slots in a fixed order
        float s = 0.0f;
        for (int t = lane; t < kThreads; t += 32) s += sh.slots[warp][t];
        s = warp_sum(s);
        if (lane == 0) sh.bin_mass[warp] = s;
      }
      __syncthreads();
      if (tid == 0) {
        // Highest digit whose cumulative mass (from the top) reaches the target; if rounding
        // leaves the target out of reach, the lowest non-empty digit.
        float cum = mass_above;
        int sel = -1, fallback = 0;
        float sel_above = mass_above, fallback_above = mass_above;
        for (int d = 15; d >= 0; --d) {
          const float before = cum;
          cum += sh.bin_mass[d];
          if (sh.bin_cnt[d] == 0u) continue;
          fallback = d;
          fallback_above = before;
          if (cum >= target) {
            sel = d;
            sel_above = before;
            break;
          }
        }
        if (sel < 0) {
          sel = fallback;
          sel_above = fallback_above;
        }
        sh.result_i[1] = sel;
        sh.result_i[2] = int(sh.bin_cnt[sel]);
        sh.result_f[0] = sel_above;
      }
      __syncthreads();
      prefix |= uint32_t(sh.result_i[1]) << shift;
      mask |= 15u << shift;
      cnt_eq = sh.result_i[2];
      mass_above = sh.result_f[0];
      __syncthreads();
    }
    tau_key = prefix;
    const float tau = __uint_as_float(tau_key);
    int need = cnt_eq;
    if (tau > 0.0f) {
      const float n = ceilf((target - mass_above) / tau);
      need = n < 1.0f ? 1 : (n >= float(cnt_eq) ? cnt_eq : int(n));
    }
    if (need < cnt_eq)
      cut_p = block_nth(
          V, need,
          [&](int i) {
            const float x = load_logit(row, i);
            return kept_k(i, x) && __float_as_uint(expf((x - mx) / temp)) == tau_key;
          },
          sh);
  }
  auto kept = [=](int i, float x, float pv) {
    if (!kept_k(i, x)) return false;
    if (!use_p) return true;
    const uint32_t key = __float_as_uint(pv);
    return key > tau_key || (key == tau_key && i <= cut_p);
  };

  // ---- 4. inverse CDF in index order: thread t owns the contiguous segment t -----------------
  const int seg = (V + kThreads - 1) / kThreads;
  const int lo = min(V, tid * seg), hi = min(V, lo + seg);
  float own = 0.0f;
  int last_kept = -1;
  for (int i = lo; i < hi; ++i) {
    const float x = load_logit(row, i);
    const float pv = expf((x - mx) / temp);
    if (kept(i, x, pv)) {
      own += pv;
      last_kept = i;
    }
  }
  // Exclusive scan of the segment sums (fixed order: warp scan, then the warp totals).
  float incl = own;
#pragma unroll
  for (int off = 1; off < 32; off <<= 1) {
    const float o = __shfl_up_sync(kFull, incl, off);
    if (lane >= off) incl += o;
  }
  if (lane == 31) sh.red_f[warp] = incl;
  if (tid == 0) {
    sh.result_i[0] = V;   // first index whose cumulative mass exceeds u·total
    sh.result_i[1] = -1;  // last kept index (rounding fallback)
  }
  __syncthreads();
  float warp_before = 0.0f, total = 0.0f;
#pragma unroll
  for (int w = 0; w < kWarps; ++w) {
    warp_before += w < warp ? sh.red_f[w] : 0.0f;
    total += sh.red_f[w];
  }
  const float u = philox_uniform(uint64_t(p.seeds[b]), p.step, 0);
  const float r = u * total;
  float c = warp_before + incl - own;
  int found = V;
  for (int i = lo; i < hi; ++i) {
    const float x = load_logit(row, i);
    const float pv = expf((x - mx) / temp);
    if (!kept(i, x, pv)) continue;
    c += pv;
    if (c > r) {
      found = i;
      break;
    }
  }
  if (found < V) atomicMin(&sh.result_i[0], found);
  if (last_kept >= 0) atomicMax(&sh.result_i[1], last_kept);
  __syncthreads();
  if (tid == 0) {
    const int tok = sh.result_i[0] < V ? sh.result_i[0] : sh.result_i[1];
    p.tokens[b] = tok >= 0 ? tok : best_i;
  }
}

}  // namespace

void sample(Context& ctx, const Tensor& logits, const SamplingConfig& cfg, const Tensor& seeds,
            uint64_t step, const Tensor& tokens) {
  constexpr const char* op = "sample";
  BEAVER_CHECK(logits.dtype == DType::F32 || logits.dtype == DType::BF16, op,
               ": logits must be f32 or bf16 on CUDA, got ", dtype_name(logits.dtype));
  expect_dtype(seeds, DType::I64, op, "seeds");
  expect_dtype(tokens, DType::I32, op, "tokens");
  BEAVER_CHECK(std::isfinite(cfg.temperature) && cfg.temperature >= 0.0f, op,
               ": temperature must be finite and >= 0, got ", cfg.temperature);
  BEAVER_CHECK(cfg.top_k >= 0, op, ": top_k must be >= 0, got ", cfg.top_k);
  BEAVER_CHECK(cfg.top_p >= 0.0f && cfg.top_p <= 1.0f, op, ": top_p must be in [0, 1], got ",
               cfg.top_p);
  const int64_t B = logits.size(0), V = logits.size(1);
  BEAVER_CHECK(V > 0 && V < (int64_t(1) << 31), op, ": vocabulary size ", V,
               " must be in [1, 2^31)");
  if (B == 0) return;
  const SampleParams p{logits.data,     seeds.ptr<int64_t>(), tokens.ptr<int32_t>(), int(V),
                       cfg.temperature, cfg.top_k,            cfg.top_p,              step};
  const cudaStream_t st = stream_of(ctx);
  if (logits.dtype == DType::F32)
    sample_kernel<float><<<unsigned(B), kThreads, 0, st>>>(p);
  else
    sample_kernel<detail::bf16_t><<<unsigned(B), kThreads, 0, st>>>(p);
  BEAVER_CUDA_LAUNCH_CHECK();
}

}  // namespace beaver::ops::cuda
