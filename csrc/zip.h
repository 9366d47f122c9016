// Read-only view of a zip archive held in memory (normally a MappedFile), enough for the files
// torch.save writes: stored (uncompressed) entries, with ZIP64 extra fields and the ZIP64 end of
// central directory for archives or entries past 4 GiB. Compressed or encrypted entries, split
// archives and out-of-range offsets are refused with an error naming the archive and the entry.
// Entry data is not CRC-checked: the sizes and offsets are, which is what memory safety needs,
// and checksumming tens of gigabytes of weights on every load would cost more than it buys.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

namespace beaver {

struct ZipEntry {
  std::string name;
  const uint8_t* data = nullptr;  // into the archive bytes
  uint64_t size = 0;
};

class ZipReader {
 public:
  // Parses the central directory of bytes [data, data + size); `label` starts every error.
  ZipReader(const uint8_t* data, size_t size, std::string label);
  const std::vector<ZipEntry>& entries() const { return entries_; }
  // nullptr when absent.
  const ZipEntry* find(std::string_view name) const;
  const std::string& label() const { return label_; }

 private:
  std::string label_;
  std::vector<ZipEntry> entries_;
};

}  // namespace beaver
