// Data-parallel SFT on CUDA through the NCCL backend: `mpirun -np 2 beaver train sft
// --device cuda` (one GPU per rank, ZeRO stage 0 and stage 3) against the plain one-rank
// command on the same global batch of 6, 3 optimizer steps of a tiny LLaMA, through the beaver
// binary next to this test. On CUDA the ranks' micro-batches (3 against 6) run other GEMM
// shapes in bf16 and the gradients are summed in another order, and AdamW's first steps move
// each weight by about the learning rate whatever the gradient's size, so the comparison is
// made where those roundings stay small:
//   - the logged loss and gradient norm of every step within 1e-2 (relative) of one rank's;
//   - at most 1 % of the weights more than a tenth of the learning rate away from one rank's
//     (a run whose ranks did not average their gradients, each stepping on its half, moves most
//     weights differently: the comparison can fail, and the one-rank run itself has moved
//     more than half the weights by that much from the init);
//   - the 2-rank runs name the NCCL backend ("collectives mpi+nccl"), and two runs on 2 ranks
//     write the same bytes (NCCL's reductions are fixed for a rank count).
// Skips without a device, without NCCL, without mpirun or with fewer than two visible devices,
// saying which (NCCL takes one rank per device, so one lent GPU cannot hold two ranks).
#include <gtest/gtest.h>

#include <unistd.h>

#include <cmath>
#include <filesystem>
#include <map>
#include <nlohmann/json.hpp>
#include <sstream>
#include <string>
#include <vector>

#include "gpu/nccl_testutil.h"
#include "mpi_testutil.h"

namespace beaver::test {
namespace {

namespace fs = std::filesystem;

constexpr double kLearningRate = 1e-3;

class NcclSft : public ::testing::Test {
 protected:
  // Why the suite cannot run here, or empty when it can.
  static std::string missing() {
    if (std::string why = nccl_missing(2); !why.empty()) return why;
    return have_mpirun() ? "" : kNoMpirun;
  }
  static void SetUpTestSuite() {
    if (!missing().empty()) return;
    dir_ = new std::string(fs::temp_directory_path() /
                           ("beaver-nccl-sft-" + std::to_string(getpid())));
    fs::create_directories(*dir_);
    ok_ = make_tiny_world(beaver(), *dir_) && make_tiny_init(beaver(), *dir_, 5, 64, "init");
  }
  static void TearDownTestSuite() {
    if (dir_) fs::remove_all(*dir_);
    delete dir_;
    dir_ = nullptr;
  }
  void SetUp() override {
    if (const std::string why = missing(); !why.empty()) GTEST_SKIP() << why;
    ASSERT_TRUE(ok_) << "fixture setup failed in " << *dir_;
  }
  static std::string beaver() { return self_dir() + "/beaver"; }
  static std::string d() { return *dir_; }
  static std::string read(const std::string& path) { return read_file(d() + "/" + path); }

  // SFT on CUDA, `ranks` ranks (1: the plain command), 3 steps of a global batch of 6.
  static int sft(int ranks, const std::string& out, const std::string& extra) {
    std::ostringstream lr;
    lr << kLearningRate;
    return run(launcher(ranks) + beaver() + " train sft --device cuda --model_name_or_path " +
               d() + "/init --train_datasets " + d() + "/world/sft.json --max_length 64 "
               "--epochs 1 --learning_rate " + lr.str() + " --lr_warmup_ratio 0 --threads 1 "
               "--gradient_accumulation_steps 1 --train_batch_size 6 --max_steps 3 "
               "--output_dir " + d() + "/" + out + " " + extra + " > " + d() + "/" + out +
               ".log 2>&1");
  }
  static std::string model(const std::string& out) { return d() + "/" + out + "/model.safetensors"; }

  // step -> (loss, grad_norm) from a run's metrics.jsonl (training rows only).
  static std::map<int64_t, std::pair<double, double>> curve(const std::string& out) {
    std::map<int64_t, std::pair<double, double>> c;
    std::istringstream lines(read(out + "/metrics.jsonl"));
    for (std::string line; std::getline(lines, line);) {
      if (line.empty()) continue;
      const auto j = nlohmann::json::parse(line);
      if (j.contains("step") && j.contains("loss") && j.contains("grad_norm"))
        c[j["step"].get<int64_t>()] = {j["loss"].get<double>(), j["grad_norm"].get<double>()};
    }
    return c;
  }

  // The run `out` against the one-rank run `one`: curves and weights as the header says.
  static void expect_like_one_rank(const std::string& one, const std::string& out) {
    const auto a = curve(one), b = curve(out);
    ASSERT_EQ(a.size(), 3u) << read(one + "/metrics.jsonl");
    ASSERT_EQ(b.size(), a.size()) << read(out + "/metrics.jsonl");
    for (const auto& [step, v] : a) {
      ASSERT_TRUE(b.count(step)) << out << ": no step " << step;
      const auto [loss, norm] = b.at(step);
      EXPECT_NEAR(loss, v.first, 1e-2 * std::fabs(v.first)) << out << " step " << step;
      EXPECT_NEAR(norm, v.second, 1e-2 * std::fabs(v.second)) << out << " step " << step;
    }
    const ModelDiff w = model_diff(model(one), model(out), kLearningRate / 10);
    ASSERT_GT(w.elements, 0);
    EXPECT_LE(double(w.over), 0.01 * double(w.elements))
        << out << ": " << w.over << " of " << w.elements << " weights differ by more than "
        << kLearningRate / 10 << " (largest " << w.max_abs << ")";
  }

  static inline std::string* dir_ = nullptr;
  static inline bool ok_ = false;
};

TEST_F(NcclSft, TwoRanksOnCudaMatchOneRank) {
  ASSERT_EQ(sft(1, "one", ""), 0) << read("one.log");
  // The comparison can fail: the one-rank run has moved most weights past the threshold.
  const ModelDiff moved = model_diff(model("init"), model("one"), kLearningRate / 10);
  ASSERT_GT(double(moved.over), 0.5 * double(moved.elements))
      << moved.over << " of " << moved.elements << " weights moved";
  for (const char* stage : {"0", "3"}) {
    const std::string out = std::string("two_z") + stage;
    ASSERT_EQ(sft(2, out, std::string("--zero_stage ") + stage), 0) << read(out + ".log");
    EXPECT_NE(read(out + ".log").find("collectives mpi+nccl"), std::string::npos)
        << "the run did not name the NCCL backend:\n" << read(out + ".log");
    expect_like_one_rank("one", out);
  }
  ASSERT_EQ(sft(2, "two_z0_again", "--zero_stage 0"), 0) << read("two_z0_again.log");
  EXPECT_TRUE(read("two_z0/model.safetensors") == read("two_z0_again/model.safetensors"))
      << "two runs on 2 ranks wrote different weights";
}

}  // namespace
}  // namespace beaver::test
