// Data parallel across ranks (csrc/comm.h), the parts every trainer shares:
//   - each global batch (per_device x ranks items, in the same seeded order on every rank) is
//     cut into contiguous per-rank slices; the tail of an epoch may leave some ranks less or
//     nothing, so each rank scales its loss by its share of the global weight (tokens, pairs):
//     averaged across ranks, the gradients are then those of the one-rank run on the global
//     batch (up to the rounding of the reduction);
//   - step metrics are weighted means across ranks; only rank 0 writes files.
// A null communicator means one rank throughout.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <utility>
#include <vector>

#include "csrc/comm.h"
#include "model/llama.h"

namespace beaver::train {

inline int ranks_of(const Communicator* c) { return c ? c->size() : 1; }
inline int rank_of(const Communicator* c) { return c ? c->rank() : 0; }
inline bool is_root(const Communicator* c) { return rank_of(c) == 0; }

// The per-device micro-batch from DeepSpeed's global train_batch_size
// (= per-device x gradient_accumulation_steps x ranks). train_batch_size 0: per_device as
// given. An indivisible global batch is an Error naming the flags.
int64_t per_device_batch(int64_t train_batch_size, int64_t per_device, int64_t accumulation,
                         int ranks);

// This rank's part [begin, end) of the global batch [global_begin, global_end) of a list, in
// slices of per_device items (clamped: possibly empty).
std::pair<size_t, size_t> rank_slice(size_t global_begin, size_t global_end, size_t per_device,
                                     int rank);

// Scale for this rank's loss so that the rank average of the gradients is the gradient of the
// global weighted mean: ranks * local / global (1 on one rank). global_out receives the global
// weight. A collective.
double data_parallel_share(Communicator* comm, double local_weight, double* global_out = nullptr);

// Weighted means of named values across ranks (weight = this rank's tokens or pairs); the
// counters in `sums` are summed instead. A collective: every rank passes the same names.
void reduce_weighted(Communicator* comm, std::vector<std::pair<std::string, double>>& means,
                     double weight, std::vector<double>& sums);

// Under ZeRO sharding a forward (stage 3) and a backward (stages 2-3) are collectives of the
// model's units (model/llama.h): a rank without data for a pass that the other ranks make
// joins with this one, on a one-token batch: forward, the head (token log-probs or scores) and,
// with `backward`, a backward with a zero gradient, which adds nothing to the shards. A no-op
// when the model shards nothing that the pass would gather or reduce.
void join_sharded_pass(model::LlamaModel& m, bool backward);

}  // namespace beaver::train
