// Token embedding: argument checks, dispatch, and the CPU twin.
// The CPU backward is parallel over blocks of columns: each thread owns whole columns of
// dtable and walks the tokens in increasing t, so every element is summed in the same order
// whatever the thread count (bitwise reproducible, no atomics, no races between threads).
#include "csrc/ops/embedding.h"

#include <algorithm>
#include <cstring>

#include "csrc/ops/cpu_threads.h"
#include "csrc/ops/dispatch.h"

namespace beaver::ops {

void embedding_fwd(Context& ctx, const Tensor& tokens, const Tensor& table, const Tensor& out) {
  constexpr std::string_view op = "embedding_fwd";
  expect_rank(tokens, 1, op, "tokens");
  expect_dtype(tokens, DType::I32, op, "tokens");
  expect_rank(table, 2, op, "table");
  BEAVER_CHECK(is_float(table.dtype), op, ": table has dtype ", dtype_name(table.dtype),
               " but expected a float dtype");
  expect_shape(out, Shape{tokens.size(0), table.size(1)}, op, "out");
  expect_dtype(out, table.dtype, op, "out");
  expect_defined(tokens, op, "tokens");
  expect_defined(table, op, "table");
  expect_defined(out, op, "out");
  expect_on(ctx, {&tokens, &table, &out}, op);
  BEAVER_DISPATCH(ctx, embedding_fwd, ctx, tokens, table, out);
}

void embedding_bwd(Context& ctx, const Tensor& tokens, const Tensor& dout, const Tensor& dtable,
                   bool accumulate) {
  constexpr std::string_view op = "embedding_bwd";
  expect_rank(tokens, 1, op, "tokens");
  expect_dtype(tokens, DType::I32, op, "tokens");
  expect_rank(dtable, 2, op, "dtable");
  BEAVER_CHECK(is_float(dtable.dtype), op, ": dtable has dtype ", dtype_name(dtable.dtype),
               " but expected a float dtype");
  BEAVER_CHECK(is_float(dout.dtype), op, ": dout has dtype ", dtype_name(dout.dtype),
               " but expected a float dtype");
  expect_shape(dout, Shape{tokens.size(0), dtable.size(1)}, op, "dout");
  expect_defined(tokens, op, "tokens");
  expect_defined(dout, op, "dout");
  expect_defined(dtable, op, "dtable");
  expect_on(ctx, {&tokens, &dout, &dtable}, op);
  BEAVER_DISPATCH(ctx, embedding_bwd, ctx, tokens, dout, dtable, accumulate);
}

namespace cpu {
namespace {

// Every id must index a row of the table; the first bad one is reported with its position.
void check_ids(const int32_t* ids, int64_t n, int64_t vocab, std::string_view op) {
  for (int64_t t = 0; t < n; ++t)
    if (ids[t] < 0 || int64_t(ids[t]) >= vocab)
      BEAVER_FAIL(op, ": token id ", ids[t], " at position ", t, " is outside the vocabulary [0, ",
                  vocab, ")");
}

constexpr int64_t kColBlock = 256;  // floats per column block in the backward (1 KiB)

}  // namespace

void embedding_fwd(Context& ctx, const Tensor& tokens, const Tensor& table, const Tensor& out) {
  constexpr std::string_view op = "embedding_fwd (cpu)";
  expect_dtype(table, DType::F32, op, "table");
  expect_dtype(out, DType::F32, op, "out");
  const int64_t n = tokens.size(0), vocab = table.size(0), h = table.size(1);
  const int32_t* ids = tokens.ptr<int32_t>();
  check_ids(ids, n, vocab, op);
  const float* src = table.ptr<float>();
  float* dst = out.ptr<float>();
  parallel_range(ctx.threads(), n, n * h > 65536, [&](int64_t part_begin, int64_t part_end) {
    for (int64_t t = part_begin; t < part_end; ++t)
      std::memcpy(dst + t * h, src + int64_t(ids[t]) * h, size_t(h) * sizeof(float));
  });
}

void embedding_bwd(Context& ctx, const Tensor& tokens, const Tensor& dout, const Tensor& dtable,
                   bool accumulate) {
  constexpr std::string_view op = "embedding_bwd (cpu)";
  expect_dtype(dout, DType::F32, op, "dout");
  expect_dtype(dtable, DType::F32, op, "dtable");
  const int64_t n = tokens.size(0), vocab = dtable.size(0), h = dtable.size(1);
  const int32_t* ids = tokens.ptr<int32_t>();
  check_ids(ids, n, vocab, op);  // before touching dtable, so a bad id leaves it unchanged
  const float* g = dout.ptr<float>();
  float* dt = dtable.ptr<float>();
  if (!accumulate) {
    parallel_range(ctx.threads(), vocab, vocab * h > 65536, [&](int64_t v0, int64_t v1) {
      for (int64_t v = v0; v < v1; ++v) std::memset(dt + v * h, 0, size_t(h) * sizeof(float));
    });
  }
  const int64_t blocks = (h + kColBlock - 1) / kColBlock;
  parallel_range(ctx.threads(), blocks, n * h > 65536, [&](int64_t part_begin, int64_t part_end) {
    for (int64_t blk = part_begin; blk < part_end; ++blk) {
      const int64_t j0 = blk * kColBlock, j1 = std::min(h, j0 + kColBlock);
      for (int64_t t = 0; t < n; ++t) {
        const float* src = g + t * h;
        float* row = dt + int64_t(ids[t]) * h;
        for (int64_t j = j0; j < j1; ++j) row[j] += src[j];
      }
    }
  });
}

}  // namespace cpu
}  // namespace beaver::ops
