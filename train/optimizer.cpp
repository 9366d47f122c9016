// AdamW + clipping + schedule + accumulation over a LlamaModel's flat vectors (optimizer.h).
#include "train/optimizer.h"

#include <algorithm>
#include <cstring>
#include <filesystem>
#include <nlohmann/json.hpp>

#include "csrc/atomic_file.h"
#include "csrc/error.h"
#include "csrc/ops/gradnorm.h"
#include "csrc/profile.h"
#include "csrc/safetensors.h"
#include "model/checkpoint.h"

namespace beaver::train {

namespace {
constexpr const char* kStateMagic = "beaver-optimizer";
}  // namespace

Optimizer::Optimizer(model::LlamaModel& model, const OptimizerConfig& cfg)
    : model_(&model), cfg_(cfg), shard_(cfg.comm, cfg.zero_stage, model.flat_params().numel()) {
  BEAVER_CHECK(model.options().training, "Optimizer: the model was built for inference");
  BEAVER_CHECK(cfg.accumulation >= 1, "Optimizer: gradient accumulation must be >= 1, got ",
               cfg.accumulation);
  BEAVER_CHECK(cfg.schedule.total_steps >= 1, "Optimizer: total steps must be >= 1, got ",
               cfg.schedule.total_steps);
  BEAVER_CHECK(cfg.schedule.base_lr >= 0.0, "Optimizer: learning rate must be >= 0, got ",
               cfg.schedule.base_lr);
  BEAVER_CHECK(cfg.weight_decay >= 0.0, "Optimizer: weight decay must be >= 0, got ",
               cfg.weight_decay);
  const Tensor p = model.flat_params();
  const Device dev = p.device;
  m_ = OwnedTensor(DType::F32, Shape{shard_.count()}, dev);
  v_ = OwnedTensor(DType::F32, Shape{shard_.count()}, dev);
  norm_ = OwnedTensor(DType::F32, Shape{1}, dev);
  coef_ = OwnedTensor(DType::F32, Shape{1}, dev);
  zero_tensor(m_);
  zero_tensor(v_);
  segments_ = shard_.shard_segments(model.decay_segments(cfg.decay_norms));
}

bool Optimizer::micro_step() {
  ++micro_;
  if (micro_ < cfg_.accumulation) return false;
  apply();
  return true;
}

bool Optimizer::flush() {
  if (micro_ == 0) return false;
  apply();
  return true;
}

void Optimizer::apply() {
  const ProfileRange range("optimizer/step");
  Context& ctx = model_->context();
  const Tensor grads = model_->flat_grads();
  shard_.reduce_grads(ctx, grads);  // averaged across ranks before the norm (no-op on one)
  shard_.grad_norm(ctx, grads, norm_);
  Tensor scale;
  if (cfg_.max_grad_norm > 0.0) {
    ops::clip_coef(ctx, norm_, float(cfg_.max_grad_norm), coef_);
    scale = coef_;
  }
  have_norm_ = true;
  if (guard_ && !guard_->admit(step_, last_grad_norm())) {
    model_->zero_grads();
    micro_ = 0;
    return;
  }
  ops::AdamWConfig ac;
  last_lr_ = cfg_.schedule.lr(step_);
  ac.lr = float(last_lr_);
  ac.beta1 = cfg_.beta1;
  ac.beta2 = cfg_.beta2;
  ac.eps = cfg_.eps;
  ac.weight_decay = float(cfg_.weight_decay);
  ac.step = step_ + 1;
  // On CUDA the ops read a bf16 working copy of the weights: AdamW rewrites it in the same
  // pass (undefined on the CPU, where the ops read the fp32 master directly).
  const int64_t b = shard_.begin(), e = shard_.end();
  const Tensor master = model_->flat_params(), working = model_->flat_working_params();
  if (e > b)
    ops::adamw_step(ctx, master.slice(b, e), grads.slice(b, e), m_, v_,
                    working.defined() ? working.slice(b, e) : Tensor{}, scale, segments_, ac);
  shard_.gather(ctx, master);
  shard_.gather(ctx, working);
  model_->zero_grads();
  ++step_;
  micro_ = 0;
}

double Optimizer::last_grad_norm() const {
  if (!have_norm_) return 0.0;
  return double(to_host_f32(norm_)[0]);
}

namespace {
std::string shard_file(const std::string& dir, int r) {
  return dir + "/optimizer-shard-" + std::to_string(r) + ".safetensors";
}
}  // namespace

void Optimizer::save(const std::string& dir) const {
  BEAVER_CHECK(micro_ == 0, "Optimizer::save: ", micro_,
               " micro-batches are accumulated but not applied; save between steps");
  for (const auto& [name, t] : {std::pair<const char*, const Tensor*>{"m", &m_.view()},
                                std::pair<const char*, const Tensor*>{"v", &v_.view()}}) {
    const model::NonfiniteCount c = model::count_nonfinite(*t);
    BEAVER_CHECK(!c, dir, ": AdamW moment ", name, " holds ", model::describe_nonfinite(c, Tensor()),
                 "; refusing to write an optimizer state with non-finite values");
  }
  const bool root = shard_.rank() == 0;
  if (!shard_.sharded() && !root) return;  // every rank holds the same full state
  std::filesystem::create_directories(dir);
  const std::vector<std::pair<std::string, Tensor>> tensors{{"m", m_.view()}, {"v", v_.view()}};
  if (shard_.sharded())
    write_safetensors(shard_file(dir, shard_.rank()), tensors,
                      {{"format", kStateMagic},
                       {"begin", std::to_string(shard_.begin())},
                       {"end", std::to_string(shard_.end())}});
  else
    write_safetensors(dir + "/optimizer.safetensors", tensors, {{"format", kStateMagic}});
  if (!root) return;
  OptimizerStateRecord rec;
  rec.step = step_;
  rec.numel = model_->flat_params().numel();
  rec.shards = shard_.sharded() ? shard_.ranks() : 1;
  const auto j = optimizer_state_json(rec, cfg_);
  write_text_file(dir + "/optimizer.json", j.dump(2) + "\n");
}

void Optimizer::load(const std::string& dir) {
  const std::string jpath = dir + "/optimizer.json";
  const int64_t n = model_->flat_params().numel();
  const OptimizerStateRecord rec = parse_optimizer_state(read_text_file(jpath), jpath, n);
  const int shards = rec.shards;
  // The stored partition may differ from this run's (another rank count or stage): copy the
  // overlap of every stored shard with this rank's range.
  const Partition stored{n, shards};
  const int64_t b = shard_.begin(), e = shard_.end();
  for (int r = 0; r < shards; ++r) {
    const int64_t sb = stored.begin(r), se = stored.end(r);
    const int64_t ob = std::max(sb, b), oe = std::min(se, e);
    if (oe <= ob) continue;
    const std::string spath = shards == 1 ? dir + "/optimizer.safetensors" : shard_file(dir, r);
    SafeTensorsFile f(spath);
    for (const auto& [name, dst] : {std::pair<const char*, const OwnedTensor*>{"m", &m_},
                                    std::pair<const char*, const OwnedTensor*>{"v", &v_}}) {
      const SafeTensorInfo& t = f.at(name);
      BEAVER_CHECK(t.dtype == DType::F32 && t.numel() == se - sb, spath, ": tensor '", name,
                   "' must be f32 [", se - sb, "] (shard ", r, " of ", shards, ")");
      const Tensor part = t.tensor().slice(ob - sb, oe - sb);
      const model::NonfiniteCount bad = model::count_nonfinite(part);
      BEAVER_CHECK(!bad, spath, ": AdamW moment ", name, " holds ",
                   model::describe_nonfinite(bad, part),
                   "; refusing to resume from an optimizer state with non-finite values");
      if (dst == &v_) {
        const auto* bytes = static_cast<const uint8_t*>(part.data);
        for (int64_t i = 0; i < part.numel(); ++i) {
          float x;  // the mapped file need not be aligned for float
          std::memcpy(&x, bytes + 4 * i, 4);
          BEAVER_CHECK(x >= 0.0f, spath, ": AdamW moment v holds ", x, " at element ",
                       ob - sb + i, "; a second moment is never negative");
        }
      }
      copy_tensor(dst->view().slice(ob - b, oe - b), part);
    }
  }
  step_ = rec.step;
  micro_ = 0;
  have_norm_ = false;
  model_->zero_grads();
}

}  // namespace beaver::train
