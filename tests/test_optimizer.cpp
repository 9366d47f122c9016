// Optimizer (train/optimizer.h) against ops::adamw_step semantics: decay segments that leave
// norms and biases alone, bit-equality with a direct adamw_step, clipping through grad_scale,
// the learning-rate schedule, accumulation vs one big batch, and state save/load.
#include <gtest/gtest.h>

#include <cmath>
#include <map>
#include <memory>
#include <vector>

#include "csrc/ops/adamw.h"
#include "format_fixtures.h"
#include "model/llama.h"
#include "testutil.h"
#include "train/batching.h"
#include "train/init_model.h"
#include "train/losses.h"
#include "train/optimizer.h"
#include "train_fixtures.h"

namespace beaver {
namespace {

std::unique_ptr<model::LlamaModel> tiny_score_model(Context& ctx, int64_t max_batch = 8) {
  model::LlamaOptions o;
  o.head = model::Head::Score;
  o.max_batch = max_batch;
  o.max_seq = 16;
  auto m = std::make_unique<model::LlamaModel>(ctx, test::tiny_config(50), o);
  train::random_init(*m, 7);
  return m;
}

train::OptimizerConfig base_config() {
  train::OptimizerConfig c;
  c.schedule.kind = train::ScheduleKind::Constant;
  c.schedule.base_lr = 1e-2;
  c.schedule.warmup_ratio = 0.0;
  c.schedule.total_steps = 100;
  c.max_grad_norm = 0.0;
  return c;
}

void set_grads(const model::LlamaModel& m, uint64_t seed, float scale = 1.0f) {
  // Random values inside the parameter tensors; the alignment gaps stay zero.
  for (const auto& p : m.params()) {
    auto v = test::random_vec(size_t(p.shape.numel()), seed++, -scale, scale);
    copy_tensor(m.grad(p.name), Tensor(v.data(), DType::F32, p.shape, Device::CPU));
  }
}

std::vector<float> host(const Tensor& t) { return to_host_f32(t); }

TEST(Optimizer, DecaySegmentsLeaveNormsAndBiasAlone) {
  Context ctx = Context::cpu(1);
  auto m = tiny_score_model(ctx);
  copy_tensor(m->param("score_head.bias"), test::host_tensor({0.5f}, Shape{1}));
  auto cfg = base_config();
  cfg.weight_decay = 0.1;
  train::Optimizer opt(*m, cfg);
  std::map<std::string, std::vector<float>> before;
  for (const auto& p : m->params()) before[p.name] = host(m->param(p.name));
  m->zero_grads();  // zero gradient: only weight decay moves a parameter
  ASSERT_TRUE(opt.micro_step());
  const float keep = 1.0f - float(1e-2) * 0.1f;
  int decayed = 0, kept = 0;
  for (const auto& p : m->params()) {
    const auto after = host(m->param(p.name));
    const auto& b = before[p.name];
    for (size_t i = 0; i < b.size(); ++i) {
      if (p.is_norm || p.is_bias) {
        ASSERT_EQ(after[i], b[i]) << p.name << "[" << i << "] changed";
      } else {
        ASSERT_NEAR(after[i], b[i] * keep, 1e-7 + 1e-6 * std::fabs(b[i])) << p.name;
      }
    }
    (p.is_norm || p.is_bias) ? ++kept : ++decayed;
  }
  EXPECT_EQ(kept, 2 * 2 + 1 + 1);  // 2 norms per layer, final norm, score bias
  EXPECT_GT(decayed, 0);

  // decay_norms = true: norm weights decay as well, the bias still does not.
  cfg.decay_norms = true;
  train::Optimizer opt2(*m, cfg);
  const auto norm_before = host(m->param("model.norm.weight"));
  const auto bias_before = host(m->param("score_head.bias"));
  m->zero_grads();
  opt2.micro_step();
  EXPECT_NEAR(host(m->param("model.norm.weight"))[0], norm_before[0] * keep, 1e-6);
  EXPECT_EQ(host(m->param("score_head.bias"))[0], bias_before[0]);
}

TEST(Optimizer, StepsMatchAdamWBitwise) {
  Context ctx = Context::cpu(1);
  auto m = tiny_score_model(ctx);
  auto cfg = base_config();
  cfg.weight_decay = 0.05;
  cfg.schedule.kind = train::ScheduleKind::Cosine;
  cfg.schedule.warmup_ratio = 0.1;
  cfg.schedule.total_steps = 10;
  train::Optimizer opt(*m, cfg);
  const Tensor flat = m->flat_params();
  OwnedTensor p(DType::F32, flat.shape), g(DType::F32, flat.shape), mm(DType::F32, flat.shape),
      vv(DType::F32, flat.shape);
  copy_tensor(p, flat);
  zero_tensor(mm);
  zero_tensor(vv);
  for (int s = 0; s < 4; ++s) {
    set_grads(*m, 100 + 10 * s);
    copy_tensor(g, m->flat_grads());
    const double lr = cfg.schedule.lr(s);
    EXPECT_DOUBLE_EQ(opt.next_lr(), lr);
    ASSERT_TRUE(opt.micro_step());
    EXPECT_DOUBLE_EQ(opt.last_lr(), lr);
    ops::AdamWConfig ac;
    ac.lr = float(lr);
    ac.weight_decay = 0.05f;
    ac.step = s + 1;
    ops::adamw_step(ctx, p, g, mm, vv, Tensor{}, Tensor{}, m->decay_segments(false), ac);
    const auto got = host(flat), want = host(p);
    for (size_t i = 0; i < got.size(); ++i) ASSERT_EQ(got[i], want[i]) << "step " << s << " i " << i;
    // Gradients are cleared after the step.
    for (float x : host(m->flat_grads())) ASSERT_EQ(x, 0.0f);
  }
  EXPECT_EQ(opt.step(), 4);
}

TEST(Optimizer, ClippingFeedsTheCoefficient) {
  Context ctx = Context::cpu(1);
  auto m = tiny_score_model(ctx);
  auto cfg = base_config();
  cfg.max_grad_norm = 1.0;
  train::Optimizer opt(*m, cfg);
  set_grads(*m, 5, 0.5f);
  const auto g = host(m->flat_grads());
  double ss = 0.0;
  for (float x : g) ss += double(x) * double(x);
  const double norm = std::sqrt(ss);
  ASSERT_GT(norm, 2.0);  // the clip is active
  opt.micro_step();
  EXPECT_NEAR(opt.last_grad_norm(), norm, 1e-5 * norm);
  const double coef = 1.0 / (norm + 1e-6);
  const auto m1 = host(opt.exp_avg());
  for (size_t i = 0; i < g.size(); i += 97)
    ASSERT_NEAR(m1[i], 0.1 * g[i] * coef, 1e-6 * std::fabs(0.1 * g[i] * coef) + 1e-12) << i;

  // Below the threshold nothing is scaled.
  cfg.max_grad_norm = 1e6;
  train::Optimizer opt2(*m, cfg);
  set_grads(*m, 5, 0.5f);
  opt2.micro_step();
  const auto m2 = host(opt2.exp_avg());
  for (size_t i = 0; i < g.size(); i += 97) ASSERT_NEAR(m2[i], 0.1f * g[i], 1e-7) << i;
}

TEST(Optimizer, AccumulationEqualsOneBigBatch) {
  // 4 pairs as one micro-batch vs 2 + 2 with accumulation 2: the same mean loss, so the same
  // gradient up to rounding (compared through the first moment, m = (1 - beta1) g).
  Context ctx = Context::cpu(1);
  std::vector<train::PairSample> pairs;
  for (int i = 0; i < 4; ++i) {
    train::PairSample p;
    for (int t = 0; t < 6 + i; ++t) p.a.push_back(int32_t(3 + (7 * i + 3 * t) % 40));
    for (int t = 0; t < 9 - i; ++t) p.b.push_back(int32_t(3 + (5 * i + 11 * t) % 40));
    pairs.push_back(p);
  }
  train::BatchLayout L;
  L.max_length = 16;
  L.vocab_size = 50;
  L.pad_id = 49;
  auto run = [&](int64_t accum) {
    auto m = tiny_score_model(ctx);
    auto cfg = base_config();
    cfg.accumulation = accum;
    auto opt = std::make_unique<train::Optimizer>(*m, cfg);
    const size_t per = size_t(4 / accum);
    int steps = 0;
    for (size_t i = 0; i < 4; i += per) {
      const train::PairBatch pb =
          train::make_pair_batch(std::span<const train::PairSample>(pairs.data() + i, per), L);
      OwnedTensor sc(DType::F32, Shape{pb.rows, pb.width}), end(DType::F32, Shape{pb.rows});
      m->forward(pb.batch());
      m->scores(sc, end);
      const auto e = host(end);
      const size_t B = size_t(pb.pairs);
      const auto l = train::reward_loss(std::span<const float>(e.data(), B),
                                        std::span<const float>(e.data() + B, B));
      std::vector<float> d(2 * B);
      for (size_t k = 0; k < B; ++k) {
        d[k] = l.grad_better[k] * opt->loss_scale();
        d[B + k] = l.grad_worse[k] * opt->loss_scale();
      }
      copy_tensor(end, Tensor(d.data(), DType::F32, Shape{pb.rows}, Device::CPU));
      m->scores_backward(Tensor{}, end);
      steps += opt->micro_step();
    }
    EXPECT_EQ(steps, 1);
    EXPECT_EQ(opt->step(), 1);
    return host(opt->exp_avg());
  };
  const auto big = run(1), acc = run(2);
  double max_rel = 0.0, max_abs = 0.0;
  for (size_t i = 0; i < big.size(); ++i) {
    max_abs = std::max(max_abs, std::fabs(double(big[i]) - double(acc[i])));
    max_rel = std::max(max_rel, std::fabs(double(big[i]) - double(acc[i])) /
                                    std::max(std::fabs(double(big[i])), 1e-6));
  }
  EXPECT_LT(max_rel, 1e-3) << "max abs " << max_abs;
  double norm = 0.0;
  for (float x : big) norm += std::fabs(x);
  EXPECT_GT(norm, 0.0);
}

TEST(Optimizer, MicroStepCountsAndFlush) {
  Context ctx = Context::cpu(1);
  auto m = tiny_score_model(ctx);
  auto cfg = base_config();
  cfg.accumulation = 3;
  train::Optimizer opt(*m, cfg);
  EXPECT_FLOAT_EQ(opt.loss_scale(), 1.0f / 3.0f);
  EXPECT_FALSE(opt.micro_step());
  EXPECT_FALSE(opt.micro_step());
  EXPECT_TRUE(opt.micro_step());
  EXPECT_EQ(opt.step(), 1);
  EXPECT_FALSE(opt.flush());
  EXPECT_FALSE(opt.micro_step());
  EXPECT_EQ(opt.pending_micro(), 1);
  EXPECT_TRUE(opt.flush());
  EXPECT_EQ(opt.step(), 2);
  EXPECT_EQ(opt.pending_micro(), 0);
}

TEST(Optimizer, SaveLoadContinuesBitwise) {
  test::TempDir tmp;
  Context ctx = Context::cpu(1);
  auto a = tiny_score_model(ctx);
  auto cfg = base_config();
  cfg.weight_decay = 0.01;
  train::Optimizer oa(*a, cfg);
  for (int s = 0; s < 2; ++s) {
    set_grads(*a, 40 + s);
    oa.micro_step();
  }
  oa.save(tmp / "opt");
  auto b = tiny_score_model(ctx);
  copy_tensor(b->flat_params(), a->flat_params());
  train::Optimizer ob(*b, cfg);
  ob.load(tmp / "opt");
  EXPECT_EQ(ob.step(), 2);
  for (int s = 0; s < 2; ++s) {
    set_grads(*a, 60 + s);
    set_grads(*b, 60 + s);
    oa.micro_step();
    ob.micro_step();
  }
  const auto pa = host(a->flat_params()), pb = host(b->flat_params());
  for (size_t i = 0; i < pa.size(); ++i) ASSERT_EQ(pa[i], pb[i]) << i;

  // A state for another model size is refused, naming the file.
  model::LlamaOptions o;
  o.head = model::Head::Score;
  o.max_batch = 1;
  o.max_seq = 4;
  auto cfg_small = test::tiny_config(30);
  model::LlamaModel small(ctx, cfg_small, o);
  train::Optimizer os(small, cfg);
  test::expect_error([&] { os.load(tmp / "opt"); }, {"optimizer.json", "parameters"});
  // Saving with accumulated gradients pending is refused.
  cfg.accumulation = 2;
  train::Optimizer op(*a, cfg);
  op.micro_step();
  test::expect_error([&] { op.save(tmp / "opt2"); }, {"accumulated"});
}

}  // namespace
}  // namespace beaver
