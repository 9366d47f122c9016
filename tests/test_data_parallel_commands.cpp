// Data parallel for the commands beyond the training step, over MPI ranks on loopback (mpirun,
// --oversubscribe, one OpenMP thread per rank), through the beaver binary next to this test:
//   - `beaver eval` (with the toy-world oracle), `beaver arena` and `beaver generate` on 2 and
//     3 ranks write byte for byte the files one rank writes (generation batch k runs on rank
//     k mod N with the seeds of its global prompt indices; rank 0 writes in prompt order);
//     another seed changes the answers, so the comparison can fail;
//   - `generate --prompt` under mpirun is refused with a message;
//   - PPO-Lagrangian cut after RL step 1 of 3 on 2 ranks (a rank killed while saving step 2)
//     resumes on 3 ranks (ZeRO 2, optimizer shards re-cut) and on 1 rank and ends with the
//     1-rank actor within 1e-5 and its λ within 1e-7, every rank with the same λ; a resume
//     whose global micro-batch differs is refused naming it.
// Skips when mpirun is missing. As root, mpirun needs OMPI_ALLOW_RUN_AS_ROOT(_CONFIRM).
#include <gtest/gtest.h>
#include <unistd.h>

#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

#include "mpi_testutil.h"

namespace fs = std::filesystem;

namespace {

using beaver::test::have_mpirun;
using beaver::test::launcher;
using beaver::test::run;
using beaver::test::self_dir;

class DataParallelCommands : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    if (!have_mpirun()) return;
    dir_ = new std::string(fs::temp_directory_path() /
                           ("beaver-dp-commands-" + std::to_string(getpid())));
    fs::create_directories(*dir_);
    const std::string B = beaver(), d = *dir_;
    const std::string quiet = " > /dev/null 2>&1";
    // Two policies (different seeds) with room for the toy world's prompts, and a reward and
    // a cost model trained a few steps from the first.
    ok_ = beaver::test::make_tiny_world(B, d) &&
          beaver::test::make_tiny_init(B, d, 5, 128, "init5") &&
          beaver::test::make_tiny_init(B, d, 6, 128, "init6");
    for (const char* stage : {"rm", "cm"})
      ok_ = ok_ && run("OMP_NUM_THREADS=1 " + B + " train " + stage + " --model_name_or_path " + d +
                       "/init5 --train_datasets " + d + "/world/preference.jsonl --max_length 128 "
                       "--epochs 1 --learning_rate 1e-3 --lr_warmup_ratio 0 --threads 1 "
                       "--gradient_accumulation_steps 1 --train_batch_size 6 --max_steps 3 "
                       "--output_dir " + d + "/" + stage + quiet) == 0;
  }
  static void TearDownTestSuite() {
    if (dir_) fs::remove_all(*dir_);
    delete dir_;
    dir_ = nullptr;
  }
  void SetUp() override {
    if (!have_mpirun()) GTEST_SKIP() << beaver::test::kNoMpirun;
    ASSERT_TRUE(ok_) << "fixture setup failed in " << *dir_;
  }
  static std::string beaver() { return self_dir() + "/beaver"; }
  static std::string d() { return *dir_; }
  static std::string read(const std::string& path) {
    return beaver::test::read_file(d() + "/" + path);
  }
  // `beaver <args>` on `ranks` ranks, output and errors into <name>.log.
  static int beaver_on(int ranks, const std::string& args, const std::string& name,
                       const std::string& env = "") {
    return run("cd " + d() + " && " + env + launcher(ranks) + beaver() + " " + args + " > " +
               name + ".log 2>&1");
  }
  // PPO-Lagrangian, 3 RL steps of a global batch of 6 prompts, global micro-batch 6, a
  // checkpoint every step.
  static int ppo_lag(int ranks, const std::string& out, const std::string& extra,
                     const std::string& env = "") {
    return beaver_on(ranks, "train ppo-lag --actor_model_name_or_path init5 "
                     "--reward_model_name_or_path rm --cost_model_name_or_path cm "
                     "--train_datasets world/prompts.jsonl --max_length 64 --threads 1 "
                     "--prompt_batch_size 6 --per_device_train_batch_size " +
                     std::to_string(6 / ranks) + " --update_iters 2 --actor_lr 1e-3 "
                     "--critic_lr 1e-3 --actor_lr_warmup_ratio 0 --critic_lr_warmup_ratio 0 "
                     "--lambda_lr 0.1 --max_steps 3 --save_interval 1 "
                     "--constraint_check_responses 7 --output_dir " + out +
                     " " + extra, out, env);
  }
  static double max_diff(const std::string& a, const std::string& b) {
    return beaver::test::model_diff(d() + "/" + a + "/model.safetensors",
                                    d() + "/" + b + "/model.safetensors").max_abs;
  }
  static double final_lambda(const std::string& out) {
    const std::string c = read(out + "/constraint.json");
    const std::string key = "\"final_lambda\": ";
    const size_t at = c.find(key);
    return at == std::string::npos ? -1.0 : std::stod(c.substr(at + key.size()));
  }
  // The mean cost of the final check's fresh responses (-1e9 when constraint.json has none).
  static double check_mean(const std::string& out) {
    const std::string c = read(out + "/constraint.json");
    const size_t check = c.find("\"check\": {");
    const std::string key = "\"mean_cost\": ";
    const size_t at = check == std::string::npos ? check : c.find(key, check);
    return at == std::string::npos ? -1e9 : std::stod(c.substr(at + key.size()));
  }
  static inline std::string* dir_ = nullptr;
  static inline bool ok_ = false;
};

// 10 prompts in batches of 3: 4 batches, uneven over 2 and 3 ranks (rank 0 takes two on 3).
const char* kCommon = " --prompts world/eval.jsonl --max_length 112 --batch_size 3 --threads 1";

TEST_F(DataParallelCommands, EvalOnTwoAndThreeRanksWritesOneRanksFiles) {
  const std::string args = std::string("eval --model init5 --reward_model rm --cost_model cm "
                                       "--oracle toyworld") + kCommon;
  for (int ranks : {1, 2, 3}) {
    const std::string out = "eval" + std::to_string(ranks);
    ASSERT_EQ(beaver_on(ranks, args + " --seed 7 --output " + out, out), 0) << read(out + ".log");
  }
  ASSERT_FALSE(read("eval1/responses.jsonl").empty());
  for (int ranks : {2, 3})
    for (const char* f : {"responses.jsonl", "summary.json", "table.csv", "reward_hist.png",
                          "cost_hist.png"}) {
      const std::string out = "eval" + std::to_string(ranks);
      EXPECT_EQ(read(out + "/" + f), read(std::string("eval1/") + f)) << ranks << " ranks: " << f;
    }
  // The comparison can fail: other seeds, other answers.
  ASSERT_EQ(beaver_on(1, args + " --seed 8 --output eval_seed8", "eval_seed8"), 0);
  EXPECT_NE(read("eval_seed8/responses.jsonl"), read("eval1/responses.jsonl"));
}

TEST_F(DataParallelCommands, ArenaOnThreeRanksWritesOneRanksFiles) {
  const std::string args =
      std::string("arena --model_a init5 --model_b init6 --reward_model rm --cost_model cm --seed 7") +
      kCommon;
  ASSERT_EQ(beaver_on(1, args + " --output arena1", "arena1"), 0) << read("arena1.log");
  ASSERT_EQ(beaver_on(3, args + " --output arena3", "arena3"), 0) << read("arena3.log");
  ASSERT_FALSE(read("arena1/summary.json").empty());
  for (const char* f : {"responses.jsonl", "summary.json", "table.csv", "reward_hist.png"})
    EXPECT_EQ(read(std::string("arena3/") + f), read(std::string("arena1/") + f)) << f;
}

TEST_F(DataParallelCommands, GenerateOnTwoAndThreeRanksWritesOneRanksAnswers) {
  const std::string args = std::string("generate --model init5 --prompts world/eval.jsonl "
                                       "--max_new_tokens 12 --batch_size 3 --threads 1 --seed 9");
  ASSERT_EQ(beaver_on(1, args + " --output gen1.jsonl", "gen1"), 0) << read("gen1.log");
  ASSERT_EQ(beaver_on(2, args + " --output gen2.jsonl", "gen2"), 0) << read("gen2.log");
  // To stdout: rank 0 prints the answers, in prompt order.
  ASSERT_EQ(run("cd " + d() + " && " + launcher(3) + beaver() + " " + args +
                " > gen3.jsonl 2> gen3.log"), 0) << read("gen3.log");
  const std::string one = read("gen1.jsonl");
  ASSERT_EQ(std::count(one.begin(), one.end(), '\n'), 10) << one;
  EXPECT_EQ(read("gen2.jsonl"), one);
  EXPECT_EQ(read("gen3.jsonl"), one);
  ASSERT_EQ(beaver_on(1, "generate --model init5 --prompts world/eval.jsonl --max_new_tokens 12 "
                         "--batch_size 3 --threads 1 --seed 10 --output gen_seed10.jsonl",
                      "gen_seed10"), 0);
  EXPECT_NE(read("gen_seed10.jsonl"), one);
}

TEST_F(DataParallelCommands, GenerateOnePromptIsRefusedOnSeveralRanks) {
  EXPECT_NE(beaver_on(2, "generate --model init5 --prompt hello --max_new_tokens 4 --threads 1",
                      "gen_one"), 0);
  const std::string log = read("gen_one.log");
  EXPECT_NE(log.find("runs on one rank; under mpirun give --prompts FILE"), std::string::npos)
      << log;
}

TEST_F(DataParallelCommands, PpoLagResumesFromTwoRanksOntoThreeAndOne) {
  ASSERT_EQ(ppo_lag(1, "rl1", ""), 0) << read("rl1.log");
  const double lambda1 = final_lambda("rl1");
  ASSERT_GT(lambda1, 0) << read("rl1/constraint.json");
  // Cut on 2 ranks after step 1 (--max_steps would not do: it sizes the schedules).
  ASSERT_NE(ppo_lag(2, "rl2", "", "BEAVER_TEST_KILL_RANK_IN_SAVE=1@2 "), 0);
  ASSERT_EQ(read("rl2/checkpoints/latest"), "step-00000001\n") << read("rl2.log");
  fs::copy(d() + "/rl2", d() + "/rl2b", fs::copy_options::recursive);
  fs::copy(d() + "/rl2", d() + "/rl2c", fs::copy_options::recursive);
  struct Case { const char* out; int ranks; const char* extra; };
  for (const Case c : {Case{"rl2", 3, "--resume --zero_stage 2"}, Case{"rl2b", 1, "--resume"}}) {
    ASSERT_EQ(ppo_lag(c.ranks, c.out, c.extra), 0) << read(std::string(c.out) + ".log");
    const std::string log = read(std::string(c.out) + ".log");
    EXPECT_NE(log.find("written by 2 rank(s), continued on " + std::to_string(c.ranks)),
              std::string::npos) << log;
    EXPECT_LE(max_diff("rl1", c.out), 1e-5) << c.ranks << " ranks";
    EXPECT_NEAR(final_lambda(c.out), lambda1, 1e-7) << c.ranks << " ranks";
    // The final check runs on every rank (no collective waits) and reaches rank 1's verdict.
    ASSERT_GT(check_mean("rl1"), -1e8) << read("rl1/constraint.json");
    EXPECT_NEAR(check_mean(c.out), check_mean("rl1"), 1e-4) << c.ranks << " ranks";
    if (c.ranks > 1) {
      const std::string key = "ends with lambda ";
      std::vector<std::string> seen;
      for (size_t at = log.find(key); at != std::string::npos; at = log.find(key, at + 1))
        seen.push_back(log.substr(at + key.size(), log.find('\n', at) - at - key.size()));
      ASSERT_EQ(seen.size(), size_t(c.ranks)) << log;
      for (const auto& l : seen) EXPECT_EQ(l, seen[0]);
    }
  }
  // The comparison can fail: the run moved the actor well past the tolerance.
  EXPECT_GT(max_diff("init5", "rl1"), 1e-4);
  // Another global micro-batch (3 ranks x 1) is another run: refused, naming it.
  ASSERT_NE(beaver_on(3, "train ppo-lag --actor_model_name_or_path init5 "
                         "--reward_model_name_or_path rm --cost_model_name_or_path cm "
                         "--train_datasets world/prompts.jsonl --max_length 64 --threads 1 "
                         "--prompt_batch_size 6 --per_device_train_batch_size 1 --update_iters 2 "
                         "--actor_lr 1e-3 --critic_lr 1e-3 --actor_lr_warmup_ratio 0 "
                         "--critic_lr_warmup_ratio 0 --lambda_lr 0.1 --max_steps 3 "
                         "--save_interval 1 --output_dir rl2c --resume", "rl2c"), 0);
  EXPECT_NE(read("rl2c.log").find("the run was started with global_micro_batch_size"),
            std::string::npos) << read("rl2c.log");
}

}  // namespace
