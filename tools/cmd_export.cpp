// `beaver export --input DIR --output HF_DIR [--dtype f32|bf16|f16] [--shard_size_mb N]`: a
// Beaver checkpoint back to an HF folder that transformers loads: config.json, safetensors
// (sharded with model.safetensors.index.json when larger than N MB, 10^6 bytes each; default
// 5000 as HF does; 0 never shards) and the tokenizer files the checkpoint carries.
#include <cstdio>
#include <string>

#include "csrc/dtype.h"
#include "csrc/error.h"
#include "model/checkpoint.h"
#include "tools/commands.h"

namespace beaver::tools {

void add_export_command(CLI::App& app) {
  auto* cmd = app.add_subcommand("export", "Export a Beaver checkpoint as an HF LLaMA folder");
  struct Args {
    std::string input, output, dtype;
    uint64_t shard_mb = 5000;
  };
  auto args = std::make_shared<Args>();
  cmd->add_option("--input", args->input, "Beaver checkpoint folder")->required();
  cmd->add_option("--output", args->output, "HF folder to create")->required();
  cmd->add_option("--dtype", args->dtype, "Exported dtype: f32, bf16 or f16 (default: stored)")
      ->check(CLI::IsMember({"f32", "bf16", "f16"}));
  cmd->add_option("--shard_size_mb", args->shard_mb,
                  "Shard above this many MB (10^6 bytes); 0 writes a single file");
  cmd->callback([args] {
    const model::BeaverCheckpoint ck(args->input);
    const DType dtype = args->dtype.empty() ? ck.dtype() : parse_dtype(args->dtype);
    BEAVER_CHECK(args->shard_mb <= (uint64_t(1) << 40), "--shard_size_mb ", args->shard_mb,
                 " is out of range");
    model::write_hf_checkpoint(args->output, ck.config(), ck.kind(), dtype, ck.sources(),
                               args->shard_mb * 1000000, ck.dir());
    std::printf("exported %s (%s) -> %s (%s)\n", args->input.c_str(),
                std::string(model::kind_name(ck.kind())).c_str(), args->output.c_str(),
                std::string(dtype_name(dtype)).c_str());
  });
}

}  // namespace beaver::tools
