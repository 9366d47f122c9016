// libFuzzer target for the checkpoint metadata `--resume` parses that fuzz_state does not
// reach: optimizer.json (the AdamW state record of every trainer, train/optimizer.h) and
// rlhf_state.json (the RL trainers' position, λ's state and threshold, train/rlhf.h). The
// first byte chooses the file and the expectations (the model's parameter count, the run
// configuration to match, λ's window size); the rest is its text. Either it parses or it is
// refused with beaver::Error. A parsed record obeys the parser's promises, and writing it back
// and parsing that gives the same record.
#include <cmath>
#include <cstdlib>

#include "csrc/error.h"
#include "train/optimizer.h"
#include "train/rlhf.h"

using namespace beaver;

namespace {

// The parameter count of the tiny model whose real files seed the corpus
// (tests/data/fuzz/resume/).
constexpr int64_t kSeedNumel = 33696;

void optimizer_json(const std::string& text, uint8_t mode) {
  const int64_t numel = (mode & 2) ? kSeedNumel : 1;
  const auto r = train::parse_optimizer_state(text, "fuzz/optimizer.json", numel);
  if (r.step < 0 || r.numel != numel || r.shards < 1 || r.shards > 65536) std::abort();
  const train::OptimizerConfig cfg;
  const auto again =
      train::parse_optimizer_state(train::optimizer_state_json(r, cfg).dump(), "again", numel);
  if (again.step != r.step || again.shards != r.shards) std::abort();
}

void rlhf_state(const std::string& text, uint8_t mode) {
  nlohmann::json want = nlohmann::json::object();
  if (mode & 2) want = {{"algorithm", "ppo-lag"}, {"max_length", 128}, {"epochs", 1}};
  train::LagrangeMultiplier::Options lag;
  lag.window_size = (mode & 4) ? 2 : 128;
  const auto p = train::parse_rlhf_state(text, "fuzz/rlhf_state.json", want, lag);
  if (p.global_step < 0 || p.epoch < 0 || p.index < 0 || p.ptx_position < 0 ||
      p.lambda_steps < 0 || p.metrics_lines < 0 || !std::isfinite(p.lagrange.log_lambda) ||
      !std::isfinite(p.threshold) || int64_t(p.lagrange.window.size()) > lag.window_size)
    std::abort();
  for (float c : p.lagrange.window)
    if (!std::isfinite(c)) std::abort();
  const auto again =
      train::parse_rlhf_state(train::rlhf_state_json(p, want).dump(), "again", want, lag);
  if (again.global_step != p.global_step || again.index != p.index ||
      again.lagrange.window != p.lagrange.window ||
      again.lagrange.log_lambda != p.lagrange.log_lambda || again.threshold != p.threshold)
    std::abort();
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size < 1) return 0;
  const std::string text(reinterpret_cast<const char*>(data + 1), size - 1);
  try {
    if ((data[0] & 1) == 0)
      optimizer_json(text, data[0]);
    else
      rlhf_state(text, data[0]);
  } catch (const Error&) {
    // Refusing malformed input is the expected outcome.
  }
  return 0;
}
