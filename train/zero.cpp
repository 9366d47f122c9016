// Sharded optimizer work across data-parallel ranks (zero.h).
#include "train/zero.h"

#include <algorithm>
#include <cmath>

#include "csrc/error.h"
#include "csrc/ops/gradnorm.h"

namespace beaver::train {

void check_zero_stage(int stage) {
  BEAVER_CHECK(stage >= 0 && stage <= 3, "--zero_stage must be 0, 1, 2 or 3, got ", stage);
}

std::vector<ZeroPiece> ZeroShard::pieces_for(int stage, int ranks, int rank,
                                             const std::vector<int64_t>& bounds) {
  const int64_t n = bounds.back();
  if (stage < 1 || ranks <= 1) return {ZeroPiece{0, 0, 0, 0, n}};
  if (stage == 1) {
    const Partition p{n, ranks};
    return {ZeroPiece{p.begin(rank), p.begin(rank), p.begin(rank), 0, p.count(rank)}};
  }
  std::vector<ZeroPiece> out;
  for (const model::ShardPiece& s : model::shard_pieces(bounds, ranks, rank))
    out.push_back(ZeroPiece{s.global, stage >= 3 ? s.local : s.global, s.local, s.local, s.len});
  return out;
}

int64_t ZeroShard::state_elements(int stage, int ranks, int rank,
                                  const std::vector<int64_t>& bounds) {
  int64_t c = 0;
  for (const ZeroPiece& p : pieces_for(stage, ranks, rank, bounds)) c += p.len;
  return c;
}

ZeroShard::ZeroShard(Communicator* comm, int stage, const model::LlamaModel& model)
    : comm_(comm), stage_(stage), n_(model.flat_elements()), bounds_(model.unit_bounds()),
      part_{model.flat_elements(), comm ? comm->size() : 1} {
  check_zero_stage(stage);
  const int R = ranks();
  params_sharded_ = model.params_sharded();
  BEAVER_CHECK(!params_sharded_ || stage >= 3, "ZeroShard: the model shards its parameters "
               "(zero stage ", model.options().zero_stage, ") but the optimizer has stage ", stage);
  BEAVER_CHECK(stage < 3 || R == 1 || params_sharded_, "ZeroShard: zero stage 3 needs a model "
               "built with sharded parameters (LlamaOptions zero_stage 3 and the communicator)");
  if (stage < 1 || R == 1) {
    mode_ = Mode::Full;
  } else if (model.grads_sharded()) {
    mode_ = Mode::Units;
  } else {
    mode_ = Mode::Flat;
  }
  if (mode_ == Mode::Units)
    pieces_ = pieces_for(stage, R, rank(), bounds_);
  else
    pieces_ = pieces_for(mode_ == Mode::Flat ? 1 : 0, R, rank(), bounds_);
  if (mode_ == Mode::Units && !params_sharded_)
    for (ZeroPiece& p : pieces_) p.param = p.global;
  for (const ZeroPiece& p : pieces_) count_ += p.len;
}

void ZeroShard::reduce_grads(Context& ctx, const Tensor& grads) const {
  if (ranks() == 1 || mode_ == Mode::Units) return;  // Units: reduced during the backward
  if (stage_ >= 2)  // a model without sharded gradients: reduce-scatter the whole vector
    comm_->reduce_scatter(ctx, grads, part_, ReduceOp::Avg);
  else
    comm_->all_reduce(ctx, grads, ReduceOp::Avg);
}

void ZeroShard::grad_norm(Context& ctx, const Tensor& grads, const Tensor& norm) const {
  if (ranks() == 1 || (mode_ != Mode::Units && stage_ < 2)) {
    const Tensor gs[] = {grads};
    ops::grad_norm(ctx, gs, norm);
    return;
  }
  // Each rank's part (the local shard, or its range of the full vector), then the sum of
  // squares across ranks.
  double sq = 0.0;
  const Tensor mine = mode_ == Mode::Units ? grads
                                           : grads.slice(pieces_[0].grad,
                                                         pieces_[0].grad + pieces_[0].len);
  if (mine.numel() > 0) {
    const Tensor gs[] = {mine};
    ops::grad_norm(ctx, gs, norm);
    const double local = double(to_host_f32(norm)[0]);
    sq = local * local;
  }
  const float global = float(std::sqrt(comm_->all_reduce(sq, ReduceOp::Sum)));
  ctx.copy(norm, Tensor(const_cast<float*>(&global), DType::F32, Shape{1}, Device::CPU));
}

std::vector<ops::ParamSegment> ZeroShard::piece_segments(
    const std::vector<ops::ParamSegment>& all, size_t i) const {
  const ZeroPiece& p = pieces_.at(i);
  std::vector<ops::ParamSegment> out;
  for (const auto& s : all) {
    const int64_t b = std::max(s.offset, p.global), e = std::min(s.offset + s.size, p.global + p.len);
    if (e > b) out.push_back({b - p.global, e - b});
  }
  return out;
}

void ZeroShard::gather(Context& ctx, const Tensor& t) const {
  if (!sharded() || !t.defined() || params_sharded_) return;
  if (mode_ == Mode::Flat) return comm_->all_gather(ctx, t, part_);
  for (size_t u = 0; u + 1 < bounds_.size(); ++u) {
    const int64_t b = bounds_[u], e = bounds_[u + 1];
    comm_->all_gather(ctx, t.slice(b, e), Partition{e - b, ranks()});
  }
}

}  // namespace beaver::train
