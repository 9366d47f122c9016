// Log-softmax + gather and token cross-entropy: argument checks, dispatch, and the CPU twin.
// The CPU twin makes one pass per row for the max and the sum (online: the row is walked in
// L1-sized blocks, each block's max rescales the running sum once), so the logits are read
// from memory once in the forward; the backward reads each logit once and writes dlogits in
// place of it when they alias. Rows run in parallel (static schedule, so each row's arithmetic
// is the same whatever the thread count).
#include "csrc/ops/logprob.h"

#include <algorithm>
#include <cmath>
#include <limits>

#include "csrc/ops/cpu_exp.h"
#include "csrc/ops/cpu_threads.h"
#include "csrc/ops/dispatch.h"

namespace beaver::ops {
namespace {

// Logits are [..., V]; per-row tensors are [T] or the leading dims of the logits.
void expect_rows(const Tensor& t, const Tensor& logits, std::string_view op,
                 std::string_view name) {
  expect_defined(t, op, name);
  const int64_t rows = logits.numel() / std::max<int64_t>(logits.size(-1), 1);
  Shape lead = logits.shape;
  lead.rank -= 1;
  if (t.shape == lead || t.shape == Shape{rows}) return;
  BEAVER_FAIL(op, ": ", name, " has shape ", t.shape.str(), " but expected ", lead.str(),
              " (one value per row of logits ", logits.shape.str(), ")");
}

void check_logits(const Context& ctx, const Tensor& logits, const Tensor& targets,
                  std::string_view op) {
  expect_defined(logits, op, "logits");
  BEAVER_CHECK(logits.rank() >= 1, op, ": logits must have rank >= 1, got ", logits.str());
  BEAVER_CHECK(logits.size(-1) >= 1, op, ": logits need a vocabulary of at least one, got ",
               logits.str());
  BEAVER_CHECK(is_float(logits.dtype), op, ": logits must be a float tensor, got ",
               logits.str());
  expect_rows(targets, logits, op, "targets");
  expect_dtype(targets, DType::I32, op, "targets");
}

void check_fwd(const Context& ctx, const Tensor& logits, const Tensor& targets,
               const Tensor& out, const Tensor& lse, std::string_view op,
               std::string_view out_name) {
  check_logits(ctx, logits, targets, op);
  expect_rows(out, logits, op, out_name);
  expect_dtype(out, DType::F32, op, out_name);
  expect_rows(lse, logits, op, "lse");
  expect_dtype(lse, DType::F32, op, "lse");
  expect_on(ctx, {&logits, &targets, &out, &lse}, op);
}

void check_bwd(const Context& ctx, const Tensor& logits, const Tensor& targets,
               const Tensor& lse, const Tensor& dout, const Tensor& dlogits,
               std::string_view op, std::string_view dout_name) {
  check_logits(ctx, logits, targets, op);
  expect_rows(lse, logits, op, "lse");
  expect_dtype(lse, DType::F32, op, "lse");
  expect_rows(dout, logits, op, dout_name);
  expect_dtype(dout, DType::F32, op, dout_name);
  expect_defined(dlogits, op, "dlogits");
  expect_shape(dlogits, logits.shape, op, "dlogits");
  expect_dtype(dlogits, logits.dtype, op, "dlogits");
  expect_on(ctx, {&logits, &targets, &lse, &dout, &dlogits}, op);
}

}  // namespace

void logprob_fwd(Context& ctx, const Tensor& logits, const Tensor& targets, const Tensor& logp,
                 const Tensor& lse, int ignore_index) {
  check_fwd(ctx, logits, targets, logp, lse, "logprob_fwd", "logp");
  BEAVER_DISPATCH(ctx, logprob_fwd, ctx, logits, targets, logp, lse, ignore_index, 1.0f);
}

void logprob_bwd(Context& ctx, const Tensor& logits, const Tensor& targets, const Tensor& lse,
                 const Tensor& dlogp, const Tensor& dlogits, int ignore_index) {
  check_bwd(ctx, logits, targets, lse, dlogp, dlogits, "logprob_bwd", "dlogp");
  BEAVER_DISPATCH(ctx, logprob_bwd, ctx, logits, targets, lse, dlogp, dlogits, ignore_index,
                  1.0f);
}

void cross_entropy_fwd(Context& ctx, const Tensor& logits, const Tensor& targets,
                       const Tensor& loss, const Tensor& lse, int ignore_index) {
  check_fwd(ctx, logits, targets, loss, lse, "cross_entropy_fwd", "loss");
  BEAVER_DISPATCH(ctx, logprob_fwd, ctx, logits, targets, loss, lse, ignore_index, -1.0f);
}

void cross_entropy_bwd(Context& ctx, const Tensor& logits, const Tensor& targets,
                       const Tensor& lse, const Tensor& dloss, const Tensor& dlogits,
                       int ignore_index) {
  check_bwd(ctx, logits, targets, lse, dloss, dlogits, "cross_entropy_bwd", "dloss");
  BEAVER_DISPATCH(ctx, logprob_bwd, ctx, logits, targets, lse, dloss, dlogits, ignore_index,
                  -1.0f);
}

namespace cpu {
namespace {

// Rows are validated before the parallel region: an exception cannot leave an OpenMP loop.
void check_targets(const int32_t* tgt, int64_t rows, int64_t V, int ignore_index,
                   std::string_view op) {
  for (int64_t t = 0; t < rows; ++t) {
    const int32_t id = tgt[t];
    if (id == ignore_index) continue;
    if (id < 0 || int64_t(id) >= V)
      BEAVER_FAIL(op, ": target ", id, " at row ", t, " is outside the vocabulary [0, ", V,
                  ") and is not ignore_index (", ignore_index, ")");
  }
}

// Block length of the online pass: small enough to stay in L1 between its two sweeps.
constexpr int64_t kBlock = 1024;
// Independent accumulators (a fixed interleave, so the sum is deterministic and vectorises).
constexpr int kLanes = 8;

float block_max(const float* x, int64_t n) {
  float acc[kLanes];
  for (int k = 0; k < kLanes; ++k) acc[k] = x[0];
  int64_t i = 0;
  for (; i + kLanes <= n; i += kLanes)
    for (int k = 0; k < kLanes; ++k) acc[k] = std::isgreater(acc[k], x[i + k]) ? acc[k] : x[i + k];
  for (; i < n; ++i) acc[0] = std::isgreater(acc[0], x[i]) ? acc[0] : x[i];
  float m = acc[0];
  for (int k = 1; k < kLanes; ++k) m = m > acc[k] ? m : acc[k];
  return m;
}

float block_sumexp(const float* x, int64_t n, float m) {
  float acc[kLanes] = {};
  int64_t i = 0;
  for (; i + kLanes <= n; i += kLanes)
    for (int k = 0; k < kLanes; ++k) acc[k] += exp_f32(x[i + k] - m);
  for (; i < n; ++i) acc[0] += exp_f32(x[i] - m);
  float s = 0.0f;
  for (float a : acc) s += a;
  return s;
}

// log(sum_v exp(x_v)) of one row in one pass over memory. A NaN anywhere reaches the sum
// (exp(NaN) = NaN), so the row's lse is NaN.
float row_logsumexp(const float* x, int64_t V) {
  float m = -std::numeric_limits<float>::infinity();
  float s = 0.0f;
  for (int64_t b = 0; b < V; b += kBlock) {
    const int64_t n = std::min(kBlock, V - b);
    const float bm = block_max(x + b, n);
    if (bm > m) {
      s *= exp_f32(m - bm);  // exp(-inf) = 0 covers the first block
      m = bm;
    }
    if (m == -std::numeric_limits<float>::infinity()) continue;  // all -inf so far
    s += block_sumexp(x + b, n, m);
  }
  return m + std::log(s);
}

}  // namespace

void logprob_fwd(Context& ctx, const Tensor& logits, const Tensor& targets, const Tensor& out,
                 const Tensor& lse, int ignore_index, float sign) {
  const char* op = sign > 0 ? "logprob_fwd" : "cross_entropy_fwd";
  expect_dtype(logits, DType::F32, op, "logits (CPU backend)");
  const int64_t V = logits.size(-1);
  const int64_t rows = logits.numel() / V;
  const float* x = logits.ptr<float>();
  const int32_t* tgt = targets.ptr<int32_t>();
  float* o = out.ptr<float>();
  float* l = lse.ptr<float>();
  check_targets(tgt, rows, V, ignore_index, op);
  parallel_range(ctx.threads(), rows, true, [&](int64_t part_begin, int64_t part_end) {
    for (int64_t t = part_begin; t < part_end; ++t) {
      if (tgt[t] == ignore_index) {
        o[t] = 0.0f;
        l[t] = 0.0f;
        continue;
      }
      const float* row = x + t * V;
      const float z = row_logsumexp(row, V);
      l[t] = z;
      o[t] = sign * (row[tgt[t]] - z);
    }
  });
}

void logprob_bwd(Context& ctx, const Tensor& logits, const Tensor& targets, const Tensor& lse,
                 const Tensor& dout, const Tensor& dlogits, int ignore_index, float sign) {
  const char* op = sign > 0 ? "logprob_bwd" : "cross_entropy_bwd";
  expect_dtype(logits, DType::F32, op, "logits (CPU backend)");
  const int64_t V = logits.size(-1);
  const int64_t rows = logits.numel() / V;
  const float* x = logits.ptr<float>();
  const int32_t* tgt = targets.ptr<int32_t>();
  const float* l = lse.ptr<float>();
  const float* d = dout.ptr<float>();
  float* dx = dlogits.ptr<float>();
  check_targets(tgt, rows, V, ignore_index, op);
  parallel_range(ctx.threads(), rows, true, [&](int64_t part_begin, int64_t part_end) {
    for (int64_t t = part_begin; t < part_end; ++t) {
      float* drow = dx + t * V;
      if (tgt[t] == ignore_index) {
        std::fill(drow, drow + V, 0.0f);
        continue;
      }
      const float* row = x + t * V;  // may be drow: each element is read before it is written
      const float g = sign * d[t];
      const float z = l[t];
      for (int64_t v = 0; v < V; ++v) drow[v] = -g * exp_f32(row[v] - z);
      drow[tgt[t]] += g;
    }
  });
}

}  // namespace cpu
}  // namespace beaver::ops
