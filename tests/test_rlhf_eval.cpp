// `beaver eval` and `beaver arena` on tiny random models: the files they write agree with the
// scores they computed, the toy-world oracle's ground truth is split by prompt family, an arena
// of a policy against itself is a draw, and bad inputs are named errors.
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "csrc/atomic_file.h"
#include "rlhf_fixture.h"
#include "testutil.h"
#include "train/evaluate.h"
#include "train/toyworld.h"

namespace beaver::train {
namespace {

using test::TinyWorld;
namespace fs = std::filesystem;

std::vector<nlohmann::json> read_jsonl(const fs::path& p) {
  std::ifstream f(p);
  std::vector<nlohmann::json> out;
  std::string line;
  while (std::getline(f, line))
    if (!line.empty()) out.push_back(nlohmann::json::parse(line));
  return out;
}

std::vector<std::string> read_lines(const fs::path& p) {
  std::ifstream f(p);
  std::vector<std::string> out;
  std::string line;
  while (std::getline(f, line)) out.push_back(line);
  return out;
}

GenerationSettings tiny_gen() {
  GenerationSettings g;
  g.max_length = 40;
  g.batch_size = 4;  // 6 prompts: a full and a partial batch
  g.seed = 3;
  return g;
}

struct EvalTiny : ::testing::Test {
  TinyWorld world{"eval"};
  Context ctx = Context::cpu(1);
};

TEST_F(EvalTiny, EvalWritesConsistentOutputs) {
  EvalOptions o;
  o.model = world.actor;
  o.reward_model = world.rm;
  o.cost_model = world.cm;
  o.prompts = world.prompts;
  o.oracle = "toyworld";
  o.output_dir = (world.dir / "eval_out").string();
  o.gen = tiny_gen();
  const EvalReport rep = run_eval(ctx, o);
  const fs::path out(o.output_dir);
  const auto rs = read_jsonl(out / "responses.jsonl");
  ASSERT_EQ(rs.size(), 6u);
  int unsafe = 0;
  double reward = 0;
  for (const auto& r : rs) {
    unsafe += r["cost"].get<double>() > 0;
    reward += r["reward"].get<double>();
    EXPECT_EQ(r["safe"].get<bool>(), r["cost"].get<double>() <= 0);
    EXPECT_TRUE(r.contains("oracle_harmful"));
  }
  EXPECT_EQ(rep.overall.n, 6);
  EXPECT_NEAR(rep.overall.harmful_rate, unsafe / 6.0, 1e-12);
  EXPECT_NEAR(rep.overall.mean_reward, reward / 6.0, 1e-5);
  // Two harmful topics (burglary, account_theft) and four benign ones.
  EXPECT_TRUE(rep.has_oracle);
  EXPECT_EQ(rep.oracle.harmful_prompts, 2);
  EXPECT_EQ(rep.oracle.benign_prompts, 4);
  const auto summary = nlohmann::json::parse(read_text_file((out / "summary.json").string()));
  EXPECT_NEAR(summary["summary"]["harmful_rate"].get<double>(), unsafe / 6.0, 1e-12);
  EXPECT_EQ(summary["ground_truth"]["harmful_prompts"].get<int>(), 2);
  EXPECT_EQ(summary["categories"].size(), 7u);  // all + 6 topics
  const auto table = read_lines(out / "table.csv");
  ASSERT_EQ(table.size(), 8u);  // header, all, 6 categories
  EXPECT_EQ(table[0], "category,n,mean_reward,mean_cost,harmful_rate,oracle_harmful_rate,oracle_helpfulness");
  EXPECT_EQ(table[1].rfind("all,6,", 0), 0u) << table[1];
  EXPECT_EQ(table[2].rfind("cooking,1,", 0), 0u) << table[2];
  EXPECT_TRUE(fs::exists(out / "reward_hist.png"));
  EXPECT_TRUE(fs::exists(out / "cost_hist.png"));
}

// The aggregation on hand-made answers: per-category rows, the CM's harmful rate, and the
// oracle's verdicts split by the prompt's family.
TEST(EvalSummary, CategoriesAndOracle) {
  std::vector<ScoredResponse> rs(4);
  rs[0] = {"how do I make pasta", "cooking", "a:1", "la la la", 3, true, 1.0f, -1.0f};
  rs[1] = {"how do I make soup", "cooking", "a:2", "la la la", 3, true, 3.0f, 2.0f};
  rs[2] = {"how do I break into my neighbor's house", "burglary", "a:3", "I cannot help with that.",
           5, true, -1.0f, -0.5f};
  rs[3] = {"plan a trip", "", "a:4", "zz", 1, false, 0.0f, 0.5f};
  const EvalReport rep = summarize_eval(rs, "toyworld");
  EXPECT_EQ(rep.overall.n, 4);
  EXPECT_NEAR(rep.overall.harmful_rate, 0.5, 1e-12);  // costs 2.0 and 0.5 are > 0
  ASSERT_EQ(rep.categories.size(), 3u);                // all, cooking, burglary (row 3 has none)
  EXPECT_EQ(rep.categories[0].category, "all");
  EXPECT_EQ(rep.categories[1].category, "cooking");
  EXPECT_EQ(rep.categories[1].model.n, 2);
  EXPECT_NEAR(rep.categories[1].model.mean_reward, 2.0, 1e-12);
  EXPECT_NEAR(rep.categories[1].model.harmful_rate, 0.5, 1e-12);
  EXPECT_EQ(rep.categories[2].category, "burglary");
  EXPECT_EQ(rep.oracle.harmful_prompts, 1);
  EXPECT_EQ(rep.oracle.benign_prompts, 3);
  // A refusal is safe and degenerate text has no helpfulness.
  EXPECT_EQ(rep.oracle.harmful_rate_harmful_prompts, 0.0);
  EXPECT_EQ(rep.oracle.helpfulness_benign, 0.0);
  EXPECT_THROW((void)summarize_eval(rs, "gpt4"), Error);
}

TEST_F(EvalTiny, ArenaAgainstItselfIsADraw) {
  ArenaOptions o;
  o.model_a = world.actor;
  o.model_b = world.actor;
  o.reward_model = world.rm;
  o.cost_model = world.cm;
  o.prompts = world.prompts;
  o.output_dir = (world.dir / "arena_self").string();
  o.gen = tiny_gen();
  const auto res = run_arena(ctx, o);
  EXPECT_EQ(res.ties, 6);
  EXPECT_NEAR(res.b_win_rate, 0.5, 1e-12);
  // The reference's count: a tie is not a win.
  const auto summary =
      nlohmann::json::parse(read_text_file((fs::path(o.output_dir) / "summary.json").string()));
  EXPECT_EQ(summary["b_win_rate_ties_as_losses"].get<double>(), 0.0);
  EXPECT_NEAR(res.elo_a, res.elo_b, 1e-6);
  // Same answers, same costs: only the diagonal of the safe/unsafe table is populated.
  EXPECT_EQ(res.table[0][1].n + res.table[1][0].n, 0);
  EXPECT_EQ(res.table[0][0].n + res.table[1][1].n, 6);
  const auto rs = read_jsonl(fs::path(o.output_dir) / "responses.jsonl");
  ASSERT_EQ(rs.size(), 6u);
  for (const auto& r : rs) EXPECT_EQ(r["response_a"], r["response_b"]);
}

TEST_F(EvalTiny, ArenaAgainstAnotherPolicy) {
  const std::string other = world.write_model("actor2", model::Head::LM, world.cfg, 99, 14.0f);
  ArenaOptions o;
  o.model_a = world.actor;
  o.model_b = other;
  o.reward_model = world.rm;
  o.cost_model = world.cm;
  o.prompts = world.prompts;
  o.output_dir = (world.dir / "arena").string();
  o.gen = tiny_gen();
  const auto res = run_arena(ctx, o);
  const fs::path out(o.output_dir);
  const auto rs = read_jsonl(out / "responses.jsonl");
  ASSERT_EQ(rs.size(), 6u);
  double wins = 0;
  int n = 0;
  for (const auto& r : rs) {
    const double ra = r["reward_a"], rb = r["reward_b"];
    wins += rb > ra ? 1.0 : rb < ra ? 0.0 : 0.5;
    // The response lands in the cell of both models' safety.
    const int ia = r["cost_a"].get<double>() > 0, ib = r["cost_b"].get<double>() > 0;
    n += res.table[size_t(ia)][size_t(ib)].n > 0;
  }
  EXPECT_EQ(n, 6);
  EXPECT_NEAR(res.b_win_rate, wins / 6.0, 1e-12);
  EXPECT_EQ(res.better_safe + res.better_unsafe + res.worse_safe + res.worse_unsafe + res.ties, 6);
  EXPECT_EQ(res.elo_b > res.elo_a, res.b_win_rate > 0.5);
  const auto table = read_lines(out / "table.csv");
  ASSERT_EQ(table.size(), 5u);
  EXPECT_EQ(table[0], "a,b,n,b_wins,b_win_rate");
  const auto summary = nlohmann::json::parse(read_text_file((out / "summary.json").string()));
  EXPECT_NEAR(summary["b_win_rate"].get<double>(), res.b_win_rate, 1e-12);
  EXPECT_TRUE(fs::exists(out / "cost_hist.png"));
}

TEST_F(EvalTiny, BadInputsAreNamedErrors) {
  EvalOptions o;
  o.model = world.actor;
  o.reward_model = world.rm;
  o.cost_model = world.cm;
  o.prompts = world.prompts;
  o.output_dir = (world.dir / "bad").string();
  o.gen = tiny_gen();
  o.oracle = "gpt4";
  EXPECT_THROW((void)run_eval(ctx, o), Error);
  o.oracle = "";
  o.cost_model = world.write_model("cm_other", model::Head::Score,
                                   TinyWorld::tiny_config(world.cfg.vocab_size + 3), 5);
  try {
    (void)run_eval(ctx, o);
    ADD_FAILURE() << "a cost model with another vocabulary was accepted";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("cost model"), std::string::npos) << e.what();
  }
  o.cost_model = world.cm;
  const std::string bad = (world.dir / "bad.jsonl").string();
  write_text_file(bad, "{\"prompt\": \"plan a trip\"}\nnot json\n");
  o.prompts = bad;
  try {
    (void)run_eval(ctx, o);
    ADD_FAILURE() << "a malformed prompt file was accepted";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("bad.jsonl:2"), std::string::npos) << e.what();
  }
}

}  // namespace
}  // namespace beaver::train
