// Causal attention over a padded batch: argument checks, dispatch, and the CPU twin.
// The CPU twin follows the GPU kernel's structure so both compute the same thing the same way:
// query blocks × key blocks with an online softmax in the forward (no S×S matrix; each thread's
// scratch is O(block · d); block products run as register tiles of 4 rows by 8 columns, by 16
// with AVX2, or by 32 with FMA on AVX-512 CPUs), and a backward that recomputes P from lse,
// with dk/dv owned by (sequence, kv head, key block) tasks and dq by (sequence, head, query
// block) tasks. Every output element is written by exactly one task and its sums run in a fixed
// order, so results are bitwise independent of the thread count.
// Decode runs the forward's row code on one query, so a decode step reproduces the prefill's
// row for the same token exactly.
#include "csrc/ops/attention.h"


#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>
#include <utility>

#if defined(__x86_64__)
#include <immintrin.h>
#endif

#include "csrc/ops/cpu_clones.h"
#include "csrc/ops/cpu_exp.h"
#include "csrc/ops/cpu_threads.h"
#include "csrc/ops/dispatch.h"

// The register tiles' vector types are passed between always-inline helpers only; the ABI note
// GCC gives for them does not apply. No a * b + c is fused (see the tiles' comment).
#if defined(__clang__)
#pragma clang fp contract(off)
#elif defined(__GNUC__)
#pragma GCC diagnostic ignored "-Wpsabi"
#pragma GCC optimize("fp-contract=off")
#endif

namespace beaver::ops {
namespace {

struct AttnDims {
  int64_t B, S, nh, nkv, d;
};

// q [B, S, nh, d], k and v [B, S, nkv, d], one float dtype; returns the sizes.
AttnDims check_qkv(const Tensor& q, const Tensor& k, const Tensor& v, std::string_view op) {
  expect_defined(q, op, "q");
  expect_defined(k, op, "k");
  expect_defined(v, op, "v");
  expect_rank(q, 4, op, "q");
  expect_rank(k, 4, op, "k");
  const AttnDims s{q.size(0), q.size(1), q.size(2), k.size(2), q.size(3)};
  if (s.nh < 1 || s.d < 1)
    BEAVER_FAIL(op, ": q has shape ", q.shape.str(), "; need at least one head and head dim >= 1");
  if (s.nkv < 1) BEAVER_FAIL(op, ": k has shape ", k.shape.str(), "; need at least one kv head");
  expect_shape(k, Shape{s.B, s.S, s.nkv, s.d}, op, "k");
  expect_shape(v, k.shape, op, "v");
  if (s.nh % s.nkv != 0)
    BEAVER_FAIL(op, ": q has ", s.nh, " heads, not a multiple of the ", s.nkv,
                " kv heads of k (nh % nkv must be 0)");
  if (!is_float(q.dtype)) BEAVER_FAIL(op, ": q has dtype ", dtype_name(q.dtype), ", not a float");
  expect_dtype(k, q.dtype, op, "k");
  expect_dtype(v, q.dtype, op, "v");
  return s;
}

// ranges i32 [B, 2]; on the host also the values: 0 <= begin <= end <= limit. (Device-resident
// ranges are not read back here: that would synchronise every call, decode steps included.)
void check_ranges(const Tensor& ranges, int64_t B, int64_t limit, std::string_view op) {
  expect_defined(ranges, op, "ranges");
  expect_shape(ranges, Shape{B, 2}, op, "ranges");
  expect_dtype(ranges, DType::I32, op, "ranges");
  if (ranges.device != Device::CPU) return;
  const int32_t* r = ranges.ptr<int32_t>();
  for (int64_t b = 0; b < B; ++b) {
    const int64_t begin = r[2 * b], end = r[2 * b + 1];
    if (!(0 <= begin && begin <= end && end <= limit))
      BEAVER_FAIL(op, ": ranges[", b, "] = [", begin, ", ", end, ") is not a range within [0, ",
                  limit, "] with begin <= end");
  }
}

// Host-resident pos: every sequence's rows [pos[b], pos[b] + n) must lie within [0, Smax).
void check_append_rows(const Tensor& pos, int64_t n, int64_t Smax) {
  if (pos.device != Device::CPU) return;
  const int32_t* pp = pos.ptr<int32_t>();
  for (int64_t b = 0; b < pos.numel(); ++b) {
    if (pp[b] < 0 || int64_t(pp[b]) + n > Smax)
      BEAVER_FAIL("kv_append: pos[", b, "] = ", pp[b], " with ", n, " new rows writes rows [",
                  pp[b], ", ", int64_t(pp[b]) + n, ") outside the cache's [0, ", Smax, ")");
  }
}

void check_scale(float scale, std::string_view op) {
  if (!std::isfinite(scale)) BEAVER_FAIL(op, ": scale is ", scale, ", not finite");
}

}  // namespace

void attention_fwd(Context& ctx, const Tensor& q, const Tensor& k, const Tensor& v,
                   const Tensor& ranges, float scale, const Tensor& out, const Tensor& lse) {
  constexpr std::string_view op = "attention_fwd";
  const AttnDims s = check_qkv(q, k, v, op);
  check_ranges(ranges, s.B, s.S, op);
  check_scale(scale, op);
  expect_defined(out, op, "out");
  expect_defined(lse, op, "lse");
  expect_shape(out, q.shape, op, "out");
  expect_dtype(out, q.dtype, op, "out");
  expect_shape(lse, Shape{s.B, s.nh, s.S}, op, "lse");
  expect_dtype(lse, DType::F32, op, "lse");
  expect_on(ctx, {&q, &k, &v, &ranges, &out, &lse}, op);
  BEAVER_DISPATCH(ctx, attention_fwd, ctx, q, k, v, ranges, scale, out, lse);
}

void attention_bwd(Context& ctx, const Tensor& q, const Tensor& k, const Tensor& v,
                   const Tensor& out, const Tensor& dout, const Tensor& lse,
                   const Tensor& ranges, float scale, const Tensor& dq, const Tensor& dk,
                   const Tensor& dv) {
  constexpr std::string_view op = "attention_bwd";
  const AttnDims s = check_qkv(q, k, v, op);
  check_ranges(ranges, s.B, s.S, op);
  check_scale(scale, op);
  const std::pair<const Tensor*, std::string_view> like_q[] = {
      {&out, "out"}, {&dout, "dout"}, {&dq, "dq"}};
  for (const auto& [t, name] : like_q) {
    expect_defined(*t, op, name);
    expect_shape(*t, q.shape, op, name);
    expect_dtype(*t, q.dtype, op, name);
  }
  const std::pair<const Tensor*, std::string_view> like_k[] = {{&dk, "dk"}, {&dv, "dv"}};
  for (const auto& [t, name] : like_k) {
    expect_defined(*t, op, name);
    expect_shape(*t, k.shape, op, name);
    expect_dtype(*t, q.dtype, op, name);
  }
  expect_defined(lse, op, "lse");
  expect_shape(lse, Shape{s.B, s.nh, s.S}, op, "lse");
  expect_dtype(lse, DType::F32, op, "lse");
  expect_on(ctx, {&q, &k, &v, &out, &dout, &lse, &ranges, &dq, &dk, &dv}, op);
  BEAVER_DISPATCH(ctx, attention_bwd, ctx, q, k, v, out, dout, lse, ranges, scale, dq, dk, dv);
}

void decode_attention(Context& ctx, const Tensor& q, const Tensor& k_cache,
                      const Tensor& v_cache, const Tensor& ranges, float scale,
                      const Tensor& out) {
  constexpr std::string_view op = "decode_attention";
  expect_defined(q, op, "q");
  expect_defined(k_cache, op, "k_cache");
  expect_defined(v_cache, op, "v_cache");
  expect_rank(q, 3, op, "q");
  expect_rank(k_cache, 4, op, "k_cache");
  const int64_t B = q.size(0), nh = q.size(1), d = q.size(2);
  const int64_t Smax = k_cache.size(1), nkv = k_cache.size(2);
  if (nh < 1 || d < 1)
    BEAVER_FAIL(op, ": q has shape ", q.shape.str(), "; need at least one head and head dim >= 1");
  if (nkv < 1)
    BEAVER_FAIL(op, ": k_cache has shape ", k_cache.shape.str(), "; need at least one kv head");
  expect_shape(k_cache, Shape{B, Smax, nkv, d}, op, "k_cache");
  expect_shape(v_cache, k_cache.shape, op, "v_cache");
  if (nh % nkv != 0)
    BEAVER_FAIL(op, ": q has ", nh, " heads, not a multiple of the ", nkv,
                " kv heads of k_cache (nh % nkv must be 0)");
  if (!is_float(q.dtype)) BEAVER_FAIL(op, ": q has dtype ", dtype_name(q.dtype), ", not a float");
  expect_dtype(k_cache, q.dtype, op, "k_cache");
  expect_dtype(v_cache, q.dtype, op, "v_cache");
  check_ranges(ranges, B, Smax, op);
  check_scale(scale, op);
  expect_defined(out, op, "out");
  expect_shape(out, q.shape, op, "out");
  expect_dtype(out, q.dtype, op, "out");
  expect_on(ctx, {&q, &k_cache, &v_cache, &ranges, &out}, op);
  BEAVER_DISPATCH(ctx, decode_attention, ctx, q, k_cache, v_cache, ranges, scale, out);
}

void kv_append(Context& ctx, const Tensor& k_new, const Tensor& v_new, const Tensor& k_cache,
               const Tensor& v_cache, const Tensor& pos) {
  constexpr std::string_view op = "kv_append";
  expect_defined(k_new, op, "k_new");
  expect_defined(v_new, op, "v_new");
  expect_defined(k_cache, op, "k_cache");
  expect_defined(v_cache, op, "v_cache");
  expect_defined(pos, op, "pos");
  expect_rank(k_new, 4, op, "k_new");
  expect_rank(k_cache, 4, op, "k_cache");
  const int64_t B = k_new.size(0), n = k_new.size(1), nkv = k_new.size(2), d = k_new.size(3);
  const int64_t Smax = k_cache.size(1);
  expect_shape(v_new, k_new.shape, op, "v_new");
  expect_shape(k_cache, Shape{B, Smax, nkv, d}, op, "k_cache");
  expect_shape(v_cache, k_cache.shape, op, "v_cache");
  expect_dtype(v_new, k_new.dtype, op, "v_new");
  expect_dtype(k_cache, k_new.dtype, op, "k_cache");
  expect_dtype(v_cache, k_new.dtype, op, "v_cache");
  expect_shape(pos, Shape{B}, op, "pos");
  expect_dtype(pos, DType::I32, op, "pos");
  expect_on(ctx, {&k_new, &v_new, &k_cache, &v_cache, &pos}, op);
  check_append_rows(pos, n, Smax);
  BEAVER_DISPATCH(ctx, kv_append, ctx, k_new, v_new, k_cache, v_cache, pos);
}

// ============================================================================================
// CPU twin (f32)
// ============================================================================================
namespace cpu {
namespace {

constexpr int64_t kBlockQ = 64;  // query rows per task
constexpr int64_t kBlockK = 64;  // keys per inner block
constexpr int64_t kTileR = 4;    // register tile: query rows ...
constexpr int64_t kTileC = 32;   // ... by up to 32 keys (scores) or head-dim columns (P V)
// The backward keeps P and dS [query][key] with a row stride of kBlockK.
static_assert(kBlockQ <= kBlockK);

// Floats rounded up to whole 64-byte cache lines.
size_t padded(size_t floats) { return (floats + 15) / 16 * 16; }

// Scratch from the context: `shared_floats` for all threads (returned in *shared), then
// `floats_per_thread` for each of ctx.threads() threads, each slice on its own cache lines so
// that threads never share one. Returns the first thread's slice.
float* thread_scratch(Context& ctx, size_t floats_per_thread, size_t shared_floats,
                      float** shared) {
  const size_t per = padded(floats_per_thread), lead = padded(shared_floats);
  auto* base = static_cast<float*>(
      ctx.scratch((lead + per * size_t(std::max(ctx.threads(), 1))) * sizeof(float)));
  if (shared) *shared = base;
  return base + lead;
}

void require_f32(const Tensor& t, std::string_view op, std::string_view name) {
  if (t.dtype != DType::F32)
    BEAVER_FAIL(op, ": the CPU backend computes in f32, but ", name, " is ", t.str());
}

// y[0..n) += a * x[0..n): the inner loop of every product below. Restrict-qualified so the
// compiler vectorises it without alias checks; the sum for each y element runs in call order.
inline void axpy(float* __restrict y, const float* __restrict x, float a, int64_t n) {
  for (int64_t i = 0; i < n; ++i) y[i] += a * x[i];
}

// Scores of one query row against keys [j0, j0 + n) of a block held transposed in kt
// (kt[c * kBlockK + jj] = k[j0 + jj][c]): s[jj] = q · k_jj, summed over c in order. The
// transposed block makes the inner loop a contiguous axpy that vectorises.
inline void block_scores(const float* qr, const float* kt, int64_t n, int64_t d, float* s) {
  for (int64_t jj = 0; jj < n; ++jj) s[jj] = 0.0f;
  for (int64_t c = 0; c < d; ++c) {
    axpy(s, kt + c * kBlockK, qr[c], n);
  }
}

bool have_avx512();

#if defined(__x86_64__)
BEAVER_AVX512_CODE_BEGIN
// load_transposed in 16 x 16 blocks: 16 rows loaded (masked at the edges, rows past n zero),
// transposed in registers, stored as 16 columns. A copy: the same values as the scalar loop.
__attribute__((target("avx512f"))) void load_transposed_avx512(const float* src, int64_t stride,
                                                              int64_t n, int64_t d,
                                                              int64_t padded_n, float* dst) {
  for (int64_t j0 = 0; j0 < padded_n; j0 += 16) {
    const int64_t rows = std::max<int64_t>(0, std::min<int64_t>(16, n - j0));
    for (int64_t c0 = 0; c0 < d; c0 += 16) {
      const int64_t cols = std::min<int64_t>(16, d - c0);
      const __mmask16 cm = __mmask16((1u << cols) - 1u);
      __m512 r[16], t[16];
      for (int i = 0; i < 16; ++i)
        r[i] = i < rows ? _mm512_maskz_loadu_ps(cm, src + (j0 + i) * stride + c0)
                        : _mm512_setzero_ps();
      // Pairs of rows interleaved, then groups of four: u[4g + k], 128-bit lane L, holds
      // column 4L + k of rows 4g .. 4g + 3.
      for (int i = 0; i < 16; i += 2) {
        t[i] = _mm512_unpacklo_ps(r[i], r[i + 1]);
        t[i + 1] = _mm512_unpackhi_ps(r[i], r[i + 1]);
      }
      for (int g = 0; g < 4; ++g) {
        __m512* u = r + 4 * g;
        const __m512* tt = t + 4 * g;
        u[0] = _mm512_shuffle_ps(tt[0], tt[2], _MM_SHUFFLE(1, 0, 1, 0));
        u[1] = _mm512_shuffle_ps(tt[0], tt[2], _MM_SHUFFLE(3, 2, 3, 2));
        u[2] = _mm512_shuffle_ps(tt[1], tt[3], _MM_SHUFFLE(1, 0, 1, 0));
        u[3] = _mm512_shuffle_ps(tt[1], tt[3], _MM_SHUFFLE(3, 2, 3, 2));
      }
      // Column 4L + k gathers lane L of r[k], r[4 + k], r[8 + k], r[12 + k].
      for (int k = 0; k < 4; ++k) {
        const __m512 a = _mm512_shuffle_f32x4(r[k], r[4 + k], 0x88);
        const __m512 b = _mm512_shuffle_f32x4(r[8 + k], r[12 + k], 0x88);
        const __m512 e = _mm512_shuffle_f32x4(r[k], r[4 + k], 0xDD);
        const __m512 f = _mm512_shuffle_f32x4(r[8 + k], r[12 + k], 0xDD);
        t[k] = _mm512_shuffle_f32x4(a, b, 0x88);
        t[8 + k] = _mm512_shuffle_f32x4(a, b, 0xDD);
        t[4 + k] = _mm512_shuffle_f32x4(e, f, 0x88);
        t[12 + k] = _mm512_shuffle_f32x4(e, f, 0xDD);
      }
      for (int64_t i = 0; i < cols; ++i) _mm512_storeu_ps(dst + (c0 + i) * kBlockK + j0, t[i]);
    }
  }
}
BEAVER_AVX512_CODE_END
#endif

// Copies keys (or values) [j0, j0 + n) of one head, rows `stride` floats apart, transposed.
// Columns up to the next multiple of kTileC are zeroed: the score tiles read them.
inline void load_transposed(const float* src, int64_t stride, int64_t n, int64_t d, float* dst) {
  const int64_t padded_n = std::min(kBlockK, (n + kTileC - 1) / kTileC * kTileC);
#if defined(__x86_64__)
  if (have_avx512()) return load_transposed_avx512(src, stride, n, d, padded_n, dst);
#endif
  for (int64_t jj = 0; jj < n; ++jj) {
    const float* row = src + jj * stride;
    for (int64_t c = 0; c < d; ++c) dst[c * kBlockK + jj] = row[c];
  }
  for (int64_t c = 0; c < d; ++c)
    for (int64_t jj = n; jj < padded_n; ++jj) dst[c * kBlockK + jj] = 0.0f;
}

// The register tiles below are written with GCC/Clang vector extensions (the auto-vectoriser
// does not keep such tiles in registers), for a vector of W floats: kTileR rows by two vectors
// of columns. They are compiled twice: with W = 4 (SSE, the baseline instruction set) and with
// W = 8 for CPUs with AVX2, picked once at run time. Neither build contracts a * b + c into an
// FMA (fp-contract is off for this file, and the AVX2 build does not enable FMA), and each
// element is the same sum in the same order, so both give the same bits. CPUs with AVX-512
// take the FMA tiles further below (32 columns; the P V tile where the head dimension is a
// multiple of 32).
typedef float f32x4 __attribute__((vector_size(16)));
typedef float f32x8 __attribute__((vector_size(32)));
template <typename V>
inline __attribute__((always_inline)) V loadv(const float* p) {
  V v;
  std::memcpy(&v, p, sizeof(v));
  return v;
}
template <typename V>
inline __attribute__((always_inline)) void storev(float* p, V v) {
  std::memcpy(p, &v, sizeof(v));
}

// s[r * kBlockK + jj] = q_r · k_jj for rows r < nr and keys jj < nk (the last tile may write
// up to the next multiple of 2W columns, which load_transposed zeroed). Tiles of kTileR rows ×
// 2W keys stay in registers while c runs; every element is one sum over c in order, the same
// as block_scores.
template <typename V>
inline __attribute__((always_inline)) void tile_scores_w(const float* q, int64_t q_stride,
                                                         int64_t nr, const float* kt, int64_t nk,
                                                         int64_t d, float* s) {
  constexpr int64_t W = sizeof(V) / sizeof(float);
  static_assert(kTileR == 4, "the tiles below are written out for 4 rows");
  int64_t r0 = 0;
  for (; r0 + kTileR <= nr; r0 += kTileR) {
    const float* q0 = q + r0 * q_stride;
    const float* q1 = q0 + q_stride;
    const float* q2 = q1 + q_stride;
    const float* q3 = q2 + q_stride;
    for (int64_t j0 = 0; j0 < nk; j0 += 2 * W) {
      V t00{}, t01{}, t10{}, t11{}, t20{}, t21{}, t30{}, t31{};
      for (int64_t c = 0; c < d; ++c) {
        const V k0 = loadv<V>(kt + c * kBlockK + j0), k1 = loadv<V>(kt + c * kBlockK + j0 + W);
        t00 += q0[c] * k0;
        t01 += q0[c] * k1;
        t10 += q1[c] * k0;
        t11 += q1[c] * k1;
        t20 += q2[c] * k0;
        t21 += q2[c] * k1;
        t30 += q3[c] * k0;
        t31 += q3[c] * k1;
      }
      float* s0 = s + r0 * kBlockK + j0;
      storev(s0, t00);
      storev(s0 + W, t01);
      storev(s0 + kBlockK, t10);
      storev(s0 + kBlockK + W, t11);
      storev(s0 + 2 * kBlockK, t20);
      storev(s0 + 2 * kBlockK + W, t21);
      storev(s0 + 3 * kBlockK, t30);
      storev(s0 + 3 * kBlockK + W, t31);
    }
  }
  for (; r0 < nr; ++r0) block_scores(q + r0 * q_stride, kt, nk, d, s + r0 * kBlockK);
}

// acc[r][c] += sum over jj < nk, in order, of p[r * kBlockK + jj] * v_jj[c] (rows r < nr;
// v_jj = v + jj * v_stride). Register tiles of kTileR rows × 2W columns.
template <typename V>
inline __attribute__((always_inline)) void tile_pv_w(const float* p, int64_t prs, int64_t pcs,
                                                     int64_t nr, int64_t nk, const float* v,
                                                     int64_t v_stride, int64_t d, float* acc) {
  constexpr int64_t W = sizeof(V) / sizeof(float);
  const int64_t dfull = d / (2 * W) * (2 * W);
  int64_t r0 = 0;
  for (; r0 + kTileR <= nr; r0 += kTileR) {
    const float* p0 = p + r0 * prs;
    const float* p1 = p0 + prs;
    const float* p2 = p1 + prs;
    const float* p3 = p2 + prs;
    for (int64_t c0 = 0; c0 < dfull; c0 += 2 * W) {
      float* a0 = acc + r0 * d + c0;
      float* a1 = a0 + d;
      float* a2 = a1 + d;
      float* a3 = a2 + d;
      V t00 = loadv<V>(a0), t01 = loadv<V>(a0 + W), t10 = loadv<V>(a1), t11 = loadv<V>(a1 + W);
      V t20 = loadv<V>(a2), t21 = loadv<V>(a2 + W), t30 = loadv<V>(a3), t31 = loadv<V>(a3 + W);
      for (int64_t jj = 0; jj < nk; ++jj) {
        const V v0 = loadv<V>(v + jj * v_stride + c0), v1 = loadv<V>(v + jj * v_stride + c0 + W);
        const float w0 = p0[jj * pcs], w1 = p1[jj * pcs], w2 = p2[jj * pcs], w3 = p3[jj * pcs];
        t00 += w0 * v0;
        t01 += w0 * v1;
        t10 += w1 * v0;
        t11 += w1 * v1;
        t20 += w2 * v0;
        t21 += w2 * v1;
        t30 += w3 * v0;
        t31 += w3 * v1;
      }
      storev(a0, t00);
      storev(a0 + W, t01);
      storev(a1, t10);
      storev(a1 + W, t11);
      storev(a2, t20);
      storev(a2 + W, t21);
      storev(a3, t30);
      storev(a3 + W, t31);
    }
    for (int64_t r = r0; r < r0 + kTileR; ++r)
      for (int64_t c = dfull; c < d; ++c) {
        float a = acc[r * d + c];
        for (int64_t jj = 0; jj < nk; ++jj) a += p[r * prs + jj * pcs] * v[jj * v_stride + c];
        acc[r * d + c] = a;
      }
  }
  for (; r0 < nr; ++r0)
    for (int64_t jj = 0; jj < nk; ++jj)
      axpy(acc + r0 * d, v + jj * v_stride, p[r0 * prs + jj * pcs], d);
}

void tile_scores_sse(const float* q, int64_t q_stride, int64_t nr, const float* kt, int64_t nk,
                     int64_t d, float* s) {
  tile_scores_w<f32x4>(q, q_stride, nr, kt, nk, d, s);
}
void tile_pv_sse(const float* p, int64_t prs, int64_t pcs, int64_t nr, int64_t nk,
                 const float* v, int64_t v_stride, int64_t d, float* acc) {
  tile_pv_w<f32x4>(p, prs, pcs, nr, nk, v, v_stride, d, acc);
}
#if defined(__x86_64__) || defined(__i386__)
__attribute__((target("avx2"))) void tile_scores_avx2(const float* q, int64_t q_stride,
                                                      int64_t nr, const float* kt, int64_t nk,
                                                      int64_t d, float* s) {
  tile_scores_w<f32x8>(q, q_stride, nr, kt, nk, d, s);
}
__attribute__((target("avx2"))) void tile_pv_avx2(const float* p, int64_t prs, int64_t pcs,
                                                  int64_t nr, int64_t nk, const float* v,
                                                  int64_t v_stride, int64_t d, float* acc) {
  tile_pv_w<f32x8>(p, prs, pcs, nr, nk, v, v_stride, d, acc);
}
// The AVX-512 tiles fuse each product into its sum (FMA: one rounding per term instead of two),
// in every row of a block alike: R rows at a time, the last rows of a block one at a time with
// the same per-element sequence, so a row's values do not depend on the rows beside it (a
// decode step, one row, gives the prefill's bits). They differ from the SSE and AVX2 tiles in
// the last bits.
template <int R>
__attribute__((target("avx512f,fma"), always_inline)) inline void scores_rows_avx512(
    const float* q, int64_t q_stride, const float* kt, int64_t nk, int64_t d, float* s) {
  for (int64_t j0 = 0; j0 < nk; j0 += 32) {
    __m512 t0[R], t1[R];
    for (int r = 0; r < R; ++r) t0[r] = t1[r] = _mm512_setzero_ps();
    for (int64_t c = 0; c < d; ++c) {
      const __m512 k0 = _mm512_loadu_ps(kt + c * kBlockK + j0);
      const __m512 k1 = _mm512_loadu_ps(kt + c * kBlockK + j0 + 16);
      for (int r = 0; r < R; ++r) {
        const __m512 qv = _mm512_set1_ps(q[r * q_stride + c]);
        t0[r] = _mm512_fmadd_ps(qv, k0, t0[r]);
        t1[r] = _mm512_fmadd_ps(qv, k1, t1[r]);
      }
    }
    for (int r = 0; r < R; ++r) {
      _mm512_storeu_ps(s + r * kBlockK + j0, t0[r]);
      _mm512_storeu_ps(s + r * kBlockK + j0 + 16, t1[r]);
    }
  }
}
__attribute__((target("avx512f,fma"))) void tile_scores_avx512(const float* q, int64_t q_stride,
                                                              int64_t nr, const float* kt,
                                                              int64_t nk, int64_t d, float* s) {
  int64_t r0 = 0;
  for (; r0 + kTileR <= nr; r0 += kTileR)
    scores_rows_avx512<kTileR>(q + r0 * q_stride, q_stride, kt, nk, d, s + r0 * kBlockK);
  for (; r0 < nr; ++r0) scores_rows_avx512<1>(q + r0 * q_stride, q_stride, kt, nk, d, s + r0 * kBlockK);
}
// d a multiple of 32.
template <int R>
__attribute__((target("avx512f,fma"), always_inline)) inline void pv_rows_avx512(
    const float* p, int64_t prs, int64_t pcs, int64_t nk, const float* v, int64_t v_stride,
    int64_t d, float* acc) {
  for (int64_t c0 = 0; c0 < d; c0 += 32) {
    __m512 t0[R], t1[R];
    for (int r = 0; r < R; ++r) {
      t0[r] = _mm512_loadu_ps(acc + r * d + c0);
      t1[r] = _mm512_loadu_ps(acc + r * d + c0 + 16);
    }
    for (int64_t jj = 0; jj < nk; ++jj) {
      const __m512 v0 = _mm512_loadu_ps(v + jj * v_stride + c0);
      const __m512 v1 = _mm512_loadu_ps(v + jj * v_stride + c0 + 16);
      for (int r = 0; r < R; ++r) {
        const __m512 pv = _mm512_set1_ps(p[r * prs + jj * pcs]);
        t0[r] = _mm512_fmadd_ps(pv, v0, t0[r]);
        t1[r] = _mm512_fmadd_ps(pv, v1, t1[r]);
      }
    }
    for (int r = 0; r < R; ++r) {
      _mm512_storeu_ps(acc + r * d + c0, t0[r]);
      _mm512_storeu_ps(acc + r * d + c0 + 16, t1[r]);
    }
  }
}
__attribute__((target("avx512f,fma"))) void tile_pv_avx512(const float* p, int64_t prs,
                                                          int64_t pcs, int64_t nr, int64_t nk,
                                                          const float* v, int64_t v_stride,
                                                          int64_t d, float* acc) {
  int64_t r0 = 0;
  for (; r0 + kTileR <= nr; r0 += kTileR)
    pv_rows_avx512<kTileR>(p + r0 * prs, prs, pcs, nk, v, v_stride, d, acc + r0 * d);
  for (; r0 < nr; ++r0)
    pv_rows_avx512<1>(p + r0 * prs, prs, pcs, nk, v, v_stride, d, acc + r0 * d);
}
bool have_avx2() {
  static const bool yes = __builtin_cpu_supports("avx2");
  return yes;
}
bool have_avx512() {
  static const bool yes = __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("fma");
  return yes;
}
#else
bool have_avx2() { return false; }
bool have_avx512() { return false; }
#endif

// The tiles for nr rows, dispatched to the CPU's widest build. Causal trimming: with
// causal = c, row r of the call needs only the first c + r keys (scores) or terms (P V, whose
// P is 0 beyond them); the rows go in groups of kTileR, each group only as far as its last row
// needs. A score column a group does not need is left as it was; a P V term skipped is an exact
// zero (acc + 0 · v = acc), so the sums are the untrimmed ones. kNoCausal: every row needs all.
constexpr int64_t kNoCausal = std::numeric_limits<int64_t>::max() / 4;
void tile_scores_rows(const float* q, int64_t q_stride, int64_t nr, const float* kt, int64_t nk,
                      int64_t d, float* s) {
#if defined(__x86_64__) || defined(__i386__)
  if (have_avx512()) return tile_scores_avx512(q, q_stride, nr, kt, nk, d, s);
  if (have_avx2()) return tile_scores_avx2(q, q_stride, nr, kt, nk, d, s);
#endif
  tile_scores_sse(q, q_stride, nr, kt, nk, d, s);
}
void tile_pv_rows(const float* p, int64_t prs, int64_t pcs, int64_t nr, int64_t nk,
                  const float* v, int64_t v_stride, int64_t d, float* acc) {
#if defined(__x86_64__) || defined(__i386__)
  if (d % 32 == 0 && have_avx512())
    return tile_pv_avx512(p, prs, pcs, nr, nk, v, v_stride, d, acc);
  if (have_avx2()) return tile_pv_avx2(p, prs, pcs, nr, nk, v, v_stride, d, acc);
#endif
  tile_pv_sse(p, prs, pcs, nr, nk, v, v_stride, d, acc);
}
void tile_scores(const float* q, int64_t q_stride, int64_t nr, const float* kt, int64_t nk,
                 int64_t d, float* s, int64_t causal = kNoCausal) {
  if (causal >= nk) return tile_scores_rows(q, q_stride, nr, kt, nk, d, s);
  for (int64_t r0 = 0; r0 < nr; r0 += kTileR) {
    const int64_t rows = std::min(kTileR, nr - r0);
    const int64_t need = std::min(nk, causal + r0 + rows - 1);
    if (need > 0)
      tile_scores_rows(q + r0 * q_stride, q_stride, rows, kt, need, d, s + r0 * kBlockK);
  }
}
void tile_pv(const float* p, int64_t nr, int64_t nk, const float* v, int64_t v_stride,
             int64_t d, float* acc, int64_t causal = kNoCausal) {
  if (causal >= nk) return tile_pv_rows(p, kBlockK, 1, nr, nk, v, v_stride, d, acc);
  for (int64_t r0 = 0; r0 < nr; r0 += kTileR) {
    const int64_t rows = std::min(kTileR, nr - r0);
    const int64_t need = std::min(nk, causal + r0 + rows - 1);
    if (need > 0)
      tile_pv_rows(p + r0 * kBlockK, kBlockK, 1, rows, need, v, v_stride, d, acc + r0 * d);
  }
}
// acc[r][c] += sum over jj < nk, in order, of p[jj * kBlockK + r] * v_jj[c]: the P V tile with
// P read transposed (Pᵀ dO and dSᵀ Q of the backward, from P and dS stored row by row).
void tile_ptv(const float* p, int64_t nr, int64_t nk, const float* v, int64_t v_stride,
              int64_t d, float* acc) {
  tile_pv_rows(p, 1, kBlockK, nr, nk, v, v_stride, d, acc);
}

// The forward for query rows r = 0..nrows-1 of one (sequence, head) at positions
// first + r: row r attends to keys [kbegin, first + r]. Rows are q + r * q_stride and
// out + r * out_stride; keys/values of the head are k/v + j * kv_stride (j = position).
// Keys go in blocks of kBlockK from kbegin: a score tile S = Q Kᵀ, the online softmax per row
// (running max m, running sum l, rescaled accumulator; masked keys get P = 0), then
// acc += P V. lse (optional) gets m + log(l) per row, contiguous. Its softmax loops run in the
// widest clone the CPU has (cpu_clones.h; fp-contract is off here, so every clone gives the
// same bits). Scratch: attend_scratch(nrows, d) floats.
size_t attend_scratch(int64_t nrows, int64_t d) {
  return size_t(d * kBlockK + nrows * kBlockK + nrows * d + 2 * nrows);
}
BEAVER_CPU_CLONES void attend_rows(const float* q, int64_t q_stride, int64_t nrows,
                                   int64_t first, const float* k, const float* v,
                                   int64_t kv_stride, int64_t kbegin, float scale, int64_t d,
                                   float* out, int64_t out_stride, float* lse, float* scratch) {
  float* kt = scratch;
  float* s = kt + d * kBlockK;
  float* acc = s + nrows * kBlockK;
  float* m = acc + nrows * d;
  float* l = m + nrows;
  for (int64_t r = 0; r < nrows; ++r) {
    m[r] = -std::numeric_limits<float>::infinity();
    l[r] = 0.0f;
  }
  std::fill(acc, acc + nrows * d, 0.0f);
  const int64_t last = first + nrows - 1;
  for (int64_t j0 = kbegin; j0 <= last; j0 += kBlockK) {
    const int64_t nb = std::min(kBlockK, last + 1 - j0);
    // Rows before j0 see none of this block: only rows [r_lo, nrows) take part.
    const int64_t r_lo = std::max<int64_t>(0, j0 - first);
    load_transposed(k + j0 * kv_stride, kv_stride, nb, d, kt);
    // Row r_lo + i sees the first first + r_lo + 1 - j0 + i keys of the block.
    const int64_t causal = first + r_lo + 1 - j0;
    tile_scores(q + r_lo * q_stride, q_stride, nrows - r_lo, kt, nb, d, s + r_lo * kBlockK,
                causal);
    for (int64_t r = r_lo; r < nrows; ++r) {
      const int64_t n = std::min(nb, first + r + 1 - j0);  // causal: keys <= this query
      float* sr = s + r * kBlockK;
      float mx = m[r];
      for (int64_t jj = 0; jj < n; ++jj) {
        sr[jj] *= scale;
        mx = std::max(mx, sr[jj]);
      }
      const float alpha = exp_f32(m[r] - mx);  // 0 on the first block (m = -inf)
      float sum = 0.0f;
      for (int64_t jj = 0; jj < n; ++jj) {
        sr[jj] = exp_f32(sr[jj] - mx);
        sum += sr[jj];
      }
      for (int64_t jj = n; jj < nb; ++jj) sr[jj] = 0.0f;
      l[r] = l[r] * alpha + sum;
      m[r] = mx;
      float* a = acc + r * d;
      for (int64_t c = 0; c < d; ++c) a[c] *= alpha;
    }
    tile_pv(s + r_lo * kBlockK, nrows - r_lo, nb, v + j0 * kv_stride, kv_stride, d,
            acc + r_lo * d, causal);
  }
  for (int64_t r = 0; r < nrows; ++r) {
    const float inv = 1.0f / l[r];
    const float* a = acc + r * d;
    float* o = out + r * out_stride;
    for (int64_t c = 0; c < d; ++c) o[c] = a[c] * inv;
    if (lse) lse[r] = m[r] + std::log(l[r]);
  }
}

// The backward's softmax gradient for one query row of a key block: from its scores s and
// dP = dO Vᵀ (dp), P = exp(scale · s - lse) and dS = P (dP - D) for the n keys it sees, 0 for
// the masked rest up to nb; P goes to p (when given) and dS to ds, which may be s and dp
// themselves (each element is read before it is written).
BEAVER_CPU_CLONES void dsoftmax_row(const float* s, const float* dp, int64_t n, int64_t nb,
                                    float scale, float L, float Di, float* p, float* ds) {
  for (int64_t jj = 0; jj < n; ++jj) {
    const float pv = exp_f32(scale * s[jj] - L);
    const float g = pv * (dp[jj] - Di);
    if (p) p[jj] = pv;
    ds[jj] = g;
  }
  for (int64_t jj = n; jj < nb; ++jj) {
    if (p) p[jj] = 0.0f;
    ds[jj] = 0.0f;
  }
}

}  // namespace

void attention_fwd(Context& ctx, const Tensor& q, const Tensor& k, const Tensor& v,
                   const Tensor& ranges, float scale, const Tensor& out, const Tensor& lse) {
  require_f32(q, "attention_fwd", "q");
  const int64_t B = q.size(0), S = q.size(1), nh = q.size(2), d = q.size(3), nkv = k.size(2);
  const int64_t group = nh / nkv;
  const float* qp = q.ptr<float>();
  const float* kp = k.ptr<float>();
  const float* vp = v.ptr<float>();
  float* op = out.ptr<float>();
  float* lp = lse.ptr<float>();
  const int32_t* rg = ranges.ptr<int32_t>();
  const int64_t nqb = (S + kBlockQ - 1) / kBlockQ;
  const int64_t tasks = B * nh * nqb;
  const size_t per = padded(attend_scratch(kBlockQ, d));
  float* scratch = thread_scratch(ctx, per, 0, nullptr);

  DynamicCounter next_task;
  parallel_region(ctx.threads(), true, [&](int tid, int nthreads) {
    // Rows outside [begin, end): out = 0, lse = 0 (disjoint from what the tasks write).
    const auto [r0, r1] = static_part(B * S, tid, nthreads);
    for (int64_t bi = r0; bi < r1; ++bi) {
      const int64_t b = bi / S, i = bi % S;
      if (i >= rg[2 * b] && i < rg[2 * b + 1]) continue;
      std::fill(op + bi * nh * d, op + (bi + 1) * nh * d, 0.0f);
      for (int64_t h = 0; h < nh; ++h) lp[(b * nh + h) * S + i] = 0.0f;
    }
    float* mine = scratch + per * size_t(tid);
    // Later query blocks attend to more keys: hand them out first for balance.
    for_dynamic(next_task, tasks, [&](int64_t t) {
      const int64_t qb = nqb - 1 - t % nqb, bh = t / nqb, b = bh / nh, h = bh % nh;
      const int64_t begin = rg[2 * b], end = rg[2 * b + 1];
      const int64_t i0 = begin + qb * kBlockQ;
      if (i0 >= end) return;
      const int64_t rows = std::min(kBlockQ, end - i0), g = h / group;
      const int64_t qoff = ((b * S + i0) * nh + h) * d;
      const int64_t kvoff = (b * S * nkv + g) * d;
      attend_rows(qp + qoff, nh * d, rows, i0, kp + kvoff, vp + kvoff, nkv * d, begin, scale, d,
                  op + qoff, nh * d, lp + (b * nh + h) * S + i0, mine);
    });
  });
}

void attention_bwd(Context& ctx, const Tensor& q, const Tensor& k, const Tensor& v,
                   const Tensor& out, const Tensor& dout, const Tensor& lse,
                   const Tensor& ranges, float scale, const Tensor& dq, const Tensor& dk,
                   const Tensor& dv) {
  require_f32(q, "attention_bwd", "q");
  const int64_t B = q.size(0), S = q.size(1), nh = q.size(2), d = q.size(3), nkv = k.size(2);
  const int64_t group = nh / nkv;
  const float* qp = q.ptr<float>();
  const float* kp = k.ptr<float>();
  const float* vp = v.ptr<float>();
  const float* outp = out.ptr<float>();
  const float* dop = dout.ptr<float>();
  const float* lp = lse.ptr<float>();
  float* dqp = dq.ptr<float>();
  float* dkp = dk.ptr<float>();
  float* dvp = dv.ptr<float>();
  const int32_t* rg = ranges.ptr<int32_t>();

  // Tasks [0, n_kv): (b, kv head, key block) own rows of dk/dv; tasks [n_kv, n_kv + n_q):
  // (b, head, query block) own rows of dq.
  const int64_t nkb = (S + kBlockK - 1) / kBlockK, nqb = (S + kBlockQ - 1) / kBlockQ;
  const int64_t n_kv = B * nkv * nkb, n_q = B * nh * nqb;
  const int64_t accrows = std::max(kBlockK, kBlockQ);
  const size_t per = padded(size_t(2 * d * kBlockK + 2 * kBlockQ * kBlockK + 2 * accrows * d));
  float* D = nullptr;  // D[b, h, i] = rowsum(dout * out), laid out like lse
  float* scratch = thread_scratch(ctx, per, size_t(B * nh * S), &D);

  DynamicCounter next_task;
  parallel_region(ctx.threads(), true, [&](int tid, int nthreads) {
    const auto [r0, r1] = static_part(B * S, tid, nthreads);
    for (int64_t bi = r0; bi < r1; ++bi) {
      const int64_t b = bi / S, i = bi % S;
      if (i >= rg[2 * b] && i < rg[2 * b + 1]) {
        for (int64_t h = 0; h < nh; ++h) {
          const float* o = outp + (bi * nh + h) * d;
          const float* g = dop + (bi * nh + h) * d;
          float acc = 0.0f;
          for (int64_t c = 0; c < d; ++c) acc += o[c] * g[c];
          D[(b * nh + h) * S + i] = acc;
        }
      } else {  // outside the range: no gradient
        std::fill(dqp + bi * nh * d, dqp + (bi + 1) * nh * d, 0.0f);
        std::fill(dkp + bi * nkv * d, dkp + (bi + 1) * nkv * d, 0.0f);
        std::fill(dvp + bi * nkv * d, dvp + (bi + 1) * nkv * d, 0.0f);
      }
    }
    // Every thread's D is published before any task reads it.
#pragma omp barrier
    float* kt = scratch + per * size_t(tid);
    float* vt = kt + d * kBlockK;
    float* s = vt + d * kBlockK;       // scores, then P or dS   [query][key]
    float* dp = s + kBlockQ * kBlockK;  // dP = dO Vᵀ, then dS    [query][key]
    float* acc1 = dp + kBlockQ * kBlockK;
    float* acc2 = acc1 + accrows * d;

    for_dynamic(next_task, n_kv + n_q, [&](int64_t t) {
      if (t < n_kv) {
        // dk, dv for keys [j0, j0 + nb) of kv head g: the group's query heads in order, then
        // the queries that see these keys in blocks, in order.
        const int64_t kb = t % nkb, bg = t / nkb, b = bg / nkv, g = bg % nkv;
        const int64_t begin = rg[2 * b], end = rg[2 * b + 1];
        const int64_t j0 = begin + kb * kBlockK;
        if (j0 >= end) return;
        const int64_t nb = std::min(kBlockK, end - j0);
        const int64_t kvoff = ((b * S + j0) * nkv + g) * d;
        load_transposed(kp + kvoff, nkv * d, nb, d, kt);
        load_transposed(vp + kvoff, nkv * d, nb, d, vt);
        float* dK = acc1;
        float* dV = acc2;
        std::fill(dK, dK + nb * d, 0.0f);
        std::fill(dV, dV + nb * d, 0.0f);
        for (int64_t h = g * group; h < (g + 1) * group; ++h) {
          for (int64_t i0 = j0; i0 < end; i0 += kBlockQ) {
            const int64_t rows = std::min(kBlockQ, end - i0);
            const int64_t qoff = ((b * S + i0) * nh + h) * d;
            // Query i0 + r sees the first i0 + r + 1 - j0 keys of the block.
            tile_scores(qp + qoff, nh * d, rows, kt, nb, d, s, i0 + 1 - j0);
            tile_scores(dop + qoff, nh * d, rows, vt, nb, d, dp, i0 + 1 - j0);
            // P over s and dS over dp, row by row (causally masked keys: 0, no contribution).
            for (int64_t r = 0; r < rows; ++r) {
              const int64_t i = i0 + r, n = std::min(nb, i + 1 - j0);  // n >= 1: i >= j0
              dsoftmax_row(s + r * kBlockK, dp + r * kBlockK, n, nb, scale,
                           lp[(b * nh + h) * S + i], D[(b * nh + h) * S + i], s + r * kBlockK,
                           dp + r * kBlockK);
            }
            tile_ptv(s, nb, rows, dop + qoff, nh * d, d, dV);  // dV += Pᵀ dO
            tile_ptv(dp, nb, rows, qp + qoff, nh * d, d, dK);  // dK += dSᵀ Q (scaled below)
          }
        }
        for (int64_t jj = 0; jj < nb; ++jj) {
          float* dko = dkp + kvoff + jj * nkv * d;
          float* dvo = dvp + kvoff + jj * nkv * d;
          for (int64_t c = 0; c < d; ++c) dko[c] = scale * dK[jj * d + c];
          for (int64_t c = 0; c < d; ++c) dvo[c] = dV[jj * d + c];
        }
      } else {
        // dq for queries [i0, i0 + rows) of head h: key blocks in order.
        const int64_t u = t - n_kv;
        const int64_t qb = u % nqb, bh = u / nqb, b = bh / nh, h = bh % nh, g = h / group;
        const int64_t begin = rg[2 * b], end = rg[2 * b + 1];
        const int64_t i0 = begin + qb * kBlockQ;
        if (i0 >= end) return;
        const int64_t rows = std::min(kBlockQ, end - i0), last = i0 + rows - 1;
        const int64_t qoff = ((b * S + i0) * nh + h) * d;
        float* dQ = acc1;
        std::fill(dQ, dQ + rows * d, 0.0f);
        for (int64_t j0 = begin; j0 <= last; j0 += kBlockK) {
          const int64_t nb = std::min(kBlockK, last + 1 - j0);
          const int64_t r_lo = std::max<int64_t>(0, j0 - i0);  // earlier rows see no key here
          const int64_t kvoff = ((b * S + j0) * nkv + g) * d;
          load_transposed(kp + kvoff, nkv * d, nb, d, kt);
          load_transposed(vp + kvoff, nkv * d, nb, d, vt);
          const int64_t causal = i0 + r_lo + 1 - j0;  // keys row r_lo sees in this block
          tile_scores(qp + qoff + r_lo * nh * d, nh * d, rows - r_lo, kt, nb, d,
                      s + r_lo * kBlockK, causal);
          tile_scores(dop + qoff + r_lo * nh * d, nh * d, rows - r_lo, vt, nb, d,
                      dp + r_lo * kBlockK, causal);
          for (int64_t r = r_lo; r < rows; ++r) {  // dS over s
            const int64_t i = i0 + r, n = std::min(nb, i + 1 - j0);
            dsoftmax_row(s + r * kBlockK, dp + r * kBlockK, n, nb, scale,
                         lp[(b * nh + h) * S + i], D[(b * nh + h) * S + i], nullptr,
                         s + r * kBlockK);
          }
          // dQ += dS K (scaled below)
          tile_pv(s + r_lo * kBlockK, rows - r_lo, nb, kp + kvoff, nkv * d, d, dQ + r_lo * d,
                  causal);
        }
        for (int64_t r = 0; r < rows; ++r) {
          float* o = dqp + ((b * S + i0 + r) * nh + h) * d;
          for (int64_t c = 0; c < d; ++c) o[c] = scale * dQ[r * d + c];
        }
      }
    });
  });
}

void decode_attention(Context& ctx, const Tensor& q, const Tensor& k_cache,
                      const Tensor& v_cache, const Tensor& ranges, float scale,
                      const Tensor& out) {
  require_f32(q, "decode_attention", "q");
  const int64_t B = q.size(0), nh = q.size(1), d = q.size(2);
  const int64_t Smax = k_cache.size(1), nkv = k_cache.size(2), group = nh / nkv;
  const float* qp = q.ptr<float>();
  const float* kp = k_cache.ptr<float>();
  const float* vp = v_cache.ptr<float>();
  float* op = out.ptr<float>();
  const int32_t* rg = ranges.ptr<int32_t>();
  const size_t per = padded(attend_scratch(1, d));
  float* scratch = thread_scratch(ctx, per, 0, nullptr);

  parallel_region(ctx.threads(), B * nh > 1, [&](int tid, int nthreads) {
    float* mine = scratch + per * size_t(tid);
    const auto [p0, p1] = static_part(B * nh, tid, nthreads);
    for (int64_t bh = p0; bh < p1; ++bh) {
      const int64_t b = bh / nh, h = bh % nh, g = h / group;
      const int64_t begin = rg[2 * b], end = rg[2 * b + 1];
      if (begin == end) {
        std::fill(op + bh * d, op + (bh + 1) * d, 0.0f);
        continue;
      }
      // The newest token (position end - 1) attends to [begin, end - 1]: the prefill's row.
      const int64_t kvoff = (b * Smax * nkv + g) * d;
      attend_rows(qp + bh * d, d, 1, end - 1, kp + kvoff, vp + kvoff, nkv * d, begin, scale, d,
                  op + bh * d, d, nullptr, mine);
    }
  });
}

void kv_append(Context& ctx, const Tensor& k_new, const Tensor& v_new, const Tensor& k_cache,
               const Tensor& v_cache, const Tensor& pos) {
  // A copy: any element type works, rows are moved as bytes.
  const int64_t B = k_new.size(0), n = k_new.size(1), Smax = k_cache.size(1);
  const size_t row = size_t(k_new.size(2) * k_new.size(3)) * dtype_size(k_new.dtype);
  check_append_rows(pos, n, Smax);  // the twin writes through these offsets: check again
  const int32_t* pp = pos.ptr<int32_t>();
  const auto* kn = static_cast<const char*>(k_new.data);
  const auto* vn = static_cast<const char*>(v_new.data);
  auto* kc = static_cast<char*>(k_cache.data);
  auto* vc = static_cast<char*>(v_cache.data);
  if (n == 0) return;
  parallel_range(ctx.threads(), B, true, [&](int64_t b0, int64_t b1) {
    for (int64_t b = b0; b < b1; ++b) {
      const size_t src = size_t(b * n) * row, dst = size_t(b * Smax + pp[b]) * row;
      std::memcpy(kc + dst, kn + src, size_t(n) * row);
      std::memcpy(vc + dst, vn + src, size_t(n) * row);
    }
  });
}

}  // namespace cpu
}  // namespace beaver::ops
