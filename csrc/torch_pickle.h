// PyTorch checkpoints (torch.save zip format, as in pytorch_model.bin) without Python.
//
// data.pkl is read by a restricted unpickler: a small stack machine that understands only the
// protocol-2+ opcodes a state dict uses and only these globals: collections.OrderedDict,
// torch._utils._rebuild_tensor_v2, torch._utils._rebuild_parameter and the typed storage classes
// (torch.FloatStorage, HalfStorage, BFloat16Storage, DoubleStorage, LongStorage, IntStorage,
// ShortStorage, CharStorage, ByteStorage, BoolStorage). Nothing is ever executed: "calling" an
// allowed global builds a plain record. Any other opcode or global is refused with an error
// naming it and its byte offset (pickle is a program, and arbitrary globals such as os.system
// are how malicious checkpoints run code).
//
// Tensors must be contiguous (row-major strides); their bytes come from <archive>/data/<key>,
// bounds checked against the storage. `...rotary_emb.inv_freq` buffers are dropped.
#pragma once

#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "csrc/safetensors.h"

namespace beaver {

// One tensor of the unpickled state dict, before its bytes are located.
struct PickledTensor {
  std::string name;
  std::string storage_key;   // the file data/<storage_key> in the archive
  std::string storage_type;  // "FloatStorage", ...
  int64_t storage_numel = 0;  // elements in the storage, from the persistent id
  int64_t storage_offset = 0;  // in elements
  std::vector<int64_t> size;
  std::vector<int64_t> stride;
};

// Runs the restricted unpickler over data.pkl bytes; the result must be a dict of name → tensor.
// `label` starts every error.
std::vector<PickledTensor> unpickle_state_dict(const uint8_t* data, size_t size,
                                               const std::string& label);

// Element size and safetensors dtype name ("F32", ...) of a storage class name; throws for an
// unknown one.
struct StorageDType {
  std::string_view dtype_name;
  size_t size;
};
StorageDType storage_dtype(std::string_view storage_type);

// Parses a whole torch.save archive held in memory: finds <top>/data.pkl, unpickles it and
// resolves every tensor to its bytes. Infos point into [data, data + size); begin/end are byte
// offsets within the tensor's storage entry.
std::vector<SafeTensorInfo> parse_torch_zip(const uint8_t* data, size_t size,
                                            const std::string& label);

// A mapped pytorch_model*.bin; tensor pointers stay valid while it lives.
class TorchBinFile {
 public:
  explicit TorchBinFile(const std::string& path);
  TorchBinFile(TorchBinFile&&) noexcept = default;
  TorchBinFile& operator=(TorchBinFile&&) noexcept = default;
  const std::string& path() const { return map_.path(); }
  const std::vector<SafeTensorInfo>& tensors() const { return tensors_; }

 private:
  MappedFile map_;
  std::vector<SafeTensorInfo> tensors_;
};

}  // namespace beaver
