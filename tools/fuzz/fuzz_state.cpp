// libFuzzer target for the files `--resume` reads before any weights: trainer_state.json
// (train/trainer_state.h) and the `latest` pointer of a checkpoint root
// (train/checkpoint_dir.h). The first byte chooses the file (and, for trainer_state.json,
// whether the expected run_config is empty or holds a few keys); the rest is its text. Either
// parses or is refused with beaver::Error; a parsed state has non-negative counters and the
// expected stage.
#include <cstdlib>

#include "csrc/error.h"
#include "tools/fuzz/fuzz_util.h"
#include "train/checkpoint_dir.h"
#include "train/trainer_state.h"

using namespace beaver;

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  static const fuzz::Scratch scratch;
  if (size < 1) return 0;
  try {
    if ((data[0] & 1) == 0) {
      train::TrainerProgress expected;
      expected.stage = (data[0] & 4) ? "ppo-lag" : "sft";
      if (data[0] & 2)
        expected.run_config = {{"lr", 2e-5}, {"batch_size", 4}, {"datasets", {"a.json:0.5"}}};
      const std::string text(reinterpret_cast<const char*>(data + 1), size - 1);
      const auto p = train::parse_trainer_state(text, "fuzz/trainer_state.json", expected);
      if (p.stage != expected.stage || p.run_config != expected.run_config || p.epoch < 0 ||
          p.index < 0 || p.micro_batches < 0 || p.metrics_lines < 0)
        std::abort();
    } else {
      std::filesystem::create_directories(scratch.dir() / "run" / "step-00000001");
      scratch.put("run/latest", data + 1, size - 1);
      const std::string dir = train::latest_checkpoint((scratch.dir() / "run").string());
      if (!dir.empty() && !std::filesystem::is_directory(dir)) std::abort();
    }
  } catch (const Error&) {
    // Refusing malformed input is the expected outcome.
  }
  return 0;
}
