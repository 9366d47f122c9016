// Sharded optimizer work across data-parallel ranks (zero.h).
#include "train/zero.h"

#include <algorithm>
#include <cmath>
#include <tuple>

#include "csrc/error.h"
#include "csrc/ops/gradnorm.h"

namespace beaver::train {

void check_zero_stage(int stage) {
  BEAVER_CHECK(stage >= 0 && stage <= 3, "--zero_stage must be 0, 1, 2 or 3, got ", stage);
  BEAVER_CHECK(stage <= 2, "--zero_stage 3 (sharded parameters) is not supported: Beaver shards "
               "the optimizer state (stage 1) and the gradient reduction (stage 2); use 0, 1 or 2");
}

ZeroShard::ZeroShard(Communicator* comm, int stage, int64_t n)
    : comm_(comm), stage_(stage), part_{n, comm ? comm->size() : 1} {
  check_zero_stage(stage);
  std::tie(begin_, end_) = state_range(stage, ranks(), rank(), n);
}

std::pair<int64_t, int64_t> ZeroShard::state_range(int stage, int ranks, int rank, int64_t n) {
  if (stage < 1 || ranks <= 1) return {0, n};
  const Partition p{n, ranks};
  return {p.begin(rank), p.end(rank)};
}

void ZeroShard::reduce_grads(Context& ctx, const Tensor& grads) const {
  if (ranks() == 1) return;
  if (stage_ >= 2)
    comm_->reduce_scatter(ctx, grads, part_, ReduceOp::Avg);
  else
    comm_->all_reduce(ctx, grads, ReduceOp::Avg);
}

void ZeroShard::grad_norm(Context& ctx, const Tensor& grads, const Tensor& norm) const {
  if (stage_ < 2 || ranks() == 1) {
    const Tensor gs[] = {grads};
    ops::grad_norm(ctx, gs, norm);
    return;
  }
  double sq = 0.0;
  if (count() > 0) {
    const Tensor gs[] = {grads.slice(begin_, end_)};
    ops::grad_norm(ctx, gs, norm);
    const double local = double(to_host_f32(norm)[0]);
    sq = local * local;
  }
  const float global = float(std::sqrt(comm_->all_reduce(sq, ReduceOp::Sum)));
  ctx.copy(norm, Tensor(const_cast<float*>(&global), DType::F32, Shape{1}, Device::CPU));
}

std::vector<ops::ParamSegment> ZeroShard::shard_segments(
    const std::vector<ops::ParamSegment>& all) const {
  std::vector<ops::ParamSegment> out;
  for (const auto& s : all) {
    const int64_t b = std::max(s.offset, begin_), e = std::min(s.offset + s.size, end_);
    if (e > b) out.push_back({b - begin_, e - b});
  }
  return out;
}

void ZeroShard::gather(Context& ctx, const Tensor& t) const {
  if (!sharded() || !t.defined()) return;
  comm_->all_gather(ctx, t, part_);
}

}  // namespace beaver::train
