// `beaver convert --input HF_DIR --output DIR [--dtype f32|bf16|f16]`: an HF LLaMA folder
// (safetensors or pytorch_model.bin, single or sharded; causal LM or safe-rlhf score model)
// into a Beaver checkpoint folder. Every tensor is checked against config.json first. Without
// --dtype the source's dtype is kept when all tensors share one, else f32 (never lossy).
// Source tensors holding NaN or infinity are refused, each named with its count
// (--nonfinite_weights warn lists them and converts anyway); a value that overflows the target
// dtype (f32 -> f16) is refused the same way.
#include <cstdio>
#include <filesystem>
#include <string>

#include "csrc/dtype.h"
#include "csrc/error.h"
#include "csrc/log.h"
#include "model/checkpoint.h"
#include "tools/commands.h"

namespace beaver::tools {

void add_convert_command(CLI::App& app) {
  auto* cmd = app.add_subcommand("convert", "Convert an HF LLaMA folder into a Beaver checkpoint");
  struct Args {
    std::string input, output, dtype, nonfinite = "refuse";
  };
  auto args = std::make_shared<Args>();
  cmd->add_option("--input", args->input, "HF model folder (config.json + weights)")->required();
  cmd->add_option("--output", args->output, "Beaver checkpoint folder to create")->required();
  cmd->add_option("--dtype", args->dtype, "Stored dtype: f32, bf16 or f16 (default: the source's)")
      ->check(CLI::IsMember({"f32", "bf16", "f16"}));
  cmd->add_option("--nonfinite_weights", args->nonfinite,
                  "Source tensors with NaN or infinity: refuse | warn (convert anyway)")
      ->check(CLI::IsMember({"refuse", "warn"}))
      ->capture_default_str();
  cmd->callback([args] {
    const model::HfCheckpoint hf(args->input);
    DType dtype = DType::F32;
    if (!args->dtype.empty()) {
      dtype = parse_dtype(args->dtype);
    } else if (auto u = hf.uniform_dtype()) {
      dtype = *u;
    }
    const bool warn = args->nonfinite == "warn";
    std::string bad;
    int64_t bad_tensors = 0;
    for (const auto& t : hf.tensors()) {
      const model::NonfiniteCount c = model::count_nonfinite(t);
      if (!c) continue;
      ++bad_tensors;
      const std::string line = cat(t.name, ": ", model::describe_nonfinite(c, Tensor()));
      if (warn) log_warn(args->input, ": ", line);
      if (bad_tensors <= 10) bad += cat("\n  ", line);
    }
    BEAVER_CHECK(warn || bad_tensors == 0, args->input, ": ", bad_tensors, " source tensor",
                 bad_tensors == 1 ? "" : "s", " hold NaN or infinity:", bad,
                 bad_tensors > 10 ? "\n  ..." : "",
                 "\nrefusing to convert (--nonfinite_weights warn converts anyway)");
    std::vector<model::TensorSource> src;
    for (const auto& t : hf.tensors()) src.push_back(model::tensor_source(t));
    model::write_beaver_checkpoint(args->output, hf.config(), hf.kind(), dtype, src, hf.dir(),
                                   /*allow_nonfinite=*/warn);
    if (!std::filesystem::exists(std::filesystem::path(args->input) / "tokenizer.model"))
      log_warn("convert: ", args->input, " has no tokenizer.model (Beaver reads sentencepiece "
               "tokenizers only, not tokenizer.json): the checkpoint in ", args->output,
               " cannot be trained (train sft/rm/cm, ppo-lag, ppo, ppo-shaping), evaluated "
               "(eval, arena) or used by generate/chat until the model's tokenizer.model is "
               "copied into it; info and export work without it");
    std::printf("converted %s (%s, %zu tensors, %s) -> %s (%s)\n", args->input.c_str(),
                hf.source().c_str(), hf.tensors().size(),
                std::string(model::kind_name(hf.kind())).c_str(), args->output.c_str(),
                std::string(dtype_name(dtype)).c_str());
  });
}

}  // namespace beaver::tools
