// Generation from a sharded model (ZeRO stage 3, model/engine.h "Sharded parameters") on MPI
// ranks over loopback: this binary runs itself under mpirun (2 and 3 ranks, --oversubscribe,
// one thread each, under `timeout`, so that ranks that fall out of step fail the test instead of
// hanging it). On every rank, for an untied and a tied-embedding model:
//   - the engine over the stage-3 model is a collective (no CUDA graphs) and its tokens, for
//     the rank's share of a global prompt list with the seeds of the global indices, are
//     exactly those of one unsharded engine generating the whole list on one rank, sampled at
//     temperature 1 with top-p, with an EOS that stops sequences at different steps;
//   - the same tokens come from the full inference copy gathered from the shards (the gathered
//     mode) and from the stage-3 model with blocking gathers (BEAVER_ZERO_PREFETCH=0);
//   - shares: per global micro-batch (the RL trainers' way: the last micro-batch leaves every
//     rank but rank 0 without prompts, which then join with a dummy batch), and one call per rank
//     with uneven numbers of internal batches (2 x max_batch + 1 prompts on rank 0, 1 on rank 1,
//     none on rank 2);
//   - ranks joined the others' steps (join steps counted), and prompts that one rank refuses
//     stop every rank with an error instead of a hang.
#include <gtest/gtest.h>

#include <algorithm>
#include <cstdlib>
#include <cstring>
#include <random>
#include <string>
#include <vector>

#include "csrc/comm.h"
#include "csrc/context.h"
#include "model/engine.h"
#include "model/llama.h"
#include "model/loader.h"
#include "mpi_testutil.h"

namespace beaver::model {
namespace {

std::string golden_dir(const std::string& name) {
  const char* src = std::getenv("BEAVER_SOURCE_DIR");
  return std::string(src ? src : ".") + "/tests/data/golden/" + name;
}

using Prompts = std::vector<std::vector<int32_t>>;

constexpr int64_t kMaxBatch = 2;   // per rank
constexpr int64_t kMaxPrompt = 6;  // tokens
constexpr int64_t kNew = 10;       // max_new_tokens

Prompts make_prompts(size_t n, int64_t vocab) {
  std::mt19937 rng(1234);  // the same list on every rank
  Prompts p(n);
  for (auto& q : p) {
    q.resize(size_t(1 + rng() % kMaxPrompt));
    for (auto& t : q) t = int32_t(3 + rng() % uint32_t(vocab - 3));
  }
  return p;
}

GenerateOptions options(int32_t eos, uint64_t seed) {
  GenerateOptions go;
  go.sampling = ops::SamplingConfig{1.0f, 0, 0.9f};
  go.max_new_tokens = kNew;
  go.eos_id = eos;
  go.seed = seed;
  go.pad_id = 0;
  return go;
}

// One generation as bytes: the EOS flag, then the tokens.
std::string encode(const Generation& g) {
  std::string s(1, g.stopped_at_eos ? '1' : '0');
  s.append(reinterpret_cast<const char*>(g.tokens.data()), g.tokens.size() * sizeof(int32_t));
  return s;
}

// The generations of every rank's share (global index, generation), in global order.
using Indexed = std::vector<std::pair<size_t, Generation>>;
std::vector<std::string> all_ranks(Communicator& comm, const Indexed& mine) {
  std::string bytes;
  for (const auto& [index, g] : mine) {
    const std::string e = encode(g);
    const uint64_t head[2] = {uint64_t(index), uint64_t(e.size())};
    bytes.append(reinterpret_cast<const char*>(head), sizeof head);
    bytes += e;
  }
  std::vector<std::string> out;
  for (const std::string& r : comm.all_gather_bytes(bytes))
    for (size_t at = 0; at < r.size();) {
      uint64_t head[2] = {0, 0};
      std::memcpy(head, r.data() + at, sizeof head);
      if (out.size() <= head[0]) out.resize(size_t(head[0]) + 1);
      out[size_t(head[0])] = r.substr(at + sizeof head, size_t(head[1]));
      at += sizeof head + size_t(head[1]);
    }
  return out;
}

// [begin, end) of rank r's part of n prompts: per global micro-batch of kMaxBatch x ranks, the
// r-th slice of each (a list of ranges); or one range per rank of the sizes given.
struct Share {
  std::vector<std::pair<size_t, size_t>> parts;
};
Share micro_batch_share(size_t n, int ranks, int r) {
  Share s;
  const size_t g = size_t(kMaxBatch) * size_t(ranks);
  for (size_t at = 0; at < n; at += g) {
    const size_t b = std::min(n, at + size_t(r) * size_t(kMaxBatch));
    s.parts.push_back({b, std::min(n, b + size_t(kMaxBatch))});
  }
  return s;
}

// Generates rank r's share with `engine` (one generate() call per part, seeds by global index).
Indexed run_share(InferenceEngine& engine, const Prompts& prompts, const Share& s, int32_t eos) {
  Indexed out;
  for (const auto& [b, e] : s.parts) {
    const Prompts part(prompts.begin() + long(b), prompts.begin() + long(e));
    size_t i = b;
    for (Generation& g : engine.generate(part, options(eos, 77 + b))) out.push_back({i++, std::move(g)});
  }
  return out;
}

LlamaOptions base_options() {
  LlamaOptions o;
  o.head = Head::LM;
  o.max_batch = kMaxBatch;
  o.max_seq = kMaxPrompt;
  o.training = true;  // as the RL actor
  return o;
}

TEST(ShardedGenerationRanks, TokensMatchOneRank) {
  if (!test::is_mpi_rank()) GTEST_SKIP() << "runs as a rank of ShardedGeneration";
  auto comm = communicator_from_environment();
  ASSERT_EQ(comm->backend(), "mpi");
  const int R = comm->size(), rank = comm->rank();
  Context ctx = Context::cpu(1);
  for (const char* fixture : {"gqa", "tied_llama3"}) {
    SCOPED_TRACE(cat(fixture, ", rank ", rank, " of ", R));
    const std::string dir = golden_dir(fixture);
    const LlamaConfig cfg = checkpoint_config(dir);
    const size_t n = size_t(kMaxBatch) * size_t(R) + 1;  // the last micro-batch: rank 0 alone
    const size_t big = 2 * size_t(kMaxBatch) + 1;           // rank 0's uneven share
    const Prompts prompts = make_prompts(std::max(n, big + 1), cfg.vocab_size);

    // One rank, unsharded, the whole list in one batch (no collective: every rank computes it).
    LlamaOptions ro = base_options();
    ro.max_batch = int64_t(prompts.size());
    LlamaModel ref(ctx, cfg, ro);
    load_weights(ref, dir);
    InferenceEngine ref_engine(ref, kMaxPrompt + kNew);
    // EOS: the most frequent token of a run without one, so that sequences stop at different
    // steps (sampling with EOS is the same run cut at the first EOS).
    std::vector<int> count(size_t(cfg.vocab_size), 0);
    for (const Generation& g : ref_engine.generate(prompts, options(-1, 77)))
      for (int32_t t : g.tokens) ++count[size_t(t)];
    const int32_t eos = int32_t(std::max_element(count.begin(), count.end()) - count.begin());
    const auto want = ref_engine.generate(prompts, options(eos, 77));
    int stopped = 0;
    std::vector<size_t> lengths;
    for (const Generation& g : want) {
      stopped += g.stopped_at_eos ? 1 : 0;
      if (g.stopped_at_eos) lengths.push_back(g.tokens.size());
    }
    ASSERT_GE(stopped, 2) << "EOS " << eos << " must stop some sequences";
    ASSERT_LT(stopped, int(want.size())) << "and leave some running to max_new_tokens";
    ASSERT_NE(*std::min_element(lengths.begin(), lengths.end()),
              *std::max_element(lengths.begin(), lengths.end()))
        << "the sequences must stop at different steps";
    std::vector<std::string> want_all;
    for (const Generation& g : want) want_all.push_back(encode(g));
    const std::vector<std::string> want_bytes(want_all.begin(), want_all.begin() + long(n));

    // Stage 3 on the ranks, sharded generation (prefetch on, the default).
    LlamaOptions so = base_options();
    so.zero_stage = 3;
    so.comm = comm.get();
    LlamaModel sharded(ctx, cfg, so);
    ASSERT_TRUE(sharded.params_sharded());
    load_weights(sharded, dir);
    InferenceEngine engine(sharded, kMaxPrompt + kNew);
    EXPECT_TRUE(engine.collective());
    EXPECT_FALSE(engine.uses_cuda_graphs());
    const Share per_micro = micro_batch_share(n, R, rank);
    EXPECT_EQ(all_ranks(*comm, run_share(engine, prompts, per_micro, eos)), want_bytes)
        << "sharded, per global micro-batch";
    // Uneven shares in one call each: rank 0 takes 2 x max_batch + 1 prompts (three internal
    // batches), rank 1 one, the others none.
    Share uneven;
    if (rank == 0) uneven.parts.push_back({0, big});
    if (rank == 1) uneven.parts.push_back({big, big + 1});
    if (rank >= 2) uneven.parts.push_back({big + 1, big + 1});
    const std::vector<std::string> want_uneven(want_all.begin(), want_all.begin() + long(big + 1));
    EXPECT_EQ(all_ranks(*comm, run_share(engine, prompts, uneven, eos)), want_uneven)
        << "sharded, uneven shares";
    // Every rank but the one with the longest work joined steps it had no sequence for.
    const double joined =
        comm->all_reduce(double(engine.stats().join_steps > 0 ? 1 : 0), ReduceOp::Sum);
    EXPECT_GE(joined, double(R - 1));

    // Gathered mode: the full inference copy of the shards, generating on its own.
    LlamaOptions co = base_options();
    co.training = false;
    LlamaModel copy(ctx, cfg, co);
    sharded.gather_into(copy);
    InferenceEngine copy_engine(copy, kMaxPrompt + kNew);
    EXPECT_FALSE(copy_engine.collective());
    EXPECT_EQ(all_ranks(*comm, run_share(copy_engine, prompts, per_micro, eos)), want_bytes)
        << "gathered copy";

    // Blocking gathers (no prefetch): the same tokens.
    ASSERT_EQ(setenv("BEAVER_ZERO_PREFETCH", "0", 1), 0);
    LlamaModel blocking(ctx, cfg, so);
    ASSERT_EQ(unsetenv("BEAVER_ZERO_PREFETCH"), 0);
    load_weights(blocking, dir);
    InferenceEngine blocking_engine(blocking, kMaxPrompt + kNew);
    EXPECT_EQ(all_ranks(*comm, run_share(blocking_engine, prompts, per_micro, eos)), want_bytes)
        << "sharded, BEAVER_ZERO_PREFETCH=0";

    // A prompt refused on one rank (too long) stops every rank, before any gather.
    Prompts bad = {prompts[0]};
    if (rank == R - 1) bad[0].assign(size_t(kMaxPrompt + 1), 5);
    try {
      engine.generate(bad, options(eos, 77));
      ADD_FAILURE() << "a refused prompt on rank " << R - 1 << " did not stop rank " << rank;
    } catch (const Error& e) {
      const std::string msg = e.what();
      EXPECT_NE(msg.find(rank == R - 1 ? "the engine takes at most" : "another rank's prompts"),
                std::string::npos) << msg;
    }
    // The engine is still usable afterwards (every rank left at the same point).
    EXPECT_EQ(all_ranks(*comm, run_share(engine, prompts, per_micro, eos)), want_bytes)
        << "sharded, after a refused call";
  }
}

class ShardedGeneration : public ::testing::TestWithParam<int> {};

TEST_P(ShardedGeneration, Ranks) {
  if (test::is_mpi_rank()) GTEST_SKIP() << "already a rank";
  if (!test::have_mpirun()) GTEST_SKIP() << test::kNoMpirun;
  // A rank out of step with the others waits forever in a collective: the timeout turns that
  // into a failure.
  EXPECT_EQ(test::run("timeout 300 env BEAVER_LOG=warn " + test::mpirun(GetParam()) + test::self_exe() +
                      " --gtest_filter=ShardedGenerationRanks.* --gtest_brief=1"),
            0);
}

INSTANTIATE_TEST_SUITE_P(TwoAndThree, ShardedGeneration, ::testing::Values(2, 3));

}  // namespace
}  // namespace beaver::model
