// Batch slicing, loss shares and metric reduction for data parallel (distributed.h).
#include "train/distributed.h"

#include <algorithm>

#include "csrc/error.h"

namespace beaver::train {

int64_t per_device_batch(int64_t train_batch_size, int64_t per_device, int64_t accumulation,
                         int ranks) {
  if (train_batch_size <= 0) return per_device;
  const int64_t div = accumulation * int64_t(ranks);
  BEAVER_CHECK(train_batch_size % div == 0, "--train_batch_size ", train_batch_size,
               " does not divide into ", ranks, " rank(s) x --gradient_accumulation_steps ",
               accumulation, " (= ", div, "); choose a multiple of ", div);
  return train_batch_size / div;
}

std::pair<size_t, size_t> rank_slice(size_t global_begin, size_t global_end, size_t per_device,
                                     int rank) {
  const size_t b = std::min(global_end, global_begin + size_t(rank) * per_device);
  const size_t e = std::min(global_end, b + per_device);
  return {b, e};
}

double data_parallel_share(Communicator* comm, double local_weight, double* global_out) {
  if (!comm || comm->size() == 1) {
    if (global_out) *global_out = local_weight;
    return 1.0;
  }
  const double global = comm->all_reduce(local_weight, ReduceOp::Sum);
  if (global_out) *global_out = global;
  return global > 0 ? double(comm->size()) * local_weight / global : 0.0;
}

void reduce_weighted(Communicator* comm, std::vector<std::pair<std::string, double>>& means,
                     double weight, std::vector<double>& sums) {
  if (!comm || comm->size() == 1) return;
  std::vector<double> v;
  v.reserve(means.size() + sums.size() + 1);
  for (const auto& kv : means) v.push_back(kv.second * weight);
  v.push_back(weight);
  v.insert(v.end(), sums.begin(), sums.end());
  comm->all_reduce(v, ReduceOp::Sum);
  const double w = v[means.size()];
  for (size_t i = 0; i < means.size(); ++i) means[i].second = w > 0 ? v[i] / w : 0.0;
  for (size_t i = 0; i < sums.size(); ++i) sums[i] = v[means.size() + 1 + i];
}

}  // namespace beaver::train
