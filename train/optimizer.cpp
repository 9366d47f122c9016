// AdamW + clipping + schedule + accumulation over a LlamaModel's flat vectors (optimizer.h).
#include "train/optimizer.h"

#include <algorithm>
#include <cstring>
#include <filesystem>
#include <nlohmann/json.hpp>
#include <sstream>

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
    : model_(&model), cfg_(cfg), shard_(cfg.comm, cfg.zero_stage, model) {
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
  segments_ = model.decay_segments(cfg.decay_norms);
  for (size_t i = 0; i < shard_.pieces().size(); ++i)
    piece_segments_.push_back(shard_.piece_segments(segments_, i));
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
  const Tensor master = model_->flat_params(), working = model_->flat_working_params();
  for (size_t i = 0; i < shard_.pieces().size(); ++i) {
    const ZeroPiece& p = shard_.pieces()[i];
    if (p.len == 0) continue;
    ops::adamw_step(ctx, master.slice(p.param, p.param + p.len),
                    grads.slice(p.grad, p.grad + p.len), m_.view().slice(p.state, p.state + p.len),
                    v_.view().slice(p.state, p.state + p.len),
                    working.defined() ? working.slice(p.param, p.param + p.len) : Tensor{}, scale,
                    piece_segments_[i], ac);
  }
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
  if (shard_.sharded()) {
    // The pieces (global offset and length, in the order of m and v) name what the shard
    // holds, so a reader with another layout takes the overlaps.
    std::string pieces;
    for (const ZeroPiece& p : shard_.pieces())
      pieces += cat(pieces.empty() ? "" : ",", p.global, ":", p.len);
    write_safetensors(shard_file(dir, shard_.rank()), tensors,
                      {{"format", kStateMagic}, {"pieces", pieces}});
  }
  else
    write_safetensors(dir + "/optimizer.safetensors", tensors, {{"format", kStateMagic}});
  if (!root) return;
  OptimizerStateRecord rec;
  rec.step = step_;
  rec.numel = shard_.numel();
  rec.shards = shard_.sharded() ? shard_.ranks() : 1;
  const auto j = optimizer_state_json(rec, cfg_);
  write_text_file(dir + "/optimizer.json", j.dump(2) + "\n");
}

void Optimizer::load(const std::string& dir) {
  const std::string jpath = dir + "/optimizer.json";
  const int64_t n = shard_.numel();
  const OptimizerStateRecord rec = parse_optimizer_state(read_text_file(jpath), jpath, n);
  const int shards = rec.shards;
  // The stored layout may differ from this run's (another rank count or stage): copy the
  // overlap of every stored piece with every piece of this rank.
  const Partition stored{n, shards};
  for (int r = 0; r < shards; ++r) {
    const std::string spath = shards == 1 ? dir + "/optimizer.safetensors" : shard_file(dir, r);
    // (global begin, length) of the stored shard's pieces, in the order of its m and v.
    std::vector<std::pair<int64_t, int64_t>> spieces;
    int64_t stored_elems = 0;
    {
      const SafeTensorsFile f(spath);
      const auto it = f.metadata().find("pieces");
      if (it == f.metadata().end() || shards == 1) {
        spieces.push_back({stored.begin(r), stored.count(r)});  // one contiguous range
      } else {
        std::stringstream ss(it->second);
        std::string item;
        while (std::getline(ss, item, ',')) {
          const size_t colon = item.find(':');
          int64_t g = -1, len = -1;
          try {
            BEAVER_CHECK(colon != std::string::npos, "no ':'");
            g = std::stoll(item.substr(0, colon));
            len = std::stoll(item.substr(colon + 1));
          } catch (const std::exception&) {
            BEAVER_FAIL(spath, ": metadata 'pieces' entry '", item, "' is not <offset>:<length>");
          }
          BEAVER_CHECK(g >= 0 && len >= 0 && g + len <= n, spath, ": metadata 'pieces' entry '",
                       item, "' lies outside the ", n, " elements of the flat vector");
          spieces.push_back({g, len});
        }
      }
      for (const auto& sp : spieces) stored_elems += sp.second;
    }
    bool overlaps = false;
    for (const auto& sp : spieces)
      for (const ZeroPiece& p : shard_.pieces())
        overlaps = overlaps || (std::max(sp.first, p.global) <
                                std::min(sp.first + sp.second, p.global + p.len));
    if (!overlaps) continue;
    SafeTensorsFile f(spath);
    for (const auto& [name, dst] : {std::pair<const char*, const OwnedTensor*>{"m", &m_},
                                    std::pair<const char*, const OwnedTensor*>{"v", &v_}}) {
      const SafeTensorInfo& t = f.at(name);
      BEAVER_CHECK(t.dtype == DType::F32 && t.numel() == stored_elems, spath, ": tensor '", name,
                   "' must be f32 [", stored_elems, "] (shard ", r, " of ", shards, ")");
      int64_t soff = 0;
      for (const auto& [sg, slen] : spieces) {
        for (const ZeroPiece& p : shard_.pieces()) {
          const int64_t ob = std::max(sg, p.global), oe = std::min(sg + slen, p.global + p.len);
          if (oe <= ob) continue;
          copy_overlap(spath, name, t, soff + ob - sg, soff + oe - sg,
                       dst->view().slice(p.state + ob - p.global, p.state + oe - p.global),
                       dst == &v_);
        }
        soff += slen;
      }
    }
  }
  step_ = rec.step;
  micro_ = 0;
  have_norm_ = false;
  model_->zero_grads();
}

void Optimizer::copy_overlap(const std::string& spath, const char* name, const SafeTensorInfo& t,
                             int64_t b, int64_t e, const Tensor& dst, bool second_moment) {
  const Tensor part = t.tensor().slice(b, e);
  const model::NonfiniteCount bad = model::count_nonfinite(part);
  BEAVER_CHECK(!bad, spath, ": AdamW moment ", name, " holds ", model::describe_nonfinite(bad, part),
               "; refusing to resume from an optimizer state with non-finite values");
  if (second_moment) {
    const auto* bytes = static_cast<const uint8_t*>(part.data);
    for (int64_t i = 0; i < part.numel(); ++i) {
      float x;  // the mapped file need not be aligned for float
      std::memcpy(&x, bytes + 4 * i, 4);
      BEAVER_CHECK(x >= 0.0f, spath, ": AdamW moment v holds ", x, " at element ", b + i,
                   "; a second moment is never negative");
    }
  }
  copy_tensor(dst, part);
}

}  // namespace beaver::train
