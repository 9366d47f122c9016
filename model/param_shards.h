// ZeRO-style sharding of one LlamaModel's flat vectors over data-parallel ranks: the storage
// and the collectives behind the model's parameter source (llama.h, "sharded parameters").
//
// The flat vector (flat_params' layout) is cut into units, in order: unit 0 the embedding,
// unit 1 + l decoder layer l, unit L + 1 the final norm and the head (score head, or the
// untied LM head; a tied LM head reads unit 0). Each unit is partitioned on its own over the
// ranks (Partition{unit elements, ranks}), so every rank owns an even slice of every unit and a
// unit is gathered or reduce-scattered with one in-place collective over exactly its elements.
// A rank's shard is the concatenation of its slices, unit by unit (the pieces).
//
//   gradients sharded (zero stage 2 and 3): the backward writes each unit's gradient into one
//     unit-sized f32 buffer (zeroed before the unit), which is reduce-scattered (averaged) as
//     soon as the unit is done and its own slice added into the rank's gradient shard. No full
//     gradient vector exists.
//   parameters sharded (zero stage 3): the rank keeps only its slice of the master (and of the
//     working copy where the device has one); before a unit is used the working slices of all
//     ranks are all-gathered into one of the unit-sized slots, the least recently used (the
//     last units stay resident, so the backward starts from what the forward left). After the optimizer writes
//     the shard, invalidate() drops what the slots hold.
// Prefetch (layout.prefetch, the default; BEAVER_ZERO_PREFETCH=0 turns it off): a third slot,
// and once params(u) has returned, the unit the pass will want next (u - 1 when u is below the
// unit of the call before, as in a backward; else u + 1, as in a forward) is gathered into the
// least recently used slot with Communicator::all_gather_async while unit u computes (not
// when u was also the unit of the call before); the next params() waits for it. Every rank makes the same calls, so every rank starts the same
// prefetches in the same order. The gathered values are the same bits as the blocking path's.
//
// model/ reaches the ranks only through csrc/comm.h's Communicator interface.
#pragma once

#include <cstddef>
#include <cstdint>
#include <vector>

#include "csrc/comm.h"
#include "csrc/context.h"
#include "csrc/tensor.h"

namespace beaver::model {

// One slice of a unit owned by a rank: the unit's elements [global, global + len) of the flat
// vector are the shard's elements [local, local + len).
struct ShardPiece {
  int unit = 0;
  int64_t global = 0, local = 0, len = 0;
};

// The pieces of rank `rank` of `ranks` for units bounded by `bounds` (element offsets,
// bounds.size() = units + 1, bounds.back() = the flat length), in unit order.
std::vector<ShardPiece> shard_pieces(const std::vector<int64_t>& bounds, int ranks, int rank);
// Elements of that shard.
int64_t shard_elements(const std::vector<int64_t>& bounds, int ranks, int rank);

// Whether stage-3 gathers prefetch the next unit: BEAVER_ZERO_PREFETCH (unset or 1: yes, 0:
// no; anything else is an Error naming the variable).
bool zero_prefetch_from_environment();

struct ShardLayout {
  int ranks = 1, rank = 0;
  bool params = false;  // parameters sharded (stage 3)
  bool grads = false;   // gradients sharded (stages 2 and 3)
  std::vector<int64_t> bounds;
  DType master = DType::F32;  // the master's dtype
  DType work = DType::F32;    // what the ops read (= master without a working copy)
  bool working_copy = false;  // a separate working copy exists (CUDA)
  bool head_master = false;   // also gather unit L + 1 in the master dtype (the score bias)
  bool prefetch = false;      // params sharded: three slots, the next unit gathered ahead
  int64_t max_unit() const;
  int slots() const { return prefetch ? 3 : 2; }
};

// Bytes ParamShards allocates for a layout, by part.
struct ShardBytes {
  size_t master = 0, working = 0, grads = 0;  // the shards
  size_t gathered = 0;                        // slots, gradient buffer, head master buffer
};
ShardBytes shard_bytes(const ShardLayout& layout);

class ParamShards {
 public:
  // comm must have layout.ranks ranks and be rank layout.rank.
  ParamShards(Context& ctx, Communicator& comm, ShardLayout layout);
  ~ParamShards();
  ParamShards(const ParamShards&) = delete;
  ParamShards& operator=(const ParamShards&) = delete;

  const ShardLayout& layout() const { return layout_; }
  const std::vector<ShardPiece>& pieces() const { return pieces_; }
  int64_t local_elements() const { return local_; }
  int units() const { return int(layout_.bounds.size()) - 1; }
  int64_t unit_begin(int u) const { return layout_.bounds[size_t(u)]; }
  int64_t unit_size(int u) const { return layout_.bounds[size_t(u) + 1] - layout_.bounds[size_t(u)]; }
  ShardBytes bytes() const;

  // The shards (params sharded): master [local] and working [local] (undefined without a
  // working copy). grads(): the gradient shard [local] f32 (grads sharded).
  Tensor master() const;
  Tensor working() const;
  Tensor grads() const;

  // Params sharded: unit u's full working parameters [unit_size(u)] in layout().work,
  // gathered unless one slot still holds them (or waited for when it was prefetched). The
  // tensor stays valid until a later call gathers another unit into the same slot (at most
  // one other unit in between).
  Tensor params(int u);
  // Unit u's full master parameters (head_master only, u = units() - 1), gathered each call.
  Tensor head_master(int u);
  // Drops what the slots hold (after the shard changed), first waiting for a prefetch.
  void invalidate();

  // Grads sharded: the zeroed f32 buffer [unit_size(u)] for unit u's gradient, then its
  // reduction into the shard (averaged over the ranks, added to what the shard holds).
  Tensor grads_begin(int u);
  void grads_end(int u);
  void zero_grads();

  // Params sharded: writes this rank's part of the flat range [offset, offset + n) from src
  // (master dtype, n elements, any device) into the master shard.
  void write_master(int64_t offset, const Tensor& src);
  // Params sharded: working shard = master shard rounded (no-op without a working copy).
  void sync_working();

 private:
  Tensor unit_slot(int slot, int u) const;
  // Copies the own piece of unit u into slot s and starts its gather (asynchronous or not).
  std::unique_ptr<PendingCollective> start_gather(int s, int u, bool async);
  void finish_prefetch();  // waits for the prefetch in flight (if any); its slot is resident
  int lru_slot(int keep) const;  // the least recently used slot other than `keep`

  Context* ctx_;
  Communicator* comm_;
  ShardLayout layout_;
  std::vector<ShardPiece> pieces_;  // this rank's, one per unit
  int64_t local_ = 0;
  Buffer master_, working_, grads_, slots_[3], grad_buf_, head_buf_;
  int resident_[3] = {-1, -1, -1};
  uint64_t used_[3] = {0, 0, 0};  // when each slot was last returned (a counter)
  uint64_t clock_ = 0;
  int last_unit_ = -1;            // the unit params() returned last
  std::unique_ptr<PendingCollective> pending_;  // the prefetch in flight
  int pending_slot_ = -1, pending_unit_ = -1;
  int grad_unit_ = -1;
};

}  // namespace beaver::model
