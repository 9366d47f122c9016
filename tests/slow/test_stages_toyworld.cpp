// SFT → reward model → cost model on the embedded toy world (seed 1) at the demo's size
// (sentencepiece 1000 pieces, hidden 128, 4 layers, context 128), one CPU thread: SFT from
// random init reaches a low held-out loss, the reward model ranks held-out helpfulness pairs
// well above chance and the cost model gets the safety signs right. The thresholds sit below
// the figures of a deterministic run (SFT eval loss 0.64, RM accuracy 0.81, CM sign accuracy
// 1.0, CM ranking 0.62 at 200 steps each) with room for thread-count rounding differences.
// tests/test_trainer.cpp holds the short variants on a tiny model.
#include <gtest/gtest.h>

#include <fstream>
#include <string>
#include <vector>

#include "csrc/context.h"
#include "format_fixtures.h"
#include "model/loader.h"
#include "model/tokenizer.h"
#include "train/init_model.h"
#include "train/stages.h"
#include "train/toyworld.h"

namespace beaver {
namespace {

TEST(ToyWorldStages, SftRewardCost) {
  test::TempDir tmp;
  toyworld::WorldConfig wc;
  wc.seed = 1;
  toyworld::write_world(wc, tmp / "world");

  std::vector<std::string> lines;
  {
    std::ifstream f(tmp / "world/corpus.txt");
    std::string line;
    while (std::getline(f, line))
      if (!line.empty()) lines.push_back(line);
  }
  const std::string proto = model::train_sentencepiece(lines, 1000);
  std::filesystem::create_directories(tmp / "tok");
  std::ofstream(tmp / "tok/tokenizer.model", std::ios::binary) << proto;

  model::LlamaConfig c;
  c.hidden_size = 128;
  c.intermediate_size = 344;
  c.num_hidden_layers = 4;
  c.num_attention_heads = 4;
  c.num_key_value_heads = 4;
  c.head_dim = 32;
  c.vocab_size = 1001;
  c.max_position_embeddings = 128;
  c.bos_token_id = 1;
  c.eos_token_id = 2;
  c.pad_token_id = 1000;
  {
    Context ctx = Context::cpu(1);
    model::LlamaOptions o;
    o.max_seq = 1;
    o.training = false;
    model::LlamaModel m(ctx, c, o);
    train::random_init(m, 1);
    model::save_weights(m, tmp / "init", DType::F32, tmp / "tok");
  }

  auto base = [&](train::Stage s, const std::string& from, const std::string& out) {
    train::StageArgs a;
    a.stage = s;
    a.model_name_or_path = from;
    a.output_dir = out;
    a.max_length = 128;
    a.epochs = 1;
    a.per_device_train_batch_size = 8;
    a.per_device_eval_batch_size = 16;
    a.eval_split_ratio = 0.05;
    a.threads = 1;
    a.log_interval = 50;
    return a;
  };
  auto sft = base(train::Stage::SFT, tmp / "init", tmp / "sft");
  sft.train_datasets = {tmp / "world/sft.json"};
  sft.learning_rate = 1e-3;
  const auto rs = train::run_stage(sft);
  EXPECT_LT(rs.eval.at("eval_loss"), 1.0);

  auto rm = base(train::Stage::RM, tmp / "sft", tmp / "rm");
  rm.train_datasets = {tmp / "world/preference.jsonl"};
  rm.learning_rate = 1e-4;
  rm.weight_decay = 0.1;
  rm.max_steps = 200;
  rm.eval_interval = 200;
  const auto rr = train::run_stage(rm);
  EXPECT_GT(rr.eval.at("eval_accuracy"), 0.7);

  auto cm = rm;
  cm.stage = train::Stage::CM;
  cm.output_dir = tmp / "cm";
  const auto rc = train::run_stage(cm);
  EXPECT_GT(rc.eval.at("eval_sign_accuracy"), 0.9);
  EXPECT_GT(rc.eval.at("eval_accuracy"), 0.55);
  std::printf("toy world, 1 thread: SFT %.0f tokens/s, RM %.0f tokens/s, CM %.0f tokens/s\n",
              rs.tokens_per_s(), rr.tokens_per_s(), rc.tokens_per_s());
}

}  // namespace
}  // namespace beaver
