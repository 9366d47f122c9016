// `beaver convert --input HF_DIR --output DIR [--dtype f32|bf16|f16]`: an HF LLaMA folder
// (safetensors or pytorch_model.bin, single or sharded; causal LM or safe-rlhf score model)
// into a Beaver checkpoint folder. Every tensor is checked against config.json first. Without
// --dtype the source's dtype is kept when all tensors share one, else f32 (never lossy).
#include <cstdio>
#include <string>

#include "csrc/dtype.h"
#include "csrc/error.h"
#include "model/checkpoint.h"
#include "tools/commands.h"

namespace beaver::tools {

void add_convert_command(CLI::App& app) {
  auto* cmd = app.add_subcommand("convert", "Convert an HF LLaMA folder into a Beaver checkpoint");
  struct Args {
    std::string input, output, dtype;
  };
  auto args = std::make_shared<Args>();
  cmd->add_option("--input", args->input, "HF model folder (config.json + weights)")->required();
  cmd->add_option("--output", args->output, "Beaver checkpoint folder to create")->required();
  cmd->add_option("--dtype", args->dtype, "Stored dtype: f32, bf16 or f16 (default: the source's)")
      ->check(CLI::IsMember({"f32", "bf16", "f16"}));
  cmd->callback([args] {
    const model::HfCheckpoint hf(args->input);
    DType dtype = DType::F32;
    if (!args->dtype.empty()) {
      dtype = parse_dtype(args->dtype);
    } else if (auto u = hf.uniform_dtype()) {
      dtype = *u;
    }
    std::vector<model::TensorSource> src;
    for (const auto& t : hf.tensors()) src.push_back(model::tensor_source(t));
    model::write_beaver_checkpoint(args->output, hf.config(), hf.kind(), dtype, src, hf.dir());
    std::printf("converted %s (%s, %zu tensors, %s) -> %s (%s)\n", args->input.c_str(),
                hf.source().c_str(), hf.tensors().size(),
                std::string(model::kind_name(hf.kind())).c_str(), args->output.c_str(),
                std::string(dtype_name(dtype)).c_str());
  });
}

}  // namespace beaver::tools
