// Helpers for the tests that run ranks under mpirun on loopback and the beaver binary next to
// the test (tests/test_data_parallel_commands.cpp, tests/gpu/test_comm_nccl.cpp,
// tests/gpu/test_nccl_sft.cpp): where the binaries are, whether mpirun exists, the launcher
// prefix of N ranks, a shell command's exit status, a file's bytes, and how far two saved models
// lie apart.
//
// The launcher sets what mpirun needs as root (OMPI_ALLOW_RUN_AS_ROOT(_CONFIRM)), allows more
// ranks than cores (--oversubscribe) and gives every rank one OpenMP thread, passively waiting.
#pragma once

#include <sys/wait.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <string>

#include "csrc/dtype.h"
#include "csrc/error.h"
#include "csrc/safetensors.h"

namespace beaver::test {

// The folder of the running test binary (the beaver binary and the other tests live there).
inline std::string self_dir() {
  return std::filesystem::read_symlink("/proc/self/exe").parent_path().string();
}
inline std::string self_exe() { return std::filesystem::read_symlink("/proc/self/exe").string(); }

inline bool have_mpirun() { return std::system("command -v mpirun >/dev/null 2>&1") == 0; }
inline constexpr const char* kNoMpirun = "mpirun not found (scripts/setup.sh installs openmpi-bin)";

// Whether this process is itself a rank that mpirun started.
inline bool is_mpi_rank() { return std::getenv("OMPI_COMM_WORLD_SIZE") != nullptr; }

// The prefix that runs a command on `ranks` ranks (1: the plain command, one OpenMP thread).
inline std::string launcher(int ranks) {
  if (ranks == 1) return "OMP_NUM_THREADS=1 ";
  return "OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 OMP_NUM_THREADS=1 "
         "OMP_WAIT_POLICY=passive mpirun --oversubscribe -np " + std::to_string(ranks) + " ";
}
// The mpirun prefix of `ranks` ranks, also for one (a one-rank MPI job, not the plain command).
inline std::string mpirun(int ranks) {
  return "OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 OMP_NUM_THREADS=1 "
         "OMP_WAIT_POLICY=passive mpirun --oversubscribe -np " + std::to_string(ranks) + " ";
}

// A shell command's exit status (128 when it did not exit normally).
inline int run(const std::string& cmd) {
  const int rc = std::system(cmd.c_str());
  return WIFEXITED(rc) ? WEXITSTATUS(rc) : 128;
}

// A file's bytes (empty when it cannot be read).
inline std::string read_file(const std::string& path) {
  std::ifstream f(path, std::ios::binary);
  return std::string(std::istreambuf_iterator<char>(f), {});
}

// The inputs of the tiny runs through the binary `beaver` into folder d: the toy world
// (d/world: sft.json, preference.jsonl, prompts.jsonl, eval.jsonl, corpus.txt) and a
// 300-piece tokenizer trained on its corpus (d/tok). True when both commands passed.
inline bool make_tiny_world(const std::string& beaver, const std::string& d) {
  const std::string quiet = " > /dev/null 2>&1";
  return run(beaver + " toyworld --output " + d + "/world --seed 3 --sft-examples 120 "
             "--preference-pairs 120 --ppo-prompts 20 --eval-prompts 10" + quiet) == 0 &&
         run(beaver + " tokenizer train --input " + d + "/world/corpus.txt --vocab-size 300 "
             "--output " + d + "/tok" + quiet) == 0;
}
// A tiny LLaMA (hidden 32, 2 layers, 4 heads, 2 KV heads) on that tokenizer, drawn from `seed`,
// into d/out. True when the command passed.
inline bool make_tiny_init(const std::string& beaver, const std::string& d, int seed,
                           int max_position, const std::string& out) {
  return run(beaver + " init --hidden 32 --layers 2 --heads 4 --kv-heads 2 --intermediate 64 "
             "--vocab-from " + d + "/tok --max-position " + std::to_string(max_position) +
             " --seed " + std::to_string(seed) + " --output " + d + "/" + out +
             " > /dev/null 2>&1") == 0;
}

// How far two model.safetensors files lie apart, tensor by tensor over the same names: the
// largest absolute difference, how many elements differ by more than `above`, and how many
// elements there are. F32 and BF16 tensors (read as fp32); any other dtype, a missing tensor
// or another shape is an Error naming it.
struct ModelDiff {
  double max_abs = 0;
  int64_t over = 0;
  int64_t elements = 0;
};
inline ModelDiff model_diff(const std::string& file_a, const std::string& file_b,
                            double above = 0) {
  SafeTensorsFile fa(file_a), fb(file_b);
  ModelDiff d;
  auto value = [](const SafeTensorInfo& t, int64_t i, const std::string& file) -> double {
    if (t.dtype == DType::F32) return static_cast<const float*>(t.tensor().data)[i];
    if (t.dtype == DType::BF16) return to_f32(static_cast<const bf16*>(t.tensor().data)[i]);
    BEAVER_FAIL("model_diff: ", file, ": tensor ", t.name, " is ", t.dtype_name,
                " (F32 or BF16 compared)");
  };
  for (const auto& t : fa.tensors()) {
    const auto& u = fb.at(t.name);
    BEAVER_CHECK(t.shape == u.shape, "model_diff: tensor ", t.name, " has other shapes in ",
                 file_a, " and ", file_b);
    for (int64_t i = 0; i < t.numel(); ++i) {
      const double e = std::fabs(value(t, i, file_a) - value(u, i, file_b));
      d.max_abs = std::isnan(e) ? HUGE_VAL : std::max(d.max_abs, e);  // a NaN is never near
      d.over += e <= above ? 0 : 1;
    }
    d.elements += t.numel();
  }
  return d;
}

}  // namespace beaver::test
