// Checkpoints on disk: Hugging Face model folders (read for `beaver convert`, written by
// `beaver export`) and Beaver's own checkpoint folder (what training and inference load).
//
// HF folder, read: config.json plus, in this order of preference, model.safetensors,
// model.safetensors.index.json (+ shards), pytorch_model.bin, or pytorch_model.bin.index.json
// (+ shards). Each index must match its shards exactly (every listed shard exists, every listed
// tensor is in its shard, no shard holds an unlisted tensor; for safetensors, metadata.total_size
// equals the tensor bytes when present). The tensors must then be exactly the config's table
// (model/config.h): names, shapes, and a float dtype (F32, F16 or BF16) each; errors name the
// tensor, the file and both shapes. A tied checkpoint that still stores lm_head.weight is
// accepted only when those bytes equal the embedding (then it is dropped).
//
// Beaver folder: beaver.json {"magic": "beaver-checkpoint", "format_version": 1, "kind":
// "causal-lm" | "score-model", "dtype": "f32" | "bf16" | "f16", "config": <HF config.json>}
// and model.safetensors with the HF tensor names, every tensor in that one dtype, so it can be
// memory-mapped and used in place. beaver.json is written last, so a folder that has one is
// complete.
#pragma once

#include <cstdint>
#include <functional>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "csrc/safetensors.h"
#include "csrc/torch_pickle.h"
#include "model/config.h"

namespace beaver::model {

constexpr std::string_view kBeaverMagic = "beaver-checkpoint";
constexpr int kBeaverFormatVersion = 1;
// Files carried along, when present, by convert, export and every trained model written from
// another: the tokenizer's, and generation_config.json (HF generate's defaults for the model).
constexpr std::string_view kTokenizerFiles[] = {"tokenizer.model", "tokenizer_config.json",
                                                "special_tokens_map.json", "tokenizer.json",
                                                "generation_config.json"};

// Checks `got` against `expected`: every expected name present with the expected shape and a
// float dtype, nothing else. `where` (a folder or file) starts every message.
void check_tensor_table(const std::vector<TensorSpec>& expected,
                        const std::vector<SafeTensorInfo>& got, const std::string& where);

// Converts a stored float tensor (F32, F16 or BF16; any alignment) into `dst` elements.
// out.size() must be numel * dtype_size(dst).
void convert_float_bytes(const SafeTensorInfo& src, DType dst, std::span<uint8_t> out);

// Non-finite values (NaN, +-inf) among float elements (F32, F16 or BF16 bytes, tested on the
// exponent bits, no conversion): how many, and the flat index of the first (-1: none).
struct NonfiniteCount {
  int64_t count = 0;
  int64_t first = -1;
  explicit operator bool() const { return count > 0; }
};
NonfiniteCount count_nonfinite(DType dtype, std::span<const uint8_t> bytes);
NonfiniteCount count_nonfinite(const SafeTensorInfo& t);
// A float tensor on any device (a device tensor is copied to the host first).
NonfiniteCount count_nonfinite(const Tensor& t);
// "3 non-finite values (first at element 17, nan)": for error messages.
std::string describe_nonfinite(const NonfiniteCount& c, const Tensor& host_or_empty);

// An opened HF model folder: config plus mapped, validated weights.
// A model folder given by the user: it exists, is a folder and holds beaver.json (a Beaver
// checkpoint) or config.json (an HF folder); else an Error that says which of these is wrong.
void require_model_folder(const std::string& dir);

class HfCheckpoint {
 public:
  explicit HfCheckpoint(const std::string& dir);
  HfCheckpoint(HfCheckpoint&&) noexcept = default;

  const std::string& dir() const { return dir_; }
  const LlamaConfig& config() const { return config_; }
  ModelKind kind() const { return config_.kind(); }
  const std::string& source() const { return source_; }  // e.g. "model.safetensors"
  // In the config's table order; data points into the mapped files.
  const std::vector<SafeTensorInfo>& tensors() const { return tensors_; }
  const SafeTensorInfo& at(std::string_view name) const;
  // The single float dtype all tensors share, or nullopt when they are mixed.
  std::optional<DType> uniform_dtype() const;

 private:
  std::string dir_;
  std::string source_;
  LlamaConfig config_;
  std::vector<SafeTensorsFile> st_files_;
  std::vector<TorchBinFile> bin_files_;
  std::vector<SafeTensorInfo> tensors_;
};

// Something a writer can pull one tensor's bytes from, in whatever float dtype it writes.
struct TensorSource {
  std::string name;
  std::vector<int64_t> shape;
  std::function<void(DType, std::span<uint8_t>)> fill;
};
// From a stored tensor (converted on the fly) or from a float tensor on any device.
TensorSource tensor_source(const SafeTensorInfo& t);
TensorSource tensor_source(std::string name, const Tensor& t);

// Writes a Beaver checkpoint folder (created if needed; must not already hold a checkpoint).
// The tensors must match expected_tensors(config, kind). The architecture written follows
// `kind` (LlamaForCausalLM, or LlamaModelForScore for score models). Tokenizer files found in
// tokenizer_dir (may be empty) are copied along. Every tensor is checked as it is written: one
// holding a NaN or an infinity fails naming the tensor, and no model.safetensors (hence no
// checkpoint) is left behind, unless allow_nonfinite (`beaver convert --nonfinite_weights warn`).
void write_beaver_checkpoint(const std::string& dir, LlamaConfig config, ModelKind kind,
                             DType dtype, const std::vector<TensorSource>& tensors,
                             const std::string& tokenizer_dir = "",
                             bool allow_nonfinite = false);

// An opened Beaver checkpoint: validated header, mapped weights.
class BeaverCheckpoint {
 public:
  explicit BeaverCheckpoint(const std::string& dir);
  BeaverCheckpoint(BeaverCheckpoint&&) noexcept = default;

  const std::string& dir() const { return dir_; }
  const LlamaConfig& config() const { return config_; }
  ModelKind kind() const { return kind_; }
  DType dtype() const { return dtype_; }
  const SafeTensorsFile& weights() const { return *weights_; }
  // A CPU view into the mapping (read-only memory: copy before modifying).
  Tensor tensor(std::string_view name) const;
  // Sources in table order, for re-writing (export) or copying elsewhere.
  std::vector<TensorSource> sources() const;

 private:
  std::string dir_;
  LlamaConfig config_;
  ModelKind kind_ = ModelKind::CausalLM;
  DType dtype_ = DType::F32;
  std::optional<SafeTensorsFile> weights_;  // set once beaver.json has been validated
};

// Writes an HF model folder: config.json (architecture from `kind`, torch_dtype from `dtype`),
// model.safetensors, or model-0000k-of-0000n.safetensors + model.safetensors.index.json when the
// total exceeds shard_bytes (0: never shard), and the tokenizer files found in tokenizer_dir
// (may be empty). The folder must not already hold a checkpoint. Tensors are checked for
// non-finite values as in write_beaver_checkpoint.
void write_hf_checkpoint(const std::string& dir, LlamaConfig config, ModelKind kind, DType dtype,
                         const std::vector<TensorSource>& tensors, uint64_t shard_bytes,
                         const std::string& tokenizer_dir, bool allow_nonfinite = false);

// Copies the tokenizer files present in `from` to `to`; returns their names.
std::vector<std::string> copy_tokenizer_files(const std::string& from, const std::string& to);

// The HF torch_dtype spelling of a float dtype ("float32", "bfloat16", "float16").
std::string_view torch_dtype_name(DType t);

}  // namespace beaver::model
