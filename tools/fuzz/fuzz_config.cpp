// libFuzzer target for the model configuration files: Hugging Face's config.json
// (model/config.h) and the beaver.json header of a Beaver checkpoint (model/checkpoint.h). The
// first byte chooses the file, the rest is its text. Either is refused with beaver::Error or
// accepted; an accepted config.json must validate, yield its tensor table, and load again from
// what to_json writes (the form every checkpoint writer stores).
#include <cstdio>
#include <cstdlib>

#include "csrc/error.h"
#include "model/checkpoint.h"
#include "model/config.h"
#include "tools/fuzz/fuzz_util.h"

using namespace beaver;

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  static const fuzz::Scratch scratch;
  if (size < 1) return 0;
  const bool beaver_header = data[0] & 1;
  try {
    if (!beaver_header) {
      const std::string path = scratch.put("config.json", data + 1, size - 1);
      const auto c = model::LlamaConfig::load(path);
      c.validate(path);
      for (auto kind : {model::ModelKind::CausalLM, model::ModelKind::ScoreModel})
        (void)model::expected_tensors(c, kind);
      try {
        (void)model::LlamaConfig::from_json(c.to_json(), "round trip");
      } catch (const Error& e) {
        std::fprintf(stderr, "accepted config does not reload: %s\n", e.what());
        std::abort();
      }
    } else {
      const auto dir = scratch.dir() / "ckpt";
      std::filesystem::create_directories(dir);
      scratch.put("ckpt/beaver.json", data + 1, size - 1);
      const model::BeaverCheckpoint ck(dir.string());
      (void)ck.config();
    }
  } catch (const Error&) {
    // Refusing malformed input is the expected outcome.
  }
  return 0;
}
