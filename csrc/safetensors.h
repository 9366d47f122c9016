// safetensors files: a read-only memory-mapped reader that validates the whole header before
// handing out a single pointer, and an atomic writer.
//
// Layout: 8-byte little-endian u64 N, N bytes of UTF-8 JSON (starts with '{', may be padded with
// spaces), then the data buffer. The JSON maps names to {dtype, shape, data_offsets [begin, end)}
// relative to the buffer, plus an optional "__metadata__" object of strings. The reader rejects
// anything the format does not allow (see SafeTensorsFile), because a loader that trusts offsets
// from a downloaded file reads out of bounds; every message names the file and the tensor.
#pragma once

#include <cstddef>
#include <cstdint>
#include <functional>
#include <map>
#include <optional>
#include <span>
#include <string>
#include <utility>
#include <vector>

#include "csrc/dtype.h"
#include "csrc/tensor.h"

namespace beaver {

// A whole file mapped read-only (MAP_PRIVATE). Empty files map to {nullptr, 0}.
class MappedFile {
 public:
  MappedFile() = default;
  explicit MappedFile(const std::string& path);
  ~MappedFile();
  MappedFile(MappedFile&& o) noexcept;
  MappedFile& operator=(MappedFile&& o) noexcept;
  MappedFile(const MappedFile&) = delete;
  MappedFile& operator=(const MappedFile&) = delete;

  const uint8_t* data() const { return data_; }
  size_t size() const { return size_; }
  const std::string& path() const { return path_; }

 private:
  void release() noexcept;
  const uint8_t* data_ = nullptr;
  size_t size_ = 0;
  std::string path_;
};

// The header is capped like the reference implementation's (100 MB).
constexpr uint64_t kSafeTensorsMaxHeader = 100u * 1000u * 1000u;

// Element size of a safetensors dtype name (F64 ... F8_E5M2), or 0 when the name is unknown.
size_t safetensors_dtype_size(std::string_view name);
// The Beaver dtype for a safetensors dtype name, when Beaver has one (F32 BF16 F16 I32 I64 U8).
std::optional<DType> safetensors_to_dtype(std::string_view name);
// The safetensors spelling of a Beaver dtype ("F32", "BF16", ...).
std::string_view dtype_to_safetensors(DType t);

struct SafeTensorInfo {
  std::string name;
  std::string dtype_name;      // as written in the file: "F32", "BOOL", "F8_E4M3", ...
  std::optional<DType> dtype;  // set when Beaver has this element type
  std::vector<int64_t> shape;  // may be empty (0-d) or contain zeros (empty tensor)
  uint64_t begin = 0;          // offsets relative to the data buffer
  uint64_t end = 0;
  const uint8_t* data = nullptr;  // points into the mapping (or the parsed bytes)

  uint64_t nbytes() const { return end - begin; }
  int64_t numel() const;
  // A CPU view of the bytes (read-only memory when mapped); fails, naming the tensor, when the
  // dtype has no Beaver counterpart, the rank exceeds kMaxDims or the data is misaligned.
  Tensor tensor() const;
};

// The validated contents of a safetensors byte range. Pointers refer to `data`.
struct SafeTensorsHeader {
  std::vector<SafeTensorInfo> tensors;  // in data-offset order
  std::map<std::string, std::string> metadata;
  uint64_t header_size = 0;  // N
};

// Parses and validates bytes [data, data + size); `label` (normally the path) starts every
// error message. Checks: file at least 8 bytes, N <= kSafeTensorsMaxHeader and within the file,
// JSON well formed and starting with '{', every entry an object with exactly dtype/shape/
// data_offsets, known dtype, non-negative integer shape, 0 <= begin <= end <= buffer size,
// end - begin == numel * element size, unique names, no overlaps, no holes (the buffer is covered
// exactly), __metadata__ an object of strings.
SafeTensorsHeader parse_safetensors(const uint8_t* data, size_t size, const std::string& label);

// A mapped, validated safetensors file. Tensor pointers stay valid while it lives.
class SafeTensorsFile {
 public:
  explicit SafeTensorsFile(const std::string& path);
  SafeTensorsFile(SafeTensorsFile&&) noexcept = default;
  SafeTensorsFile& operator=(SafeTensorsFile&&) noexcept = default;

  const std::string& path() const { return map_.path(); }
  const std::vector<SafeTensorInfo>& tensors() const { return header_.tensors; }
  const std::map<std::string, std::string>& metadata() const { return header_.metadata; }
  // nullptr when absent.
  const SafeTensorInfo* find(std::string_view name) const;
  // Throws naming the file and the tensor when absent.
  const SafeTensorInfo& at(std::string_view name) const;

 private:
  MappedFile map_;
  SafeTensorsHeader header_;
};

// One tensor to write: its bytes come from `fill`, called once with a buffer of exactly
// numel * dtype_size bytes, so a caller can convert or copy lazily without holding a second
// copy of a whole model in memory.
struct SafeTensorsEntry {
  std::string name;
  DType dtype = DType::F32;
  std::vector<int64_t> shape;
  std::function<void(std::span<uint8_t>)> fill;
};

// Writes a valid safetensors file atomically: to `path`.tmp.<pid> first, then rename(2), so a
// crash never leaves a half-written file under the final name. Tensors are laid out by element
// size, largest first, otherwise in the given order, and the header is padded with spaces so
// the data buffer starts 8-byte aligned: every tensor is then aligned to its element size.
void write_safetensors(const std::string& path, const std::vector<SafeTensorsEntry>& entries,
                       const std::map<std::string, std::string>& metadata = {});
// Convenience: tensors already in memory (CPU or CUDA; device tensors are copied to the host).
void write_safetensors(const std::string& path,
                       const std::vector<std::pair<std::string, Tensor>>& tensors,
                       const std::map<std::string, std::string>& metadata = {});

}  // namespace beaver
