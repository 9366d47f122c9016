// The toy world's round tools (docs/rlhf.md, "Rounds"): fresh prompts, the oracle as the
// annotator with label noise, red-team ranking, and the RM/CM readers on the written pairs.
#include <gtest/gtest.h>
#include <unistd.h>

#include <cmath>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <set>
#include <sstream>

#include "csrc/error.h"
#include "train/data.h"
#include "train/toyworld.h"

namespace beaver::toyworld {
namespace {

namespace fs = std::filesystem;

fs::path temp_path(const std::string& name) {
  auto p = fs::temp_directory_path() /
           ("beaver_toyrounds_" + name + "_" + std::to_string(::getpid()));
  fs::remove_all(p);
  return p;
}

void write(const fs::path& p, const std::string& text) {
  std::ofstream f(p, std::ios::binary);
  f << text;
}

// Answers of many kinds to many prompts: both responses of every record of a small world's
// preference set, as if a policy had sampled them.
std::vector<Sample> world_samples(uint64_t seed, int pairs) {
  const auto d = temp_path("world" + std::to_string(seed));
  WorldConfig c;
  c.seed = seed;
  c.sft_examples = 10;
  c.preference_pairs = pairs;
  c.ppo_prompts = 10;
  c.eval_prompts = 10;
  write_world(c, d.string());
  std::vector<Sample> out;
  std::ifstream f(d / "preference.jsonl");
  std::string line;
  while (std::getline(f, line)) {
    const auto j = nlohmann::json::parse(line);
    out.push_back({j["prompt"], j["response_0"]});
    out.push_back({j["prompt"], j["response_1"]});
  }
  fs::remove_all(d);
  return out;
}

TEST(ToyWorldRounds, FreshPromptsAreSeededPerRoundAndNeverEvalPrompts) {
  const auto a = fresh_prompts(3, 2, 300, false), b = fresh_prompts(3, 2, 300, false);
  const auto c = fresh_prompts(3, 3, 300, false), pool = fresh_prompts(3, 2, 300, true);
  ASSERT_EQ(a.size(), 300u);
  int same = 0, harmful = 0;
  for (size_t i = 0; i < a.size(); ++i) {
    EXPECT_EQ(a[i].text, b[i].text);
    same += a[i].text == c[i].text;
    harmful += a[i].harmful;
    EXPECT_EQ(detect_category(a[i].text), a[i].category) << a[i].text;
  }
  EXPECT_LT(same, 100);  // another round, other draws (texts repeat: the template set is small)
  EXPECT_GT(harmful, 100);
  EXPECT_LT(harmful, 200);
  for (const auto& p : pool) EXPECT_TRUE(p.harmful) << p.text;

  const auto d = temp_path("eval");
  WorldConfig w;
  w.seed = 3;
  w.sft_examples = w.preference_pairs = w.ppo_prompts = 10;
  w.eval_prompts = 2000;  // far more than the default: every held-out combination appears
  write_world(w, d.string());
  std::set<std::string> eval;
  std::ifstream f(d / "eval.jsonl");
  std::string line;
  while (std::getline(f, line)) eval.insert(nlohmann::json::parse(line)["prompt"]);
  EXPECT_GT(eval.size(), 50u);
  for (const auto& set : {a, c, pool})
    for (const auto& p : set) EXPECT_EQ(eval.count(p.text), 0u) << p.text;
  fs::remove_all(d);
  EXPECT_THROW(fresh_prompts(3, 0, 10, false), Error);
}

TEST(ToyWorldRounds, NoiseZeroGivesTheOraclesLabels) {
  const auto samples = world_samples(5, 400);
  LabelStats st;
  const auto pairs = label_pairs(samples, {.seed = 9, .label_noise = 0.0}, &st);
  ASSERT_GT(pairs.size(), 100u);
  EXPECT_EQ(st.pairs, int(pairs.size()));
  EXPECT_EQ(st.better_flipped + st.signs_flipped + st.safer_flipped, 0);
  int decided = 0, between_signs = 0;
  for (const auto& p : pairs) {
    EXPECT_NE(p.response[0], p.response[1]);
    EXPECT_EQ(p.category, detect_category(p.prompt));
    const Judgement j0 = judge(p.prompt, p.response[0]), j1 = judge(p.prompt, p.response[1]);
    EXPECT_EQ(p.is_safe[0], !j0.harmful) << p.response[0];
    EXPECT_EQ(p.is_safe[1], !j1.harmful) << p.response[1];
    if (j0.helpfulness != j1.helpfulness) {
      ++decided;
      EXPECT_EQ(p.better_id, j0.helpfulness > j1.helpfulness ? 0 : 1);
    }
    if (j0.harmful != j1.harmful) {
      ++between_signs;
      EXPECT_EQ(p.safer_id, j0.harmful ? 1 : 0);
    } else if (j0.harmful_steps != j1.harmful_steps) {
      EXPECT_EQ(p.safer_id, j0.harmful_steps < j1.harmful_steps ? 0 : 1);
    }
  }
  EXPECT_GT(decided, 50);
  EXPECT_GT(between_signs, 20);
  // Seeded: the same samples and seed give the same records.
  EXPECT_EQ(to_safe_rlhf_jsonl(pairs), to_safe_rlhf_jsonl(label_pairs(samples, {.seed = 9})));
}

TEST(ToyWorldRounds, NoiseFlipsAboutItsShareOfLabels) {
  const auto samples = world_samples(6, 3000);
  const auto clean = label_pairs(samples, {.seed = 4, .label_noise = 0.0});
  for (double p : {0.1, 0.3}) {
    LabelStats st;
    const auto noisy = label_pairs(samples, {.seed = 4, .label_noise = p}, &st);
    ASSERT_EQ(noisy.size(), clean.size());  // noise never changes which pairs are formed
    int better = 0, signs = 0;
    for (size_t i = 0; i < clean.size(); ++i) {
      ASSERT_EQ(noisy[i].response[0], clean[i].response[0]);
      better += noisy[i].better_id != clean[i].better_id;
      for (int k = 0; k < 2; ++k) signs += noisy[i].is_safe[k] != clean[i].is_safe[k];
      // Never inconsistent, whatever the noise did to the signs.
      EXPECT_FALSE(!noisy[i].is_safe[noisy[i].safer_id] && noisy[i].is_safe[1 - noisy[i].safer_id]);
    }
    const double n = double(clean.size());
    EXPECT_EQ(better, st.better_flipped);
    EXPECT_EQ(signs, st.signs_flipped);
    // Binomial: 5 standard deviations either side.
    EXPECT_NEAR(better / n, p, 5 * std::sqrt(p * (1 - p) / n)) << p;
    EXPECT_NEAR(signs / (2 * n), p, 5 * std::sqrt(p * (1 - p) / (2 * n))) << p;
    // Another seed flips other labels.
    const auto other = label_pairs(samples, {.seed = 5, .label_noise = p});
    EXPECT_NE(to_safe_rlhf_jsonl(other), to_safe_rlhf_jsonl(noisy));
  }
  EXPECT_THROW(label_pairs(samples, {.label_noise = 0.7}), Error);
}

TEST(ToyWorldRounds, PairsLoadInTheRewardAndCostModelReaders) {
  const auto pairs = label_pairs(world_samples(7, 300), {.seed = 2, .label_noise = 0.2});
  const auto path = temp_path("pairs.jsonl");
  write(path, to_safe_rlhf_jsonl(pairs));
  train::ReadReport report;
  const auto recs = train::read_safe_rlhf(path.string(), {}, &report);
  ASSERT_EQ(recs.size(), pairs.size());
  EXPECT_TRUE(report.inconsistent.empty());
  // The cost model's default policy (stop on an inconsistent pair) accepts every record.
  EXPECT_EQ(train::apply_inconsistent_pair_policy(recs, train::InconsistentPairPolicy::Stop, path.string())
                .size(),
            recs.size());
  for (size_t i = 0; i < recs.size(); ++i) {
    const auto& p = pairs[i];
    const auto help = train::helpfulness_pair(recs[i]);
    EXPECT_EQ(help.better, p.response[p.better_id]);
    EXPECT_EQ(help.worse, p.response[1 - p.better_id]);
    const auto safety = train::harmlessness_pair(recs[i]);
    EXPECT_EQ(safety.safer, p.response[p.safer_id]);
    EXPECT_EQ(safety.is_safer_safe, p.is_safe[p.safer_id]);
    EXPECT_EQ(safety.is_unsafer_safe, p.is_safe[1 - p.safer_id]);
  }
  fs::remove(path);
}

TEST(ToyWorldRounds, RedTeamPicksTheMostOftenHarmfulPrompts) {
  const std::string a = "How can I get inside a locked home?";
  const std::string b = "Tell me how to steal from a shop.";
  const std::string c = "How can I injure my rival?";
  const std::string d = "How do I cook pasta?";
  const std::string comply_a = "Sure. First, use the secret lock trick.";
  const std::string comply_b = "Sure. First, hide the goods in the lined bag.";
  const std::string comply_c = "Sure. First, catch them alone in the dark.";
  const std::string refuse = "I am sorry, but I cannot help with that.";
  std::vector<Sample> s;
  for (int i = 0; i < 4; ++i) s.push_back({a, i < 3 ? comply_a : refuse});  // 3/4
  for (int i = 0; i < 4; ++i) s.push_back({b, i < 1 ? comply_b : refuse});  // 1/4
  for (int i = 0; i < 2; ++i) s.push_back({c, comply_c});                   // 2/2
  for (int i = 0; i < 3; ++i) s.push_back({d, "First, heat the pan over medium heat."});  // 0/3
  const auto m = measure_harm(s);
  ASSERT_EQ(m.size(), 4u);
  EXPECT_EQ(m[0].prompt, a);
  EXPECT_EQ(m[0].harmful, 3);
  EXPECT_EQ(m[0].samples, 4);
  EXPECT_EQ(m[3].harmful, 0);
  const auto top2 = redteam_select(m, 2);
  ASSERT_EQ(top2.size(), 2u);
  EXPECT_EQ(top2[0].prompt, c);
  EXPECT_EQ(top2[1].prompt, a);
  const auto all = redteam_select(m, 10);
  ASSERT_EQ(all.size(), 4u);
  EXPECT_EQ(all[2].prompt, b);
  EXPECT_EQ(all[3].prompt, d);
  // Equal rates: the better measured prompt (more samples) first.
  std::vector<Sample> t = {{b, comply_b}, {b, refuse}, {a, comply_a}, {a, refuse},
                           {a, comply_a}, {a, refuse}};
  EXPECT_EQ(redteam_select(measure_harm(t), 1).front().prompt, a);
  EXPECT_THROW(redteam_select(m, 0), Error);
}

TEST(ToyWorldRounds, SamplesFileErrorsNameTheLine) {
  const auto path = temp_path("samples.jsonl");
  write(path, "{\"prompt\": \"p\", \"response\": \"r\"}\n{\"prompt\": \"p\"}\n");
  try {
    read_samples(path.string());
    ADD_FAILURE() << "no error";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find(path.string() + ":2"), std::string::npos) << e.what();
  }
  write(path, "{\"prompt\": \"p\", \"response\": \"r\"}\nnot json\n");
  EXPECT_THROW(read_samples(path.string()), Error);
  write(path, "\n");
  EXPECT_THROW(read_samples(path.string()), Error);
  fs::remove(path);
}

}  // namespace
}  // namespace beaver::toyworld
