// The LLaMA graph against Hugging Face transformers (golden data from tools/make_golden.py,
// computed in float64 on the same float32 parameters) on three tiny checkpoints: MHA, GQA with
// odd sizes, tied embeddings with llama3 rope scaling. Checked on the CPU backend (fp32):
// logits, every layer's hidden state, the CE loss and every parameter gradient on a
// right-padded batch with explicit position ids; greedy generation (batched, left-padded,
// KV cache) token-identical for 40 tokens; the safe-rlhf score head (end scores and all
// gradients) against a PyTorch score model; recomputation on/off bitwise identical; end scores
// independent of the padding side; the chunked log-prob path against full logits.
#include <gtest/gtest.h>

#include <cmath>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

#include "csrc/context.h"
#include "csrc/safetensors.h"
#include "model/loader.h"
#include "model/engine.h"
#include "model/llama.h"
#include "testutil.h"

namespace beaver::model {
namespace {

std::string golden_dir(const std::string& name) {
  const char* src = std::getenv("BEAVER_SOURCE_DIR");
  return std::string(src ? src : ".") + "/tests/data/golden/" + name;
}

std::vector<double> as_double(const Tensor& t) {
  const auto f = to_host_f32(t);
  return {f.begin(), f.end()};
}

// Rows [begin, end) of each batch row of a [B, S, X] tensor, flattened (pad rows dropped).
std::vector<double> valid_rows(const Tensor& t, const std::vector<int32_t>& ranges) {
  const auto all = as_double(t);
  const int64_t B = t.size(0), S = t.size(1), X = t.numel() / (B * S);
  std::vector<double> out;
  for (int64_t b = 0; b < B; ++b)
    for (int64_t s = ranges[size_t(2 * b)]; s < ranges[size_t(2 * b + 1)]; ++s)
      out.insert(out.end(), all.begin() + (b * S + s) * X, all.begin() + (b * S + s + 1) * X);
  return out;
}

// allclose-style check |got - want| <= rtol * |want| + atol; prints the largest absolute
// error and its ratio to the largest |want| (the figure that says how close the tensor is).
struct Diff {
  double max_rel = 0, max_abs = 0, scale = 0;
  size_t bad = 0, worst = 0;
};
Diff diff(const std::vector<double>& got, const std::vector<double>& want, double rtol,
          double atol) {
  Diff d;
  EXPECT_EQ(got.size(), want.size());
  for (size_t i = 0; i < std::min(got.size(), want.size()); ++i) {
    const double a = std::fabs(got[i] - want[i]);
    if (!(a <= rtol * std::fabs(want[i]) + atol)) {
      if (d.bad == 0) d.worst = i;
      ++d.bad;
    }
    d.max_abs = std::max(d.max_abs, std::isfinite(a) ? a : 1e300);
    d.scale = std::max(d.scale, std::fabs(want[i]));
    if (std::fabs(want[i]) >= atol) d.max_rel = std::max(d.max_rel, a / std::fabs(want[i]));
  }
  return d;
}

#define EXPECT_ALLCLOSE(what, got, want, rtol, atol)                                         \
  do {                                                                                       \
    const auto g_ = (got);                                                                   \
    const auto w_ = (want);                                                                  \
    const Diff d_ = diff(g_, w_, (rtol), (atol));                                            \
    EXPECT_EQ(d_.bad, 0u) << (what) << ": " << d_.bad << " of " << w_.size()                 \
                          << " elements off; first at " << d_.worst << " got "               \
                          << g_[d_.worst] << " want " << w_[d_.worst]                        \
                          << " (max rel " << d_.max_rel << ", max abs " << d_.max_abs << ")"; \
    std::printf("  %-52s max abs err %.2e = %.2e of max |want| %.2e\n",                      \
                std::string(what).c_str(), d_.max_abs, d_.max_abs / std::max(d_.scale, 1e-300),  \
                d_.scale);                                                                     \
  } while (0)

std::vector<int32_t> i32_of(const SafeTensorInfo& t) {
  const Tensor v = t.tensor();
  const int32_t* p = v.ptr<int32_t>();
  return {p, p + v.numel()};
}

double max_abs_of(const std::vector<double>& v) {
  double m = 0;
  for (double x : v) m = std::max(m, std::fabs(x));
  return m;
}

// Every parameter gradient of m against "<prefix><name>" of a golden file. Tolerance relative
// to each tensor's largest entry: a gradient element is a sum over all tokens of products
// that partly cancel, so its fp32 rounding error scales with the magnitude of the terms (~ the
// tensor's largest entries), not with its own value; a per-element relative bound would fail
// on entries that cancel to near zero.
void expect_grads_match(const LlamaModel& m, const SafeTensorsFile& golden,
                        const std::string& label) {
  for (const auto& p : m.params()) {
    const auto want = as_double(golden.at("grad." + p.name).tensor());
    EXPECT_ALLCLOSE(label + " grad " + p.name, as_double(m.grad(p.name)), want, 1e-4,
                    1e-5 * max_abs_of(want));
  }
}

// Copies the batch of a golden file into owned tensors.
struct GoldenBatch {
  OwnedTensor tokens, ranges, positions;
  std::vector<int32_t> h_tokens, h_ranges;
  int64_t B = 0, S = 0;
  explicit GoldenBatch(const SafeTensorsFile& g) {
    h_tokens = i32_of(g.at("input_ids"));
    h_ranges = i32_of(g.at("ranges"));
    const auto pos = i32_of(g.at("position_ids"));
    B = g.at("input_ids").shape[0];
    S = g.at("input_ids").shape[1];
    tokens = test::int_tensor(h_tokens, {B, S});
    ranges = test::int_tensor(h_ranges, {B, 2});
    positions = test::int_tensor(pos, {B, S});
  }
  Batch batch() const { return Batch{tokens, ranges, positions}; }
};

class Parity : public ::testing::TestWithParam<const char*> {};

TEST_P(Parity, ForwardLossGradientsMatchTransformers) {
  Context ctx = Context::cpu(1);
  const std::string dir = golden_dir(GetParam());
  const LlamaConfig cfg = checkpoint_config(dir);
  SafeTensorsFile g(dir + "/golden.safetensors");
  GoldenBatch gb(g);
  LlamaModel m(
      ctx, cfg,
      LlamaOptions{.head = Head::LM, .max_batch = gb.B, .max_seq = gb.S, .training = true});
  load_weights(m, dir);

  m.forward(gb.batch());
  OwnedTensor logits(DType::F32, {gb.B, gb.S, cfg.vocab_size});
  test::poison(logits);
  m.logits(logits);
  const std::string name = GetParam();
  EXPECT_ALLCLOSE(name + " logits", valid_rows(logits, gb.h_ranges),
                  valid_rows(g.at("logits").tensor(), gb.h_ranges), 1e-5, 1e-5);
  EXPECT_ALLCLOSE(name + " hidden.embed", valid_rows(m.hidden(0), gb.h_ranges),
                  valid_rows(g.at("hidden.embed").tensor(), gb.h_ranges), 1e-5, 1e-5);
  for (int l = 0; l < int(cfg.num_hidden_layers); ++l)
    EXPECT_ALLCLOSE(cat(name, " hidden.", l), valid_rows(m.hidden(l + 1), gb.h_ranges),
                    valid_rows(g.at(cat("hidden.", l)).tensor(), gb.h_ranges), 1e-5, 1e-5);
  EXPECT_ALLCLOSE(name + " hidden.final", valid_rows(m.final_hidden(), gb.h_ranges),
                  valid_rows(g.at("hidden.final").tensor(), gb.h_ranges), 1e-5, 1e-5);

  const auto targets = next_token_targets(gb.h_tokens, gb.h_ranges, gb.B, gb.S);
  const OwnedTensor tg = test::int_tensor(targets, {gb.B, gb.S});
  const double loss = m.cross_entropy(tg);
  const double want_loss = as_double(g.at("loss").tensor())[0];
  EXPECT_ALLCLOSE(name + " loss", std::vector<double>{loss}, std::vector<double>{want_loss},
                  1e-5, 0.0);

  m.zero_grads();
  m.cross_entropy_backward();
  expect_grads_match(m, g, name);
}

TEST_P(Parity, GreedyGenerationIsTokenIdentical) {
  Context ctx = Context::cpu(1);
  const std::string dir = golden_dir(GetParam());
  const LlamaConfig cfg = checkpoint_config(dir);
  SafeTensorsFile g(dir + "/golden.safetensors");
  std::vector<std::vector<int32_t>> prompts, want;
  for (int i = 0; g.find(cat("prompt.", i)); ++i) {
    prompts.push_back(i32_of(g.at(cat("prompt.", i))));
    want.push_back(i32_of(g.at(cat("greedy.", i))));
  }
  ASSERT_EQ(prompts.size(), 3u);
  int64_t longest = 0;
  for (const auto& p : prompts) longest = std::max<int64_t>(longest, int64_t(p.size()));
  LlamaModel m(
      ctx, cfg,
      LlamaOptions{.head = Head::LM, .max_batch = 3, .max_seq = longest, .training = false});
  load_weights(m, dir);
  InferenceEngine eng(m, longest + 40);
  GenerateOptions go;
  go.sampling.temperature = 0.0f;
  go.max_new_tokens = int64_t(want[0].size());
  go.eos_id = -1;  // the golden paths do not stop at EOS
  const auto out = eng.generate(prompts, go);
  for (size_t i = 0; i < prompts.size(); ++i) {
    EXPECT_EQ(out[i].tokens, want[i]) << GetParam() << " prompt " << i;
    EXPECT_GE(out[i].tokens.size(), 32u);
  }
  std::printf("  %s: prefill %.0f tok/s, decode %.0f tok/s (1 thread)\n", GetParam(),
              eng.stats().prefill_tokens_per_s(), eng.stats().decode_tokens_per_s());
}

INSTANTIATE_TEST_SUITE_P(Fixtures, Parity, ::testing::Values("mha", "gqa", "tied_llama3"),
                         [](const auto& p) { return std::string(p.param); });

// The same batch left-padded (positions counted from each row's begin) gives HF's loss and
// gradients too: padding side is a layout choice, not a change of the function.
TEST(LlamaModel, LeftPaddedBatchMatchesTransformers) {
  Context ctx = Context::cpu(1);
  const std::string dir = golden_dir("gqa");
  const LlamaConfig cfg = checkpoint_config(dir);
  SafeTensorsFile g(dir + "/golden.safetensors");
  GoldenBatch gb(g);
  const int64_t B = gb.B, S = gb.S;
  std::vector<int32_t> tok(size_t(B * S), 0), pos(size_t(B * S), 0), rng(size_t(2 * B));
  for (int64_t b = 0; b < B; ++b) {
    const int64_t n = gb.h_ranges[size_t(2 * b + 1)], shift = S - n;
    for (int64_t i = 0; i < n; ++i) {
      tok[size_t(b * S + shift + i)] = gb.h_tokens[size_t(b * S + i)];
      pos[size_t(b * S + shift + i)] = int32_t(i);
    }
    rng[size_t(2 * b)] = int32_t(shift);
    rng[size_t(2 * b + 1)] = int32_t(S);
  }
  const OwnedTensor t = test::int_tensor(tok, {B, S}), r = test::int_tensor(rng, {B, 2}),
                    p = test::int_tensor(pos, {B, S}),
                    tg = test::int_tensor(next_token_targets(tok, rng, B, S), {B, S});
  LlamaModel m(
      ctx, cfg,
      LlamaOptions{
          .head = Head::LM, .max_batch = B, .max_seq = S, .training = true, .recompute = true});
  load_weights(m, dir);
  m.forward(Batch{t, r, p});
  const double loss = m.cross_entropy(tg);
  EXPECT_ALLCLOSE("left-padded loss", std::vector<double>{loss},
                  as_double(g.at("loss").tensor()), 1e-5, 0.0);
  m.cross_entropy_backward();
  expect_grads_match(m, g, "left-padded");
}

// Gradients with per-layer recomputation are bitwise those without it.
TEST(LlamaModel, RecomputationGivesIdenticalGradients) {
  Context ctx = Context::cpu(1);
  const std::string dir = golden_dir("gqa");
  const LlamaConfig cfg = checkpoint_config(dir);
  SafeTensorsFile g(dir + "/golden.safetensors");
  GoldenBatch gb(g);
  const auto targets = next_token_targets(gb.h_tokens, gb.h_ranges, gb.B, gb.S);
  const OwnedTensor tg = test::int_tensor(targets, {gb.B, gb.S});
  std::vector<std::vector<float>> grads;
  std::vector<double> losses;
  for (bool recompute : {false, true}) {
    LlamaModel m(ctx, cfg,
                 LlamaOptions{.head = Head::LM,
                              .max_batch = gb.B,
                              .max_seq = gb.S,
                              .training = true,
                              .recompute = recompute});
    load_weights(m, dir);
    m.forward(gb.batch());
    losses.push_back(m.cross_entropy(tg));
    m.cross_entropy_backward();
    grads.push_back(to_host_f32(m.flat_grads()));
  }
  EXPECT_EQ(losses[0], losses[1]);
  ASSERT_EQ(grads[0].size(), grads[1].size());
  EXPECT_EQ(std::memcmp(grads[0].data(), grads[1].data(), grads[0].size() * 4), 0)
      << "gradients differ with recomputation";
  double norm = 0;
  for (float x : grads[0]) norm += double(x) * x;
  EXPECT_GT(norm, 0.0);
}

// The chunked log-prob path (logits never all in memory) equals log_softmax of the full logits.
TEST(LlamaModel, ChunkedLogprobsMatchFullLogits) {
  Context ctx = Context::cpu(1);
  const std::string dir = golden_dir("mha");
  const LlamaConfig cfg = checkpoint_config(dir);
  SafeTensorsFile g(dir + "/golden.safetensors");
  GoldenBatch gb(g);
  LlamaModel m(ctx, cfg,
               LlamaOptions{.head = Head::LM,
                            .max_batch = gb.B,
                            .max_seq = gb.S,
                            .training = true,
                            .logits_chunk_rows = 5});
  load_weights(m, dir);
  m.forward(gb.batch());
  const auto targets = next_token_targets(gb.h_tokens, gb.h_ranges, gb.B, gb.S);
  const OwnedTensor tg = test::int_tensor(targets, {gb.B, gb.S});
  OwnedTensor logp(DType::F32, {gb.B, gb.S});
  test::poison(logp);
  m.token_logprobs(tg, logp);
  OwnedTensor logits(DType::F32, {gb.B, gb.S, cfg.vocab_size});
  m.logits(logits);
  const int64_t V = cfg.vocab_size;
  std::vector<double> want(size_t(gb.B * gb.S), 0.0);
  for (int64_t t = 0; t < gb.B * gb.S; ++t) {
    if (targets[size_t(t)] < 0) continue;
    const float* row = logits.ptr<float>() + t * V;
    double mx = row[0], sum = 0;
    for (int64_t v = 0; v < V; ++v) mx = std::max(mx, double(row[v]));
    for (int64_t v = 0; v < V; ++v) sum += std::exp(double(row[v]) - mx);
    want[size_t(t)] = double(row[targets[size_t(t)]]) - mx - std::log(sum);
  }
  EXPECT_ALLCLOSE("chunked logp", as_double(logp), want, 1e-5, 1e-6);
}

// The score head against a PyTorch safe-rlhf score model (decoder + Linear(H, 1, bias)):
// scores at every valid position, end scores, and all gradients of sum_b c_b * end_score_b.
TEST(ScoreHead, MatchesPyTorchScoreModel) {
  Context ctx = Context::cpu(1);
  const std::string dir = golden_dir("gqa");
  const LlamaConfig cfg = checkpoint_config(dir);
  SafeTensorsFile g(dir + "/golden.safetensors");
  SafeTensorsFile sg(dir + "/score_golden.safetensors");
  GoldenBatch gb(g);
  LlamaModel m(
      ctx, cfg,
      LlamaOptions{.head = Head::Score, .max_batch = gb.B, .max_seq = gb.S, .training = true});
  // Built from a causal LM: the LM head is dropped and a fresh head made (replaced below).
  EXPECT_TRUE(load_weights(m, dir).fresh_score_head);
  copy_tensor(m.param("score_head.weight"), sg.at("score_head.weight").tensor());
  copy_tensor(m.param("score_head.bias"), sg.at("score_head.bias").tensor());
  m.forward(gb.batch());
  OwnedTensor scores(DType::F32, {gb.B, gb.S}), end(DType::F32, {gb.B});
  test::poison(scores);
  test::poison(end);
  m.scores(scores, end);
  EXPECT_ALLCLOSE("score scores", valid_rows(scores.view().view({gb.B, gb.S, 1}), gb.h_ranges),
                  valid_rows(sg.at("scores").tensor().view({gb.B, gb.S, 1}), gb.h_ranges), 1e-5,
                  1e-5);
  EXPECT_ALLCLOSE("score end_scores", as_double(end), as_double(sg.at("end_scores").tensor()),
                  1e-5, 1e-5);
  OwnedTensor coef(DType::F32, {gb.B});
  copy_tensor(coef, sg.at("coef").tensor());
  m.zero_grads();
  m.scores_backward(Tensor{}, coef);
  expect_grads_match(m, sg, "score");
}

// The end score is the score of the last valid token, whatever the padding side.
TEST(ScoreHead, EndScoreIndependentOfPaddingSide) {
  Context ctx = Context::cpu(1);
  const std::string dir = golden_dir("gqa");
  const LlamaConfig cfg = checkpoint_config(dir);
  const std::vector<std::vector<int32_t>> seqs = {
      {1, 17, 5, 88, 42, 9, 61}, {1, 30, 2}, {1, 4, 50, 77, 12, 90, 33, 21, 8, 2}};
  const int64_t B = 3, S = 12;
  std::vector<std::vector<float>> ends, at_end;
  for (bool left : {false, true}) {
    std::vector<int32_t> tok(size_t(B * S), 0), pos(size_t(B * S), 0), rng(size_t(2 * B));
    for (int64_t b = 0; b < B; ++b) {
      const int64_t n = int64_t(seqs[size_t(b)].size());
      const int64_t begin = left ? S - n : 0;
      for (int64_t i = 0; i < n; ++i) {
        tok[size_t(b * S + begin + i)] = seqs[size_t(b)][size_t(i)];
        pos[size_t(b * S + begin + i)] = int32_t(i);
      }
      rng[size_t(2 * b)] = int32_t(begin);
      rng[size_t(2 * b + 1)] = int32_t(begin + n);
    }
    LlamaModel m(
        ctx, cfg,
        LlamaOptions{.head = Head::Score, .max_batch = B, .max_seq = S, .training = false});
    load_weights(m, dir);
    m.init_score_head(3);
    const OwnedTensor t = test::int_tensor(tok, {B, S}), r = test::int_tensor(rng, {B, 2}),
                      p = test::int_tensor(pos, {B, S});
    m.forward(Batch{t, r, p});
    OwnedTensor scores(DType::F32, {B, S}), end(DType::F32, {B});
    m.scores(scores, end);
    ends.push_back(to_host_f32(end));
    std::vector<float> e;
    for (int64_t b = 0; b < B; ++b) e.push_back(scores.ptr<float>()[b * S + rng[size_t(2 * b + 1)] - 1]);
    at_end.push_back(e);
  }
  for (int k = 0; k < 2; ++k)
    EXPECT_EQ(ends[size_t(k)], at_end[size_t(k)]) << "end score is not the score at end - 1";
  EXPECT_ALLCLOSE("end score left vs right padding",
                  std::vector<double>(ends[1].begin(), ends[1].end()),
                  std::vector<double>(ends[0].begin(), ends[0].end()), 1e-5, 1e-6);
  // The three rows have different scores (a head that ignored the input would pass above).
  EXPECT_NE(ends[0][0], ends[0][1]);
}

// The other stored layouts of the fixtures (pytorch_model.bin; sharded safetensors with an
// index) load to exactly the same parameters; a model with one more vocabulary row (the added
// <pad>) gets the mean of the stored rows there.
TEST(Loader, BinAndShardedFoldersGiveTheSameParameters) {
  Context ctx = Context::cpu(1);
  for (const auto& [base, other] : {std::pair{"mha", "mha_bin"}, std::pair{"gqa", "gqa_sharded"}}) {
    const LlamaConfig cfg = checkpoint_config(golden_dir(base));
    LlamaModel a(ctx, cfg,
                 LlamaOptions{.head = Head::LM, .max_batch = 1, .max_seq = 1, .training = false});
    LlamaModel b(ctx, cfg,
                 LlamaOptions{.head = Head::LM, .max_batch = 1, .max_seq = 1, .training = false});
    EXPECT_EQ(load_weights(a, golden_dir(base)).source, "model.safetensors");
    const LoadReport rep = load_weights(b, golden_dir(other));
    EXPECT_NE(rep.source, "model.safetensors") << other;
    const auto pa = to_host_f32(a.flat_params()), pb = to_host_f32(b.flat_params());
    ASSERT_EQ(pa.size(), pb.size());
    EXPECT_EQ(std::memcmp(pa.data(), pb.data(), pa.size() * 4), 0) << other;
  }
}

TEST(Loader, AddedVocabularyRowIsTheMean) {
  Context ctx = Context::cpu(1);
  const std::string dir = golden_dir("mha");
  LlamaConfig cfg = checkpoint_config(dir);
  const int64_t V = cfg.vocab_size, H = cfg.hidden_size;
  cfg.vocab_size = V + 1;
  LlamaModel m(ctx, cfg,
               LlamaOptions{.head = Head::LM, .max_batch = 1, .max_seq = 1, .training = false});
  EXPECT_EQ(load_weights(m, dir).added_vocab_rows, 1);
  SafeTensorsFile f(dir + "/model.safetensors");
  for (const char* name : {"model.embed_tokens.weight", "lm_head.weight"}) {
    const auto stored = as_double(f.at(name).tensor());
    const auto got = to_host_f32(m.param(name));
    ASSERT_EQ(int64_t(got.size()), (V + 1) * H);
    for (int64_t j = 0; j < H; ++j) {
      double mean = 0;
      for (int64_t r = 0; r < V; ++r) mean += stored[size_t(r * H + j)];
      EXPECT_EQ(got[size_t(V * H + j)], float(mean / double(V))) << name << " column " << j;
      EXPECT_EQ(got[size_t(j)], float(stored[size_t(j)]));
    }
  }
  // Sizes that differ otherwise are refused, naming the field.
  LlamaConfig wrong = checkpoint_config(dir);
  wrong.intermediate_size += 1;
  LlamaModel w(ctx, wrong,
               LlamaOptions{.head = Head::LM, .max_batch = 1, .max_seq = 1, .training = false});
  try {
    load_weights(w, dir);
    ADD_FAILURE() << "loaded into a model of another size";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("intermediate_size"), std::string::npos) << e.what();
  }
}

// save_weights → load_weights round trip: a score model (fresh head) comes back bit-identical
// and as a score model; a score-model checkpoint cannot make a causal LM.
TEST(Loader, ScoreModelRoundTripsThroughABeaverCheckpoint) {
  Context ctx = Context::cpu(1);
  const std::string src = golden_dir("tied_llama3");
  const LlamaConfig cfg = checkpoint_config(src);
  LlamaModel a(ctx, cfg,
               LlamaOptions{.head = Head::Score, .max_batch = 1, .max_seq = 1, .training = false});
  load_weights(a, src, 9);
  const std::string dir = testing::TempDir() + "/beaver_score_roundtrip";
  std::filesystem::remove_all(dir);
  save_weights(a, dir);
  ModelKind kind{};
  (void)checkpoint_config(dir, &kind);
  EXPECT_EQ(kind, ModelKind::ScoreModel);
  LlamaModel b(ctx, cfg,
               LlamaOptions{.head = Head::Score, .max_batch = 1, .max_seq = 1, .training = false});
  const LoadReport rep = load_weights(b, dir);
  EXPECT_FALSE(rep.fresh_score_head);
  const auto pa = to_host_f32(a.flat_params()), pb = to_host_f32(b.flat_params());
  ASSERT_EQ(pa.size(), pb.size());
  EXPECT_EQ(std::memcmp(pa.data(), pb.data(), pa.size() * 4), 0);
  LlamaModel lm(ctx, cfg,
                LlamaOptions{.head = Head::LM, .max_batch = 1, .max_seq = 1, .training = false});
  EXPECT_THROW(load_weights(lm, dir), Error);
  std::filesystem::remove_all(dir);
}

// A fresh score head: weight ~ N(0, 0.02) (Philox, seeded), bias 0.
TEST(ScoreHead, FreshHeadInitialisation) {
  Context ctx = Context::cpu(1);
  LlamaConfig cfg = checkpoint_config(golden_dir("mha"));
  cfg.hidden_size = 4096;  // enough draws for the moments; one tiny layer otherwise
  cfg.num_attention_heads = 32;
  cfg.num_key_value_heads = 32;
  cfg.head_dim = 128;
  cfg.intermediate_size = 8;
  cfg.num_hidden_layers = 1;
  cfg.vocab_size = 4;
  LlamaModel a(ctx, cfg,
               LlamaOptions{.head = Head::Score, .max_batch = 1, .max_seq = 1, .training = false});
  LlamaModel b(ctx, cfg,
               LlamaOptions{.head = Head::Score, .max_batch = 1, .max_seq = 1, .training = false});
  a.init_score_head(7);
  b.init_score_head(7);
  const auto w = to_host_f32(a.param("score_head.weight"));
  EXPECT_EQ(w, to_host_f32(b.param("score_head.weight")));
  EXPECT_EQ(to_host_f32(a.param("score_head.bias"))[0], 0.0f);
  double mean = 0, var = 0;
  for (float x : w) mean += x;
  mean /= double(w.size());
  for (float x : w) var += (x - mean) * (x - mean);
  const double sd = std::sqrt(var / double(w.size()));
  EXPECT_NEAR(mean, 0.0, 0.002);
  EXPECT_NEAR(sd, 0.02, 0.001);
  EXPECT_FALSE(a.has_param("lm_head.weight"));
}

}  // namespace
}  // namespace beaver::model
