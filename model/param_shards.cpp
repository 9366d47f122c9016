// Sharded parameters and gradients of one model (param_shards.h).
#include "model/param_shards.h"

#include <algorithm>
#include <cstdlib>
#include <string_view>

#include "csrc/error.h"
#include "csrc/ops/elementwise.h"

namespace beaver::model {

std::vector<ShardPiece> shard_pieces(const std::vector<int64_t>& bounds, int ranks, int rank) {
  BEAVER_CHECK(bounds.size() >= 2, "shard_pieces: ", bounds.size(), " unit bounds");
  std::vector<ShardPiece> out;
  int64_t local = 0;
  for (size_t u = 0; u + 1 < bounds.size(); ++u) {
    const Partition p{bounds[u + 1] - bounds[u], ranks};
    const int64_t len = p.count(rank);
    out.push_back(ShardPiece{int(u), bounds[u] + p.begin(rank), local, len});
    local += len;
  }
  return out;
}

int64_t shard_elements(const std::vector<int64_t>& bounds, int ranks, int rank) {
  int64_t n = 0;
  for (const ShardPiece& p : shard_pieces(bounds, ranks, rank)) n += p.len;
  return n;
}

bool zero_prefetch_from_environment() {
  const char* v = std::getenv("BEAVER_ZERO_PREFETCH");
  if (!v || std::string_view(v) == "1") return true;
  BEAVER_CHECK(std::string_view(v) == "0", "BEAVER_ZERO_PREFETCH must be 0 (blocking stage-3 "
               "gathers) or 1 (prefetch the next unit, the default), got '", v, "'");
  return false;
}

int64_t ShardLayout::max_unit() const {
  int64_t m = 0;
  for (size_t u = 0; u + 1 < bounds.size(); ++u) m = std::max(m, bounds[u + 1] - bounds[u]);
  return m;
}

ShardBytes shard_bytes(const ShardLayout& l) {
  ShardBytes b;
  const int64_t local = shard_elements(l.bounds, l.ranks, l.rank);
  const int64_t unit = l.max_unit();
  if (l.params) {
    b.master = size_t(local) * dtype_size(l.master);
    if (l.working_copy) b.working = size_t(local) * dtype_size(l.work);
    b.gathered += size_t(l.slots()) * size_t(unit) * dtype_size(l.work);
    if (l.head_master) b.gathered += size_t(l.bounds.back() - l.bounds[l.bounds.size() - 2]) *
                                     dtype_size(l.master);
  }
  if (l.grads) {
    b.grads = size_t(local) * sizeof(float);
    b.gathered += size_t(unit) * sizeof(float);
  }
  return b;
}

namespace {
Buffer make(size_t bytes, Device d) { return bytes ? Buffer(bytes, d) : Buffer(); }
Tensor flat(const Buffer& b, DType t, int64_t n) {
  return Tensor(b.data(), t, Shape{n}, b.device());
}
}  // namespace

ParamShards::ParamShards(Context& ctx, Communicator& comm, ShardLayout layout)
    : ctx_(&ctx), comm_(&comm), layout_(std::move(layout)) {
  BEAVER_CHECK(comm.size() == layout_.ranks && comm.rank() == layout_.rank,
               "ParamShards: the layout is for rank ", layout_.rank, " of ", layout_.ranks,
               ", the communicator is rank ", comm.rank(), " of ", comm.size());
  pieces_ = shard_pieces(layout_.bounds, layout_.ranks, layout_.rank);
  for (const ShardPiece& p : pieces_) local_ += p.len;
  const Device d = ctx.device();
  const int64_t unit = layout_.max_unit();
  if (layout_.params) {
    master_ = make(size_t(local_) * dtype_size(layout_.master), d);
    if (layout_.working_copy) working_ = make(size_t(local_) * dtype_size(layout_.work), d);
    for (int s = 0; s < layout_.slots(); ++s)
      slots_[s] = make(size_t(unit) * dtype_size(layout_.work), d);
    if (layout_.head_master)
      head_buf_ = make(size_t(unit_size(units() - 1)) * dtype_size(layout_.master), d);
    if (local_ > 0) ctx.zero(master());
    if (working().defined() && local_ > 0) ctx.zero(working());
  }
  if (layout_.grads) {
    grads_ = make(size_t(local_) * sizeof(float), d);
    grad_buf_ = make(size_t(unit) * sizeof(float), d);
    zero_grads();
  }
}

ShardBytes ParamShards::bytes() const {
  ShardBytes b;
  b.master = master_.size();
  b.working = working_.size();
  b.grads = grads_.size();
  b.gathered = slots_[0].size() + slots_[1].size() + slots_[2].size() + grad_buf_.size() +
               head_buf_.size();
  return b;
}

ParamShards::~ParamShards() {
  // A gather in flight writes into a slot: it must end before the slot goes.
  if (pending_) pending_->wait();
}

Tensor ParamShards::master() const {
  BEAVER_CHECK(layout_.params, "ParamShards::master: the parameters are not sharded");
  return flat(master_, layout_.master, local_);
}

Tensor ParamShards::working() const {
  if (!layout_.params || !layout_.working_copy) return Tensor{};
  return flat(working_, layout_.work, local_);
}

Tensor ParamShards::grads() const {
  BEAVER_CHECK(layout_.grads, "ParamShards::grads: the gradients are not sharded");
  return flat(grads_, DType::F32, local_);
}

Tensor ParamShards::unit_slot(int slot, int u) const {
  return flat(slots_[slot], layout_.work, unit_size(u));
}

std::unique_ptr<PendingCollective> ParamShards::start_gather(int s, int u, bool async) {
  const Tensor t = unit_slot(s, u);
  const ShardPiece& p = pieces_[size_t(u)];
  const Tensor own = layout_.working_copy ? working() : master();
  const int64_t off = p.global - unit_begin(u);
  if (p.len > 0) ctx_->copy(t.slice(off, off + p.len), own.slice(p.local, p.local + p.len));
  const Partition part{unit_size(u), layout_.ranks};
  if (async) return comm_->all_gather_async(*ctx_, t, part);
  comm_->all_gather(*ctx_, t, part);
  return nullptr;
}

void ParamShards::finish_prefetch() {
  if (!pending_) return;
  pending_->wait();
  pending_.reset();
  resident_[pending_slot_] = pending_unit_;
  pending_slot_ = pending_unit_ = -1;
}

int ParamShards::lru_slot(int keep) const {
  int best = -1;
  for (int s = 0; s < layout_.slots(); ++s)
    if (s != keep && (best < 0 || used_[s] < used_[best])) best = s;
  return best;
}

Tensor ParamShards::params(int u) {
  BEAVER_CHECK(layout_.params, "ParamShards::params: the parameters are not sharded");
  BEAVER_CHECK(u >= 0 && u < units(), "ParamShards::params: unit ", u, " outside [0, ", units(), ")");
  finish_prefetch();  // in order: a prefetch is waited for before anything else is gathered
  int s = -1;
  for (int k = 0; k < layout_.slots(); ++k)
    if (resident_[k] == u) s = k;
  if (s < 0) {
    s = lru_slot(-1);
    resident_[s] = -1;
    start_gather(s, u, false);
    resident_[s] = u;
  }
  used_[s] = ++clock_;
  // Prefetch: the unit the pass wants next (forward order unless the pass walks backward);
  // none on a repeated call for the same unit (the head asked for again).
  if (layout_.prefetch && u != last_unit_) {
    const int next = last_unit_ >= 0 && u < last_unit_ ? u - 1 : u + 1;
    bool have = next < 0 || next >= units();
    for (int k = 0; k < layout_.slots(); ++k) have = have || resident_[k] == next;
    if (!have) {
      const int ps = lru_slot(s);
      resident_[ps] = -1;
      pending_ = start_gather(ps, next, true);
      pending_slot_ = ps;
      pending_unit_ = next;
    }
  }
  last_unit_ = u;
  return unit_slot(s, u);
}

Tensor ParamShards::head_master(int u) {
  BEAVER_CHECK(layout_.params && layout_.head_master && u == units() - 1,
               "ParamShards::head_master: only the head unit of a sharded model with a working "
               "copy has a master gather");
  const Tensor t = flat(head_buf_, layout_.master, unit_size(u));
  const ShardPiece& p = pieces_[size_t(u)];
  const int64_t off = p.global - unit_begin(u);
  if (p.len > 0) ctx_->copy(t.slice(off, off + p.len), master().slice(p.local, p.local + p.len));
  comm_->all_gather(*ctx_, t, Partition{unit_size(u), layout_.ranks});
  return t;
}

void ParamShards::invalidate() {
  finish_prefetch();
  for (int& r : resident_) r = -1;
  last_unit_ = -1;
}

Tensor ParamShards::grads_begin(int u) {
  BEAVER_CHECK(layout_.grads, "ParamShards::grads_begin: the gradients are not sharded");
  BEAVER_CHECK(grad_unit_ < 0, "ParamShards::grads_begin: unit ", grad_unit_,
               "'s gradient is still open (grads_end first)");
  BEAVER_CHECK(u >= 0 && u < units(), "ParamShards::grads_begin: unit ", u, " outside [0, ",
               units(), ")");
  const Tensor g = flat(grad_buf_, DType::F32, unit_size(u));
  ctx_->zero(g);
  grad_unit_ = u;
  return g;
}

void ParamShards::grads_end(int u) {
  BEAVER_CHECK(grad_unit_ == u, "ParamShards::grads_end: unit ", u, " is not the open one (",
               grad_unit_, ")");
  const Tensor g = flat(grad_buf_, DType::F32, unit_size(u));
  comm_->reduce_scatter(*ctx_, g, Partition{unit_size(u), layout_.ranks}, ReduceOp::Avg);
  const ShardPiece& p = pieces_[size_t(u)];
  const int64_t off = p.global - unit_begin(u);
  if (p.len > 0)
    ops::axpy(*ctx_, 1.0f, g.slice(off, off + p.len), grads().slice(p.local, p.local + p.len));
  grad_unit_ = -1;
}

void ParamShards::zero_grads() {
  if (local_ > 0) ctx_->zero(grads());
  grad_unit_ = -1;
}

void ParamShards::write_master(int64_t offset, const Tensor& src) {
  BEAVER_CHECK(layout_.params, "ParamShards::write_master: the parameters are not sharded");
  BEAVER_CHECK(src.dtype == layout_.master, "ParamShards::write_master: source ", src.str(),
               ", the master is ", dtype_name(layout_.master));
  const int64_t n = src.numel();
  const Tensor s = src.view({n});
  for (const ShardPiece& p : pieces_) {
    const int64_t b = std::max(offset, p.global), e = std::min(offset + n, p.global + p.len);
    if (e <= b) continue;
    ctx_->copy(master().slice(p.local + b - p.global, p.local + e - p.global),
               s.slice(b - offset, e - offset));
  }
  invalidate();
}

void ParamShards::sync_working() {
  if (working().defined() && local_ > 0) ops::convert(*ctx_, master(), working());
  invalidate();
}

}  // namespace beaver::model
