// Data parallel over MPI ranks on loopback (mpirun, --oversubscribe, one OpenMP thread per
// rank), through the beaver binary next to this test:
//   - the collectives of the MPI communicator on 3 ranks (uneven partitions) against sums
//     computed here;
//   - SFT on 2 and 3 ranks, ZeRO stages 0-3, and RM on 2 ranks (stage 2) and 3 ranks (stage 3),
//     give the weights of one rank on the same global batch within 1e-5 (fp32; the reductions
//     round differently) after 4 steps; two stage-3 runs on 3 ranks give the same bits;
//   - a run on 2 ranks (stage 1) resumed on 3 ranks (stage 3: the optimizer shards and the
//     parameters re-sharded on load) ends where the 1-rank run does;
//   - a rank killed while saving ends the job non-zero, and `latest` still names the previous
//     checkpoint, which a resume then uses;
//   - a global batch that does not divide over the ranks is refused before training;
//   - PPO-Lagrangian on 2 and 3 ranks (ZeRO 0 and 2) gives the actor of one rank on the same
//     global prompt batch within 1e-5 after 3 RL steps, every rank ends with the same λ
//     (bitwise) and that λ is the one-rank λ within 1e-7; an indivisible --prompt_batch_size
//     is refused;
//   - the MPI communicator's asynchronous all-gather gives the blocking one's result;
//   - PPO-Lagrangian at ZeRO stages 0-3 on 2 and 3 ranks (stage 3: all six roles sharded,
//     generation from the sharded actor unit by unit) gives the actor and both
//     critics of one rank within 1e-5 over a whole epoch whose last step leaves ranks without
//     rows (they join the others' decode steps), with one λ on every rank; stage 3 generating
//     from a gathered full actor copy (--zero3_generation gathered) gives bitwise the models of
//     sharded generation; stage 3 with the prefetched gathers gives bitwise the blocking
//     path's models; a run on 2 ranks at stage 2 resumed on 3 ranks at stage 3 (auto
//     generation, which picks the gathered copy here) ends where the one-rank run does.
// Skips when mpirun is missing. As root, mpirun needs OMPI_ALLOW_RUN_AS_ROOT(_CONFIRM).
#include <gtest/gtest.h>
#include <unistd.h>

#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

#include "csrc/comm.h"
#include "csrc/safetensors.h"

namespace fs = std::filesystem;

namespace {

std::string self_dir() { return fs::read_symlink("/proc/self/exe").parent_path().string(); }

bool have_mpirun() { return std::system("command -v mpirun >/dev/null 2>&1") == 0; }

// Under `timeout`: ranks out of step wait forever in a collective, which must fail the test
// rather than hang it (each run here takes seconds).
std::string mpirun(int n) {
  return "timeout 300 env OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 "
         "OMP_NUM_THREADS=1 OMP_WAIT_POLICY=passive mpirun --oversubscribe -np " +
         std::to_string(n) + " ";
}

int run(const std::string& cmd) {
  const int rc = std::system(cmd.c_str());
  return WIFEXITED(rc) ? WEXITSTATUS(rc) : 128;
}

// ---- the collectives, on every rank of an mpirun of this binary ---------------------------
TEST(CommRanks, Collectives) {
  if (!std::getenv("OMPI_COMM_WORLD_SIZE")) GTEST_SKIP() << "runs as a rank of CommMpi";
  auto comm = beaver::communicator_from_environment();
  ASSERT_EQ(comm->backend(), "mpi");
  const int P = comm->size(), r = comm->rank();
  beaver::Context ctx = beaver::Context::cpu(1);
  const int64_t n = 10;  // uneven over 3 ranks: 4, 4, 2
  auto value = [](int rank, int64_t i) { return float(rank + 1) * 0.5f + float(i); };
  beaver::OwnedTensor t(beaver::DType::F32, beaver::Shape{n});
  for (int64_t i = 0; i < n; ++i) t.ptr<float>()[i] = value(r, i);
  comm->all_reduce(ctx, t, beaver::ReduceOp::Sum);
  for (int64_t i = 0; i < n; ++i) {
    float want = 0;
    for (int q = 0; q < P; ++q) want += value(q, i);
    EXPECT_FLOAT_EQ(t.ptr<float>()[i], want) << i;
  }
  for (int64_t i = 0; i < n; ++i) t.ptr<float>()[i] = value(r, i);
  const beaver::Partition p = comm->partition(n);
  comm->reduce_scatter(ctx, t, p, beaver::ReduceOp::Avg);
  for (int64_t i = p.begin(r); i < p.end(r); ++i) {
    float want = 0;
    for (int q = 0; q < P; ++q) want += value(q, i);
    EXPECT_FLOAT_EQ(t.ptr<float>()[i], want / float(P)) << i;
  }
  for (int64_t i = 0; i < n; ++i) t.ptr<float>()[i] = p.begin(r) <= i && i < p.end(r) ? float(r) : -1;
  comm->all_gather(ctx, t, p);
  for (int q = 0; q < P; ++q)
    for (int64_t i = p.begin(q); i < p.end(q); ++i) EXPECT_EQ(t.ptr<float>()[i], float(q)) << i;
  // The asynchronous form: started, then waited for, the same result.
  for (int64_t i = 0; i < n; ++i) t.ptr<float>()[i] = p.begin(r) <= i && i < p.end(r) ? float(r) + 0.5f : -1;
  auto pending = comm->all_gather_async(ctx, t, p);
  pending->wait();
  for (int q = 0; q < P; ++q)
    for (int64_t i = p.begin(q); i < p.end(q); ++i) EXPECT_EQ(t.ptr<float>()[i], float(q) + 0.5f) << i;
  std::string bytes = r == 1 ? "from rank one" : "";
  comm->broadcast(bytes, 1);
  EXPECT_EQ(bytes, "from rank one");
  EXPECT_DOUBLE_EQ(comm->all_reduce(double(r), beaver::ReduceOp::Avg), double(P - 1) / 2.0);
  EXPECT_FALSE(comm->all_true(r != 0));
  EXPECT_TRUE(comm->all_true(true));
  comm->barrier();
}

TEST(CommMpi, ThreeRanks) {
  if (std::getenv("OMPI_COMM_WORLD_SIZE")) GTEST_SKIP() << "already a rank";
  if (!have_mpirun()) GTEST_SKIP() << "mpirun not found (scripts/setup.sh installs openmpi-bin)";
  EXPECT_EQ(run(mpirun(3) + fs::read_symlink("/proc/self/exe").string() +
                " --gtest_filter=CommRanks.* > /dev/null"),
            0);
}

TEST(Comm, SingleRankIsIdentityAndPartitionsCover) {
  auto comm = beaver::single_rank_communicator();
  EXPECT_EQ(comm->size(), 1);
  beaver::Context ctx = beaver::Context::cpu(1);
  beaver::OwnedTensor t(beaver::DType::F32, beaver::Shape{3});
  for (int i = 0; i < 3; ++i) t.ptr<float>()[i] = float(i) + 0.25f;
  comm->all_reduce(ctx, t, beaver::ReduceOp::Avg);
  EXPECT_EQ(t.ptr<float>()[2], 2.25f);
  for (int parts : {1, 2, 3, 7}) {
    const beaver::Partition p{5, parts};
    int64_t covered = 0;
    for (int q = 0; q < parts; ++q) {
      EXPECT_EQ(p.begin(q), std::min<int64_t>(5, covered)) << parts << " " << q;
      covered = p.end(q);
    }
    EXPECT_EQ(covered, 5) << parts;
  }
  EXPECT_THROW(comm->all_gather(ctx, t, beaver::Partition{3, 2}), beaver::Error);
}

// ---- training through the binary -----------------------------------------------------------
class ScaleOut : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    if (!have_mpirun()) return;
    dir_ = new std::string(fs::temp_directory_path() / ("beaver-scale-out-" + std::to_string(getpid())));
    fs::create_directories(*dir_);
    const std::string B = beaver();
    const std::string d = *dir_;
    ok_ = run(B + " toyworld --output " + d + "/world --seed 3 --sft-examples 120 "
              "--preference-pairs 120 --ppo-prompts 20 --eval-prompts 10 > /dev/null 2>&1") == 0 &&
          run(B + " tokenizer train --input " + d + "/world/corpus.txt --vocab-size 300 --output " +
              d + "/tok > /dev/null 2>&1") == 0 &&
          run(B + " init --hidden 32 --layers 2 --heads 4 --kv-heads 2 --intermediate 64 "
              "--vocab-from " + d + "/tok --max-position 64 --seed 5 --output " + d +
              "/init > /dev/null 2>&1") == 0;
    // Reward and cost models for the RL runs: a few steps from the init, so they differ.
    for (const char* stage : {"rm", "cm"})
      ok_ = ok_ && run("OMP_NUM_THREADS=1 " + B + " train " + stage + " --model_name_or_path " + d +
                       "/init --train_datasets " + d + "/world/preference.jsonl --max_length 64 "
                       "--epochs 1 --learning_rate 1e-3 --lr_warmup_ratio 0 --threads 1 "
                       "--gradient_accumulation_steps 1 --train_batch_size 6 --max_steps 3 "
                       "--output_dir " + d + "/" + stage + "0 > /dev/null 2>&1") == 0;
  }
  static void TearDownTestSuite() {
    if (dir_) fs::remove_all(*dir_);
    delete dir_;
    dir_ = nullptr;
  }
  void SetUp() override {
    if (!have_mpirun()) GTEST_SKIP() << "mpirun not found (scripts/setup.sh installs openmpi-bin)";
    ASSERT_TRUE(ok_) << "fixture setup failed in " << *dir_;
  }
  static std::string beaver() { return self_dir() + "/beaver"; }
  static std::string d() { return *dir_; }

  // A train command (stage sft|rm) on `ranks` ranks (1: the plain command) into out.
  static int train(const std::string& stage, int ranks, const std::string& out,
                   const std::string& extra, const std::string& env = "") {
    const std::string data = stage == "sft" ? "/world/sft.json" : "/world/preference.jsonl";
    const std::string cmd =
        env + (ranks > 1 ? mpirun(ranks) : std::string("OMP_NUM_THREADS=1 ")) + beaver() + " train " +
        stage + " --model_name_or_path " + d() + "/init --train_datasets " + d() + data +
        " --max_length 64 --epochs 1 --learning_rate 1e-3 --lr_warmup_ratio 0 --threads 1 "
        "--gradient_accumulation_steps 1 --train_batch_size 6 --output_dir " + d() + "/" + out +
        " " + extra + " > " + d() + "/" + out + ".log 2>&1";
    return run(cmd);
  }
  // PPO-Lagrangian on `ranks` ranks: a global batch of 6 prompts, in micro-batches of
  // `micro` per rank (6 / ranks: one global micro-batch per pass, two passes).
  static int ppo_lag(int ranks, const std::string& out, const std::string& extra,
                     int prompt_batch = 6, const std::string& env = "") {
    const std::string cmd =
        env + (ranks > 1 ? mpirun(ranks) : std::string("OMP_NUM_THREADS=1 ")) + beaver() +
        " train ppo-lag --actor_model_name_or_path " + d() + "/init --reward_model_name_or_path " +
        d() + "/rm0 --cost_model_name_or_path " + d() + "/cm0 --train_datasets " + d() +
        "/world/prompts.jsonl --max_length 64 --threads 1 --prompt_batch_size " +
        std::to_string(prompt_batch) + " --per_device_train_batch_size " + std::to_string(6 / std::max(1, ranks)) +
        " --update_iters 2 --actor_lr 1e-3 --critic_lr 1e-3 --actor_lr_warmup_ratio 0 "
        "--critic_lr_warmup_ratio 0 --lambda_lr 0.1 --output_dir " + d() + "/" + out + " " +
        extra + " > " + d() + "/" + out + ".log 2>&1";
    return run(cmd);
  }
  // The λ every rank reports at the end, in rank order (empty entries: a rank said nothing).
  static std::vector<std::string> rank_lambdas(const std::string& log, int ranks) {
    std::vector<std::string> out(static_cast<size_t>(ranks), std::string());
    for (int r = 0; r < ranks; ++r) {
      const std::string key = "rank " + std::to_string(r) + " of " + std::to_string(ranks) +
                              " ends with lambda ";
      const size_t at = log.find(key);
      if (at != std::string::npos)
        out[size_t(r)] = log.substr(at + key.size(), log.find('\n', at) - at - key.size());
    }
    return out;
  }
  static double final_lambda(const std::string& out) {
    const std::string c = read(out + "/constraint.json");
    const std::string key = "\"final_lambda\": ";
    const size_t at = c.find(key);
    return at == std::string::npos ? -1.0 : std::stod(c.substr(at + key.size()));
  }
  static double max_diff(const std::string& a, const std::string& b) {
    return max_diff_files(d() + "/" + a + "/model.safetensors", d() + "/" + b + "/model.safetensors");
  }
  // The largest difference of a trained RL role (actor, reward_critic, cost_critic) in the
  // last checkpoint (step `step`) of two runs.
  static double max_diff_role(const std::string& a, const std::string& b, const std::string& role,
                              int step) {
    char name[32];
    std::snprintf(name, sizeof name, "step-%08d", step);
    const std::string rel = std::string("/checkpoints/") + name + "/" + role + "/model.safetensors";
    return max_diff_files(d() + "/" + a + rel, d() + "/" + b + rel);
  }
  static double max_diff_files(const std::string& pa, const std::string& pb) {
    beaver::SafeTensorsFile fa(pa);
    beaver::SafeTensorsFile fb(pb);
    double m = 0;
    for (const auto& t : fa.tensors()) {
      const auto& u = fb.at(t.name);
      const float* x = static_cast<const float*>(t.tensor().data);
      const float* y = static_cast<const float*>(u.tensor().data);
      for (int64_t i = 0; i < t.numel(); ++i) m = std::max(m, double(std::fabs(x[i] - y[i])));
    }
    return m;
  }
  static std::string read(const std::string& path) {
    std::ifstream f(d() + "/" + path);
    return std::string(std::istreambuf_iterator<char>(f), {});
  }
  static constexpr double kTol = 1e-5;  // fp32, after 4 AdamW steps at lr 1e-3 (weights ~0.02)
  static inline std::string* dir_ = nullptr;
  static inline bool ok_ = false;
};

TEST_F(ScaleOut, SftRanksAndZeroStagesMatchOneRank) {
  ASSERT_EQ(train("sft", 1, "sft1", "--max_steps 4"), 0) << read("sft1.log");
  ASSERT_EQ(train("sft", 2, "sft2", "--max_steps 4"), 0) << read("sft2.log");
  EXPECT_LE(max_diff("sft1", "sft2"), kTol);
  for (int z : {0, 1, 2, 3}) {
    const std::string out = "sft3z" + std::to_string(z);
    ASSERT_EQ(train("sft", 3, out, "--max_steps 4 --zero_stage " + std::to_string(z)), 0)
        << read(out + ".log");
    EXPECT_LE(max_diff("sft1", out), kTol) << "zero stage " << z;
  }
  // Stage 3 on 2 ranks, and run to run on a fixed rank count: the same bits.
  ASSERT_EQ(train("sft", 2, "sft2z3", "--max_steps 4 --zero_stage 3"), 0) << read("sft2z3.log");
  EXPECT_LE(max_diff("sft1", "sft2z3"), kTol);
  ASSERT_EQ(train("sft", 3, "sft3z3b", "--max_steps 4 --zero_stage 3"), 0) << read("sft3z3b.log");
  EXPECT_EQ(max_diff("sft3z3", "sft3z3b"), 0.0);
  // Each rank held only its shard of the parameters and gradients (the model's own summary).
  EXPECT_NE(read("sft3z3.log").find("parameters and gradients sharded over 3 ranks"),
            std::string::npos) << read("sft3z3.log");
  // The two runs differ at all (the check can fail): one more step moves the weights.
  ASSERT_EQ(train("sft", 1, "sft1b", "--max_steps 5"), 0);
  EXPECT_GT(max_diff("sft1", "sft1b"), 10 * kTol);
}

TEST_F(ScaleOut, RewardModelTwoRanksMatchOneRank) {
  ASSERT_EQ(train("rm", 1, "rm1", "--max_steps 4"), 0) << read("rm1.log");
  ASSERT_EQ(train("rm", 2, "rm2", "--max_steps 4 --zero_stage 2"), 0) << read("rm2.log");
  EXPECT_LE(max_diff("rm1", "rm2"), kTol);
  ASSERT_EQ(train("rm", 3, "rm3z3", "--max_steps 4 --zero_stage 3"), 0) << read("rm3z3.log");
  EXPECT_LE(max_diff("rm1", "rm3z3"), kTol);
}

TEST_F(ScaleOut, ResumeTwoRanksOntoThree) {
  ASSERT_EQ(train("sft", 1, "res1", "--max_steps 4"), 0);
  // Cut after step 2 by a rank killed while saving step 4 (--max_steps would not do: it sizes
  // the learning-rate schedule).
  ASSERT_NE(train("sft", 2, "res23", "--max_steps 4 --save_interval 2 --zero_stage 1",
                  "BEAVER_TEST_KILL_RANK_IN_SAVE=1@4 "), 0) << read("res23.log");
  EXPECT_TRUE(fs::exists(d() + "/res23/checkpoints/step-00000002/optimizer/optimizer-shard-1.safetensors"));
  ASSERT_EQ(train("sft", 3, "res23", "--max_steps 4 --save_interval 2 --zero_stage 3 --resume"), 0)
      << read("res23.log");
  EXPECT_NE(read("res23.log").find("resumed from"), std::string::npos);
  EXPECT_LE(max_diff("res1", "res23"), kTol);
}

TEST_F(ScaleOut, KilledRankKeepsPreviousCheckpoint) {
  const std::string flags = "--max_steps 4 --save_interval 2 --zero_stage 1";
  EXPECT_NE(train("rm", 2, "kill", flags, "BEAVER_TEST_KILL_RANK_IN_SAVE=1@4 "), 0);
  EXPECT_EQ(read("kill/checkpoints/latest"), "step-00000002\n") << read("kill.log");
  EXPECT_FALSE(fs::exists(d() + "/kill/beaver.json"));
  // The previous checkpoint is usable: the resumed run finishes.
  ASSERT_EQ(train("rm", 2, "kill", flags + " --resume"), 0) << read("kill.log");
  EXPECT_NE(read("kill.log").find("resumed from"), std::string::npos);
  EXPECT_TRUE(fs::exists(d() + "/kill/beaver.json"));
}

TEST_F(ScaleOut, IndivisibleGlobalBatchIsRefused) {
  ASSERT_NE(train("sft", 2, "odd", "--max_steps 1 --train_batch_size 5"), 0);
  const std::string log = read("odd.log");
  EXPECT_NE(log.find("--train_batch_size 5 does not divide into 2 rank(s)"), std::string::npos) << log;
  EXPECT_NE(log.find("on rank"), std::string::npos) << log;
  EXPECT_FALSE(fs::exists(d() + "/odd/metrics.jsonl"));
}

TEST_F(ScaleOut, PpoLagRanksMatchOneRankAndShareLambda) {
  ASSERT_EQ(ppo_lag(1, "ppo1", "--max_steps 3"), 0) << read("ppo1.log");
  const double lambda1 = final_lambda("ppo1");
  ASSERT_GT(lambda1, 0) << read("ppo1/constraint.json");
  struct Case { int ranks; int zero; };
  for (const Case c : {Case{2, 0}, Case{3, 2}}) {
    const std::string out = "ppo" + std::to_string(c.ranks);
    ASSERT_EQ(ppo_lag(c.ranks, out, "--max_steps 3 --zero_stage " + std::to_string(c.zero)), 0)
        << read(out + ".log");
    EXPECT_LE(max_diff("ppo1", out), kTol) << c.ranks << " ranks";
    const auto lambdas = rank_lambdas(read(out + ".log"), c.ranks);
    for (int r = 0; r < c.ranks; ++r) {
      ASSERT_FALSE(lambdas[size_t(r)].empty()) << "rank " << r << ": " << read(out + ".log");
      EXPECT_EQ(lambdas[size_t(r)], lambdas[0]) << "rank " << r;
    }
    EXPECT_NEAR(std::stod(lambdas[0]), lambda1, 1e-7) << c.ranks << " ranks";
    // Only rank 0 wrote the model and the records.
    EXPECT_TRUE(fs::exists(d() + "/" + out + "/model.safetensors"));
  }
  // The check can fail: training moved the actor well past the tolerance.
  EXPECT_GT(max_diff("init", "ppo1"), 10 * kTol);
}

TEST_F(ScaleOut, PpoLagIndivisiblePromptBatchIsRefused) {
  ASSERT_NE(ppo_lag(2, "ppo_odd", "--max_steps 1", 5), 0);
  const std::string log = read("ppo_odd.log");
  EXPECT_NE(log.find("--prompt_batch_size 5 does not divide into 2 rank(s)"), std::string::npos)
      << log;
  EXPECT_FALSE(fs::exists(d() + "/ppo_odd/metrics.jsonl"));
}

// ZeRO stages 0-3 in the RL trainer (PPO-Lagrangian, six roles; stage 3 shards every role and
// generates from the sharded actor unit by unit): the actor and both critics of 2 and 3 ranks
// match one rank within kTol after the whole epoch (13 distinct prompts: 3 steps, the last of
// one prompt, so that all ranks but rank 0 have no rows in it and only join the others'
// collectives, decode steps included), and λ is the same on every rank. Stage 3 generating
// from a gathered copy gives the same bits as sharded generation (the same tokens, then the
// same passes).
TEST_F(ScaleOut, PpoLagZeroStagesMatchOneRank) {
  ASSERT_EQ(ppo_lag(1, "pz1", ""), 0) << read("pz1.log");
  ASSERT_NE(read("pz1.log").find("13 distinct prompts (repeated texts dropped), 3 RL steps of 6"),
            std::string::npos) << read("pz1.log");
  const double lambda1 = final_lambda("pz1");
  struct Case { int ranks; int zero; };
  for (const Case c : {Case{2, 0}, Case{2, 1}, Case{2, 2}, Case{2, 3}, Case{3, 0}, Case{3, 1},
                       Case{3, 2}, Case{3, 3}}) {
    const std::string out = "pz" + std::to_string(c.ranks) + "s" + std::to_string(c.zero);
    ASSERT_EQ(ppo_lag(c.ranks, out, "--zero_stage " + std::to_string(c.zero) +
                                        (c.zero == 3 ? " --zero3_generation sharded" : "")),
              0)
        << read(out + ".log");
    const std::string what = std::to_string(c.ranks) + " ranks, stage " + std::to_string(c.zero);
    EXPECT_LE(max_diff("pz1", out), kTol) << what;
    for (const char* role : {"actor", "reward_critic", "cost_critic"})
      EXPECT_LE(max_diff_role("pz1", out, role, 3), kTol) << what << ", " << role;
    const auto lambdas = rank_lambdas(read(out + ".log"), c.ranks);
    for (int r = 0; r < c.ranks; ++r) {
      ASSERT_FALSE(lambdas[size_t(r)].empty()) << what << ", rank " << r;
      EXPECT_EQ(lambdas[size_t(r)], lambdas[0]) << what << ", rank " << r;
    }
    EXPECT_NEAR(std::stod(lambdas[0]), lambda1, 1e-7) << what;
    if (c.zero >= 2) {  // the models shard their own gradients (and at 3 their parameters)
      EXPECT_NE(read(out + ".log").find(c.zero == 3 ? "parameters and gradients sharded over"
                                                    : "gradients sharded over"),
                std::string::npos) << what;
    }
    if (c.zero == 3) {  // the engine ran on the sharded actor (no full copy)
      EXPECT_NE(read(out + ".log").find("generation sharded"), std::string::npos) << what;
    }
  }
  ASSERT_EQ(ppo_lag(3, "pz3s3g", "--zero_stage 3 --zero3_generation gathered"), 0)
      << read("pz3s3g.log");
  EXPECT_NE(read("pz3s3g.log").find("generation gathered"), std::string::npos);
  EXPECT_EQ(max_diff("pz3s3", "pz3s3g"), 0.0);
  for (const char* role : {"actor", "reward_critic", "cost_critic"})
    EXPECT_EQ(max_diff_role("pz3s3", "pz3s3g", role, 3), 0.0) << "gathered generation, " << role;
  EXPECT_EQ(rank_lambdas(read("pz3s3g.log"), 3)[0], rank_lambdas(read("pz3s3.log"), 3)[0]);
  // The checks can fail: the critics moved well past the tolerance too.
  EXPECT_GT(max_diff_files(d() + "/rm0/model.safetensors",
                           d() + "/pz1/checkpoints/step-00000003/reward_critic/model.safetensors"),
            10 * kTol);
}

// A PPO-Lag run on 2 ranks at stage 2, cut after step 2, resumed on 3 ranks at stage 3 (the
// optimizer state and the parameters of the trained roles re-sharded on load), ends where the
// one-rank run does. λ within 1e-7, as in PpoLagZeroStagesMatchOneRank: each rank scores its
// slice of a micro-batch, and OpenBLAS runs products of a few rows of this tiny model on its
// small-matrix kernel, whose sums differ from its regular kernel's in the last bits, so the
// costs can differ by an ulp or so from the one-rank run's (λ moves by about 0.03 a step).
TEST_F(ScaleOut, PpoLagResumeStageTwoOntoStageThree) {
  ASSERT_EQ(ppo_lag(1, "pr1", "--max_steps 3"), 0) << read("pr1.log");
  ASSERT_NE(ppo_lag(2, "pr23", "--max_steps 3 --save_interval 2 --zero_stage 2", 6,
                    "BEAVER_TEST_KILL_RANK_IN_SAVE=1@3 "), 0) << read("pr23.log");
  ASSERT_EQ(read("pr23/checkpoints/latest"), "step-00000002\n") << read("pr23.log");
  ASSERT_EQ(ppo_lag(3, "pr23", "--max_steps 3 --save_interval 2 --zero_stage 3 --resume"), 0)
      << read("pr23.log");
  EXPECT_NE(read("pr23.log").find("resumed from"), std::string::npos);
  // --zero3_generation auto: the tiny run's copy fits the host's memory, so gathered.
  EXPECT_NE(read("pr23.log").find("--zero3_generation auto: gathered"), std::string::npos)
      << read("pr23.log");
  EXPECT_LE(max_diff("pr1", "pr23"), kTol);
  for (const char* role : {"reward_critic", "cost_critic"})
    EXPECT_LE(max_diff_role("pr1", "pr23", role, 3), kTol) << role;
  EXPECT_NEAR(final_lambda("pr23"), final_lambda("pr1"), 1e-7);
}

// Stage 3 with the next unit's gather prefetched (the default) and with blocking gathers
// (BEAVER_ZERO_PREFETCH=0), generating from the sharded actor (whose decode steps gather
// through the same slots): the same bits for the actor and both critics.
TEST_F(ScaleOut, PpoLagStageThreePrefetchIsBitwiseTheBlockingPath) {
  const std::string flags = "--max_steps 2 --zero_stage 3 --zero3_generation sharded "
                            "--save_interval 2";
  ASSERT_EQ(ppo_lag(2, "pf_on", flags), 0) << read("pf_on.log");
  ASSERT_EQ(ppo_lag(2, "pf_off", flags, 6, "BEAVER_ZERO_PREFETCH=0 "), 0) << read("pf_off.log");
  EXPECT_NE(read("pf_on.log").find("prefetching the next unit"), std::string::npos)
      << read("pf_on.log");
  EXPECT_EQ(read("pf_off.log").find("prefetching the next unit"), std::string::npos);
  EXPECT_EQ(max_diff("pf_on", "pf_off"), 0.0);
  for (const char* role : {"actor", "reward_critic", "cost_critic"})
    EXPECT_EQ(max_diff_role("pf_on", "pf_off", role, 2), 0.0) << role;
  // A value the check refuses.
  EXPECT_NE(ppo_lag(2, "pf_bad", "--max_steps 1 --zero_stage 3", 6, "BEAVER_ZERO_PREFETCH=yes "), 0);
  EXPECT_NE(read("pf_bad.log").find("BEAVER_ZERO_PREFETCH must be 0"), std::string::npos)
      << read("pf_bad.log");
}

}  // namespace
