// Zip central-directory reader for torch.save archives; see zip.h. Every field read goes
// through a bounds-checked cursor, so a hostile archive can only produce an error.
#include "csrc/zip.h"

#include <set>

#include "csrc/error.h"

namespace beaver {
namespace {

constexpr uint32_t kEocdSig = 0x06054b50;
constexpr uint32_t kZip64EocdSig = 0x06064b50;
constexpr uint32_t kZip64LocatorSig = 0x07064b50;
constexpr uint32_t kCentralSig = 0x02014b50;
constexpr uint32_t kLocalSig = 0x04034b50;

uint64_t le(const uint8_t* p, int n) {
  uint64_t v = 0;
  for (int i = n - 1; i >= 0; --i) v = (v << 8) | p[i];
  return v;
}

}  // namespace

ZipReader::ZipReader(const uint8_t* data, size_t size, std::string label)
    : label_(std::move(label)) {
  const std::string& L = label_;
  BEAVER_CHECK(size >= 22, L, ": not a zip archive (", size, " bytes, too short)");
  // The end-of-central-directory record is the last 22 bytes plus a comment of up to 64 KiB.
  size_t eocd = size_t(-1);
  const size_t lowest = size > 22 + 65535 ? size - 22 - 65535 : 0;
  for (size_t p = size - 22 + 1; p-- > lowest;) {
    if (le(data + p, 4) == kEocdSig && p + 22 + le(data + p + 20, 2) <= size) {
      eocd = p;
      break;
    }
  }
  BEAVER_CHECK(eocd != size_t(-1), L,
               ": not a zip archive (no end-of-central-directory record); legacy (pre-1.6) "
               "torch.save files are not supported");
  const uint64_t disk = le(data + eocd + 4, 2), cd_disk = le(data + eocd + 6, 2);
  uint64_t count = le(data + eocd + 10, 2);
  uint64_t cd_size = le(data + eocd + 12, 4);
  uint64_t cd_offset = le(data + eocd + 16, 4);
  uint64_t cd_limit = eocd;  // the central directory ends before the record that describes it
  // ZIP64: a locator right before the record points at the 64-bit end of central directory.
  if (eocd >= 20 && le(data + eocd - 20, 4) == kZip64LocatorSig) {
    const uint64_t z = le(data + eocd - 20 + 8, 8);
    BEAVER_CHECK(z <= eocd - 20 && eocd - 20 - z >= 56 && le(data + z, 4) == kZip64EocdSig, L,
                 ": ZIP64 end-of-central-directory offset ", z, " is invalid");
    BEAVER_CHECK(le(data + z + 16, 4) == 0 && le(data + z + 20, 4) == 0, L,
                 ": multi-disk zip archives are not supported");
    count = le(data + z + 32, 8);
    cd_size = le(data + z + 40, 8);
    cd_offset = le(data + z + 48, 8);
    cd_limit = z;
  } else {
    BEAVER_CHECK(count != 0xffff && cd_size != 0xffffffffu && cd_offset != 0xffffffffu, L,
                 ": ZIP64 archive without a ZIP64 end-of-central-directory locator");
    BEAVER_CHECK(disk == 0 && cd_disk == 0, L, ": multi-disk zip archives are not supported");
  }
  BEAVER_CHECK(cd_offset <= cd_limit && cd_size <= cd_limit - cd_offset, L,
               ": central directory [", cd_offset, ", +", cd_size, ") lies outside the archive");
  BEAVER_CHECK(count <= cd_size / 46, L, ": central directory claims ", count,
               " entries but holds only ", cd_size, " bytes");

  std::set<std::string> names;
  entries_.reserve(size_t(count));
  const uint8_t* cd = data + cd_offset;
  uint64_t pos = 0;
  for (uint64_t i = 0; i < count; ++i) {
    BEAVER_CHECK(cd_size - pos >= 46 && le(cd + pos, 4) == kCentralSig, L,
                 ": central directory entry ", i, " at offset ", cd_offset + pos, " is corrupt");
    const uint8_t* h = cd + pos;
    const uint64_t flags = le(h + 8, 2), method = le(h + 10, 2);
    uint64_t csize = le(h + 20, 4), usize = le(h + 24, 4);
    const uint64_t nlen = le(h + 28, 2), xlen = le(h + 30, 2), clen = le(h + 32, 2);
    uint64_t edisk = le(h + 34, 2), local = le(h + 42, 4);
    BEAVER_CHECK(cd_size - pos - 46 >= nlen + xlen + clen, L, ": central directory entry ", i,
                 " runs past the end of the central directory");
    ZipEntry e;
    e.name.assign(reinterpret_cast<const char*>(h + 46), size_t(nlen));
    const std::string where = cat(L, ": zip entry '", e.name, "'");
    // ZIP64 extra field: 64-bit values for exactly the fields saturated in the fixed header.
    const uint8_t* x = h + 46 + nlen;
    for (uint64_t xp = 0; xp + 4 <= xlen;) {
      const uint64_t id = le(x + xp, 2), len = le(x + xp + 2, 2);
      BEAVER_CHECK(xp + 4 + len <= xlen, where, ": extra field runs past its end");
      if (id == 0x0001) {
        const uint8_t* f = x + xp + 4;
        uint64_t fp = 0;
        auto take = [&](uint64_t& v, int n) {
          BEAVER_CHECK(fp + uint64_t(n) <= len, where, ": ZIP64 extra field too short");
          v = le(f + fp, n);
          fp += uint64_t(n);
        };
        if (usize == 0xffffffffu) take(usize, 8);
        if (csize == 0xffffffffu) take(csize, 8);
        if (local == 0xffffffffu) take(local, 8);
        if (edisk == 0xffff) take(edisk, 4);
      }
      xp += 4 + len;
    }
    pos += 46 + nlen + xlen + clen;
    BEAVER_CHECK(!(flags & 1u), where, ": encrypted entries are not supported");
    BEAVER_CHECK(method == 0, where, ": compressed entry (method ", method,
                 "); only stored (uncompressed) entries are supported, as torch.save writes");
    BEAVER_CHECK(csize == usize, where, ": stored entry with compressed size ", csize,
                 " != uncompressed size ", usize);
    BEAVER_CHECK(edisk == 0, where, ": multi-disk zip archives are not supported");
    BEAVER_CHECK(local <= size && size - local >= 30 && le(data + local, 4) == kLocalSig, where,
                 ": local header offset ", local, " is invalid");
    const uint64_t lnlen = le(data + local + 26, 2), lxlen = le(data + local + 28, 2);
    const uint64_t start = local + 30 + lnlen + lxlen;
    BEAVER_CHECK(start <= size && usize <= size - start, where, ": data [", start, ", +", usize,
                 ") lies outside the archive (", size, " bytes)");
    e.data = data + start;
    e.size = usize;
    BEAVER_CHECK(names.insert(e.name).second, where, ": duplicate entry");
    entries_.push_back(std::move(e));
  }
}

const ZipEntry* ZipReader::find(std::string_view name) const {
  for (const auto& e : entries_)
    if (e.name == name) return &e;
  return nullptr;
}

}  // namespace beaver
