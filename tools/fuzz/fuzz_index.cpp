// libFuzzer target for the shard indexes of HF model folders: model.safetensors.index.json and
// pytorch_model.bin.index.json (model/checkpoint.h). The first byte chooses the index; the rest
// is its text, placed in a folder that holds a real config and real shards (from
// tests/data/golden), so that well-formed indexes reach the shard checks. The folder must open
// or be refused with beaver::Error; every tensor an opened folder reports is read in full so
// that AddressSanitizer sees any byte outside its shard.
#include <filesystem>

#include "csrc/error.h"
#include "model/checkpoint.h"
#include "tools/fuzz/fuzz_util.h"

using namespace beaver;
namespace fs = std::filesystem;

namespace {
// st/: the sharded safetensors fixture without its index; bin/: the .bin fixture as one shard.
struct Folders {
  fuzz::Scratch scratch;
  fs::path st, bin;
  Folders() {
    const fs::path golden = fuzz::source_root() / "tests/data/golden";
    st = scratch.dir() / "st";
    bin = scratch.dir() / "bin";
    fs::create_directories(st);
    fs::create_directories(bin);
    for (const char* f : {"config.json", "model-00001-of-00002.safetensors",
                          "model-00002-of-00002.safetensors"})
      fs::copy_file(golden / "gqa_sharded" / f, st / f);
    fs::copy_file(golden / "mha_bin/config.json", bin / "config.json");
    fs::copy_file(golden / "mha_bin/pytorch_model.bin", bin / "pytorch_model-00001-of-00001.bin");
  }
};
}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  static const Folders folders;
  if (size < 1) return 0;
  const bool bin = data[0] & 1;
  const fs::path& dir = bin ? folders.bin : folders.st;
  folders.scratch.put((bin ? "bin/pytorch_model.bin.index.json" : "st/model.safetensors.index.json"),
                      data + 1, size - 1);
  try {
    const model::HfCheckpoint ck(dir.string());
    unsigned sum = 0;
    for (const auto& t : ck.tensors())
      for (uint64_t i = 0; i < t.nbytes(); ++i) sum += t.data[i];
    volatile unsigned sink = sum;
    (void)sink;
  } catch (const Error&) {
    // Refusing malformed input is the expected outcome.
  }
  return 0;
}
