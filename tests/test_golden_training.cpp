// Ten optimizer steps of SFT and of the reward model against PyTorch (golden data from
// `tools/make_golden.py --train`: torch.optim.AdamW, clip_grad_norm_ and transformers' cosine
// schedule with warmup, in float64 from the gqa/ fixture's float32 weights). Beaver runs the
// same steps on the CPU (fp32) with the optimizer a stage builds from its flags
// (stage_optimizer_config): per step the loss, the pre-clip gradient norm and the learning
// rate; at the end every weight.
//
// Tolerances (fp32 against float64):
// - loss and gradient norm, relative 1e-4 per step: the one-step parity test holds the loss to
//   1e-5 and each gradient to 1e-4 of its largest entry; ten steps of updates differ by the
//   weight error below (~1e-6 relative), which moves the loss far less than that.
// - learning rate, relative 1e-6: the same formula, float32 storage of the golden value.
// - final weights, per tensor, compared on the update (final - initial): the L2 norm of the
//   difference within 1e-3 of the update's norm, and every element within 2% of the largest
//   update of its tensor (measured: 8e-5 and 1.5e-3 at worst). Adam divides each gradient
//   element by its own running RMS, so an element whose gradient is tiny against its
//   tensor's largest (fp32 rounding of the gradient, ~1e-5 of the largest, is then a sizeable
//   share of it) can take a visibly different step; such elements are few, which the L2
//   bound expresses. What the test is there to catch moves whole tensors: weight decay on
//   the norm weights, a schedule shifted by one step, a missing clip.
#include <gtest/gtest.h>

#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <vector>

#include "csrc/context.h"
#include "csrc/safetensors.h"
#include "model/llama.h"
#include "model/loader.h"
#include "train/losses.h"
#include "train/optimizer.h"
#include "train/stages.h"
#include "testutil.h"

namespace beaver::train {
namespace {

using model::Batch;
using model::Head;
using model::LlamaModel;
using model::LlamaOptions;

std::string golden_dir() {
  const char* src = std::getenv("BEAVER_SOURCE_DIR");
  return std::string(src ? src : ".") + "/tests/data/golden/gqa";
}

std::vector<double> host(const Tensor& t) {
  const auto f = to_host_f32(t);
  return {f.begin(), f.end()};
}

std::vector<int32_t> i32_of(const Tensor& t) {
  const int32_t* p = t.ptr<int32_t>();
  return {p, p + t.numel()};
}

// Step t's part of a recording stacked over steps: elements [t·n, (t+1)·n).
std::vector<int32_t> step_part(const std::vector<int32_t>& all, int64_t t, int64_t n) {
  return {all.begin() + t * n, all.begin() + (t + 1) * n};
}

// Positions 0..S-1 in each of `rows` rows (the fixtures' batches are unpacked).
OwnedTensor row_positions(int64_t rows, int64_t S) {
  std::vector<int32_t> pos(size_t(rows * S));
  for (int64_t i = 0; i < rows * S; ++i) pos[size_t(i)] = int32_t(i % S);
  return test::int_tensor(pos, {rows, S});
}

double meta(const SafeTensorsFile& g, const char* key) {
  const auto it = g.metadata().find(key);
  BEAVER_CHECK(it != g.metadata().end(), "train_golden.safetensors: no metadata '", key, "'");
  return std::stod(it->second);
}

// The stage's optimizer for the golden run: the stage defaults, with the golden file's
// learning rate and weight decay; the file's record of the other settings must agree with
// those defaults (regenerate the data when a default changes).
OptimizerConfig golden_optimizer(const SafeTensorsFile& g, Stage stage, int64_t steps) {
  StageArgs a;
  a.stage = stage;
  a.learning_rate = meta(g, "lr");
  a.weight_decay = meta(g, "weight_decay");
  const OptimizerConfig oc = stage_optimizer_config(a, steps);
  EXPECT_EQ(oc.schedule.kind, ScheduleKind::Cosine);
  EXPECT_FLOAT_EQ(oc.beta1, float(meta(g, "beta1")));
  EXPECT_FLOAT_EQ(oc.beta2, float(meta(g, "beta2")));
  EXPECT_FLOAT_EQ(oc.eps, float(meta(g, "eps")));
  EXPECT_DOUBLE_EQ(oc.max_grad_norm, meta(g, "max_grad_norm"));
  EXPECT_DOUBLE_EQ(oc.schedule.warmup_ratio, meta(g, "warmup_ratio"));
  EXPECT_EQ(oc.accumulation, 1);
  EXPECT_FALSE(oc.decay_norms);
  return oc;
}

struct StepRecord {
  std::vector<double> loss, grad_norm, lr;
};

void expect_steps_match(const std::string& what, const StepRecord& got, const SafeTensorsFile& g,
                        const std::string& prefix) {
  const auto loss = host(g.at(prefix + "loss").tensor());
  const auto norm = host(g.at(prefix + "grad_norm").tensor());
  const auto lr = host(g.at(prefix + "lr").tensor());
  ASSERT_EQ(got.loss.size(), loss.size());
  for (size_t t = 0; t < loss.size(); ++t) {
    std::printf("  %s step %zu: loss %.6f (torch %.6f), grad norm %.5f (torch %.5f), lr %.3e\n",
                what.c_str(), t, got.loss[t], loss[t], got.grad_norm[t], norm[t], got.lr[t]);
    EXPECT_NEAR(got.loss[t], loss[t], 1e-4 * std::fabs(loss[t])) << what << " loss, step " << t;
    EXPECT_NEAR(got.grad_norm[t], norm[t], 1e-4 * norm[t]) << what << " grad norm, step " << t;
    EXPECT_NEAR(got.lr[t], lr[t], 1e-6 * std::fabs(lr[t]) + 1e-12) << what << " lr, step " << t;
  }
}

// Every parameter's update against torch's (see the tolerances above).
void expect_weights_match(const std::string& what, const LlamaModel& m,
                          const std::vector<std::vector<double>>& initial,
                          const SafeTensorsFile& g, const std::string& prefix) {
  double worst_rel = 0.0, worst_elem = 0.0;
  for (size_t k = 0; k < m.params().size(); ++k) {
    const std::string& name = m.params()[k].name;
    const auto got = host(m.param(name));
    const auto want = host(g.at(prefix + "final." + name).tensor());
    ASSERT_EQ(got.size(), want.size()) << name;
    double d2 = 0, u2 = 0, umax = 0, dmax = 0;
    for (size_t i = 0; i < got.size(); ++i) {
      const double u = want[i] - initial[k][i], d = got[i] - want[i];
      d2 += d * d;
      u2 += u * u;
      umax = std::max(umax, std::fabs(u));
      dmax = std::max(dmax, std::fabs(d));
    }
    const double rel = std::sqrt(d2 / u2);
    worst_rel = std::max(worst_rel, rel);
    worst_elem = std::max(worst_elem, dmax / umax);
    ASSERT_GT(umax, 0.0) << what << " " << name << ": torch did not move it";
    EXPECT_LE(rel, 1e-3) << what << " " << name << ": |update - torch's| = " << rel
                         << " of |torch's update|";
    EXPECT_LE(dmax, 0.02 * umax) << what << " " << name << ": an element is off by " << dmax
                                 << ", the largest update is " << umax;
  }
  std::printf("  %s: worst per-tensor |update - torch's| / |torch's update| = %.2e, worst "
              "element error / largest update of its tensor = %.2e\n",
              what.c_str(), worst_rel, worst_elem);
}

std::vector<std::vector<double>> snapshot(const LlamaModel& m) {
  std::vector<std::vector<double>> v;
  for (const auto& p : m.params()) v.push_back(host(m.param(p.name)));
  return v;
}

TEST(GoldenTraining, SftTenStepsMatchTorch) {
  Context ctx = Context::cpu(1);
  const std::string dir = golden_dir();
  SafeTensorsFile g(dir + "/train_golden.safetensors");
  const Tensor ids = g.at("sft.input_ids").tensor();
  const int64_t T = ids.size(0), B = ids.size(1), S = ids.size(2);
  ASSERT_EQ(T, int64_t(meta(g, "steps")));
  LlamaModel m(ctx, model::checkpoint_config(dir),
               LlamaOptions{.head = Head::LM, .max_batch = B, .max_seq = S, .training = true});
  model::load_weights(m, dir);
  const auto initial = snapshot(m);
  Optimizer opt(m, golden_optimizer(g, Stage::SFT, T));

  const auto h_ids = i32_of(ids);
  const auto h_ranges = i32_of(g.at("sft.ranges").tensor());
  const auto h_begin = i32_of(g.at("sft.label_begin").tensor());
  const OwnedTensor positions = row_positions(B, S);
  StepRecord rec;
  for (int64_t t = 0; t < T; ++t) {
    const auto tok = step_part(h_ids, t, B * S), rng = step_part(h_ranges, t, B * 2);
    const auto lb = step_part(h_begin, t, B);
    const OwnedTensor tokens = test::int_tensor(tok, {B, S}), ranges = test::int_tensor(rng, {B, 2});
    const OwnedTensor targets =
        test::int_tensor(model::next_token_targets(tok, rng, B, S, lb), {B, S});
    m.forward(Batch{tokens, ranges, positions});
    rec.loss.push_back(m.cross_entropy(targets));
    m.cross_entropy_backward(opt.loss_scale());
    ASSERT_TRUE(opt.micro_step());
    rec.grad_norm.push_back(opt.last_grad_norm());
    rec.lr.push_back(opt.last_lr());
  }
  expect_steps_match("sft", rec, g, "sft.");
  expect_weights_match("sft", m, initial, g, "sft.");
}

TEST(GoldenTraining, RewardModelTenStepsMatchTorch) {
  Context ctx = Context::cpu(1);
  const std::string dir = golden_dir();
  SafeTensorsFile g(dir + "/train_golden.safetensors");
  SafeTensorsFile sg(dir + "/score_golden.safetensors");
  const Tensor ids = g.at("rm.input_ids").tensor();
  const int64_t T = ids.size(0), R = ids.size(1), S = ids.size(2), B = R / 2;
  LlamaModel m(ctx, model::checkpoint_config(dir),
               LlamaOptions{.head = Head::Score, .max_batch = R, .max_seq = S, .training = true});
  model::load_weights(m, dir);
  copy_tensor(m.param("score_head.weight"), sg.at("score_head.weight").tensor());
  copy_tensor(m.param("score_head.bias"), sg.at("score_head.bias").tensor());
  const auto initial = snapshot(m);
  const OptimizerConfig oc = golden_optimizer(g, Stage::RM, T);
  Optimizer opt(m, oc);
  const double reg = ScoreLossConfig{}.regularization;  // the stage's default
  EXPECT_DOUBLE_EQ(reg, meta(g, "regularization"));

  const auto h_ids = i32_of(ids);
  const auto h_ranges = i32_of(g.at("rm.ranges").tensor());
  const OwnedTensor positions = row_positions(R, S);
  StepRecord rec;
  for (int64_t t = 0; t < T; ++t) {
    const auto tok = step_part(h_ids, t, R * S), rng = step_part(h_ranges, t, R * 2);
    const OwnedTensor tokens = test::int_tensor(tok, {R, S}), ranges = test::int_tensor(rng, {R, 2});
    m.forward(Batch{tokens, ranges, positions});
    OwnedTensor scores(DType::F32, {R, S}), ends(DType::F32, {R});
    m.scores(scores, ends);
    const auto e = to_host_f32(ends);
    const RewardLoss l = reward_loss(std::span<const float>(e.data(), size_t(B)),
                                     std::span<const float>(e.data() + B, size_t(B)), reg);
    std::vector<float> grad(l.grad_better);
    grad.insert(grad.end(), l.grad_worse.begin(), l.grad_worse.end());
    for (float& x : grad) x *= opt.loss_scale();
    copy_tensor(ends, Tensor(grad.data(), DType::F32, Shape{R}, Device::CPU));
    m.scores_backward(Tensor{}, ends);
    ASSERT_TRUE(opt.micro_step());
    rec.loss.push_back(l.loss);
    rec.grad_norm.push_back(opt.last_grad_norm());
    rec.lr.push_back(opt.last_lr());
  }
  expect_steps_match("rm", rec, g, "rm.");
  expect_weights_match("rm", m, initial, g, "rm.");
}

}  // namespace
}  // namespace beaver::train
