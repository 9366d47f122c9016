// Global gradient norm, clip coefficient and in-place scaling: argument checks, dispatch, and
// the CPU twin. Determinism: the CPU norm splits every tensor into fixed-size chunks (the split
// depends only on the tensor sizes), reduces each chunk into an fp64 partial with a fixed
// pattern of accumulators, and sums the partials in chunk order on one thread. The threads
// only decide who computes which partial, never the order of the additions, so the bits are the
// same for any thread count.
#include "csrc/ops/gradnorm.h"

#include <algorithm>
#include <cmath>
#include <vector>

#include "csrc/ops/cpu_threads.h"
#include "csrc/ops/dispatch.h"

namespace beaver::ops {
namespace {

void check_grads(const Context& ctx, std::span<const Tensor> grads, std::string_view op) {
  for (size_t i = 0; i < grads.size(); ++i) {
    const Tensor& g = grads[i];
    // The name is built (an allocation) only for a tensor that fails a check below.
    const bool ok = !(g.data == nullptr && g.numel() != 0) &&
                    (g.dtype == DType::F32 || g.dtype == DType::BF16) &&
                    (g.data == nullptr || g.device == ctx.device());
    if (ok) continue;
    const std::string name = cat("grads[", i, "]");
    expect_defined(g, op, name);
    if (g.dtype != DType::F32 && g.dtype != DType::BF16)
      BEAVER_FAIL(op, ": ", name, " has dtype ", dtype_name(g.dtype),
                  " but expected f32 or bf16");
    expect_on(ctx, {&g}, op);
  }
}

void check_scalar(const Context& ctx, const Tensor& t, std::string_view op,
                  std::string_view name) {
  expect_defined(t, op, name);
  expect_shape(t, Shape{1}, op, name);
  expect_dtype(t, DType::F32, op, name);
  expect_on(ctx, {&t}, op);
}

void check_max_norm(float max_norm, std::string_view op) {
  BEAVER_CHECK(max_norm > 0.0f && std::isfinite(max_norm), op,
               ": max_norm must be finite and > 0, got ", max_norm);
}

}  // namespace

void grad_norm(Context& ctx, std::span<const Tensor> grads, const Tensor& norm) {
  check_grads(ctx, grads, "grad_norm");
  check_scalar(ctx, norm, "grad_norm", "norm");
  BEAVER_DISPATCH(ctx, grad_norm, ctx, grads, norm);
}

void clip_coef(Context& ctx, const Tensor& norm, float max_norm, const Tensor& coef) {
  check_scalar(ctx, norm, "clip_coef", "norm");
  check_scalar(ctx, coef, "clip_coef", "coef");
  check_max_norm(max_norm, "clip_coef");
  BEAVER_DISPATCH(ctx, clip_coef, ctx, norm, max_norm, coef);
}

void scale_by(Context& ctx, std::span<const Tensor> grads, const Tensor& coef) {
  check_grads(ctx, grads, "scale_by");
  check_scalar(ctx, coef, "scale_by", "coef");
  BEAVER_DISPATCH(ctx, scale_by, ctx, grads, coef);
}

void clip_grad_norm(Context& ctx, std::span<const Tensor> grads, float max_norm,
                    const Tensor& norm, const Tensor& coef, bool apply) {
  // All checks first, so a bad argument leaves the gradients untouched.
  check_grads(ctx, grads, "clip_grad_norm");
  check_scalar(ctx, norm, "clip_grad_norm", "norm");
  check_scalar(ctx, coef, "clip_grad_norm", "coef");
  check_max_norm(max_norm, "clip_grad_norm");
  BEAVER_DISPATCH(ctx, grad_norm, ctx, grads, norm);
  BEAVER_DISPATCH(ctx, clip_coef, ctx, norm, max_norm, coef);
  if (apply) BEAVER_DISPATCH(ctx, scale_by, ctx, grads, coef);
}

namespace cpu {
namespace {

// Elements per partial sum: the unit of work and of the fixed summation order.
constexpr int64_t kChunk = 1 << 14;
// Independent accumulators inside a chunk (a fixed interleave the compiler can vectorise).
constexpr int kLanes = 8;

struct Chunk {
  float* p;
  int64_t n;
};

double chunk_sumsq(const float* p, int64_t n) {
  double acc[kLanes] = {};
  int64_t i = 0;
  for (; i + kLanes <= n; i += kLanes)
    for (int k = 0; k < kLanes; ++k) acc[k] += double(p[i + k]) * double(p[i + k]);
  for (int k = 0; i < n; ++i, ++k) acc[k] += double(p[i]) * double(p[i]);
  double s = 0.0;
  for (double a : acc) s += a;
  return s;
}

// The chunk list and partial sums of the last call, kept in the context so that a training
// loop (the same tensors every step) allocates them once.
struct ChunkScratch {
  std::vector<Chunk> chunks;
  std::vector<double> partial;
};

void require_f32(std::span<const Tensor> grads, std::string_view op) {
  for (size_t i = 0; i < grads.size(); ++i)
    if (grads[i].dtype != DType::F32)
      expect_dtype(grads[i], DType::F32, op, cat("grads[", i, "] (CPU backend)"));
}

std::vector<Chunk>& chunk_list(Context& ctx, std::span<const Tensor> grads) {
  std::vector<Chunk>& chunks = ctx.backend_cache<ChunkScratch>().chunks;
  chunks.clear();  // keeps the capacity
  for (const Tensor& g : grads) {
    float* p = g.ptr<float>();
    const int64_t n = g.numel();
    for (int64_t b = 0; b < n; b += kChunk) chunks.push_back({p + b, std::min(kChunk, n - b)});
  }
  return chunks;
}

}  // namespace

void grad_norm(Context& ctx, std::span<const Tensor> grads, const Tensor& norm) {
  require_f32(grads, "grad_norm");
  const std::vector<Chunk>& chunks = chunk_list(ctx, grads);
  std::vector<double>& partial = ctx.backend_cache<ChunkScratch>().partial;
  partial.resize(chunks.size());
  const int64_t nc = int64_t(chunks.size());
  parallel_range(ctx.threads(), nc, true, [&](int64_t c0, int64_t c1) {
    for (int64_t c = c0; c < c1; ++c)
      partial[size_t(c)] = chunk_sumsq(chunks[size_t(c)].p, chunks[size_t(c)].n);
  });
  double total = 0.0;
  for (double s : partial) total += s;
  norm.ptr<float>()[0] = float(std::sqrt(total));
}

void clip_coef(Context& ctx, const Tensor& norm, float max_norm, const Tensor& coef) {
  const float n = norm.ptr<float>()[0];
  const float c = max_norm / (n + 1e-6f);
  // Written so that a NaN norm gives a NaN coefficient (std::min would hide it as 1).
  coef.ptr<float>()[0] = c > 1.0f ? 1.0f : c;
}

void scale_by(Context& ctx, std::span<const Tensor> grads, const Tensor& coef) {
  require_f32(grads, "scale_by");
  const float c = coef.ptr<float>()[0];
  // One parallel loop over the chunks of all tensors (many small tensors, one fork/join).
  const std::vector<Chunk>& chunks = chunk_list(ctx, grads);
  const int64_t nc = int64_t(chunks.size());
  parallel_range(ctx.threads(), nc, true, [&](int64_t k0, int64_t k1) {
    for (int64_t k = k0; k < k1; ++k) {
      float* p = chunks[size_t(k)].p;
      for (int64_t i = 0; i < chunks[size_t(k)].n; ++i) p[i] *= c;
    }
  });
}

}  // namespace cpu
}  // namespace beaver::ops
