// Batch slicing, loss shares and metric reduction for data parallel (distributed.h).
#include "train/distributed.h"

#include <algorithm>

#include "csrc/error.h"
#include "csrc/ops/logprob.h"

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

void join_sharded_pass(model::LlamaModel& m, bool backward) {
  if (!m.params_sharded() && !(backward && m.grads_sharded())) return;
  Context& ctx = m.context();
  const Device d = ctx.device();
  // token 0 at position 0 (one valid token), an ignored target, a zero gradient
  int32_t host[5] = {0, 0, 1, 0, ops::kIgnoreIndex};
  auto upload = [&](int at, Shape s) {
    OwnedTensor t(DType::I32, s, d);
    ctx.copy(t, Tensor(host + at, DType::I32, s, Device::CPU));
    return t;
  };
  const OwnedTensor tokens = upload(0, Shape{1, 1}), ranges = upload(1, Shape{1, 2}),
                    positions = upload(3, Shape{1, 1}), targets = upload(4, Shape{1, 1});
  m.forward(model::Batch{tokens, ranges, positions});
  OwnedTensor zero(DType::F32, Shape{1, 1}, d);
  ctx.zero(zero);
  if (m.head() == model::Head::LM) {
    m.token_logprobs(targets, Tensor{});
    if (backward) m.token_logprobs_backward(zero);
  } else {
    OwnedTensor scores(DType::F32, Shape{1, 1}, d), ends(DType::F32, Shape{1}, d);
    m.scores(scores, ends);
    if (backward) m.scores_backward(zero, Tensor{});
  }
  ctx.synchronize();  // before the host values and the tensors go
}

}  // namespace beaver::train
