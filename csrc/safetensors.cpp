// safetensors reader (mmap + full validation) and atomic writer; see safetensors.h.
// The header is parsed with a callback that tracks the keys of every open object, because a
// plain JSON parse silently keeps the last of two duplicate names, and that bounds nesting so a
// hostile header cannot make the parser recurse deeply.
#include "csrc/safetensors.h"

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <nlohmann/json.hpp>
#include <set>

#include "csrc/atomic_file.h"
#include "csrc/error.h"

namespace beaver {

// ---- MappedFile ------------------------------------------------------------------------------
MappedFile::MappedFile(const std::string& path) : path_(path) {
  errno = 0;
  const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) BEAVER_IO_FAIL(path, "cannot open file");
  struct stat st {};
  if (::fstat(fd, &st) != 0) {
    ::close(fd);
    BEAVER_IO_FAIL(path, "cannot stat file");
  }
  if (!S_ISREG(st.st_mode)) {
    ::close(fd);
    errno = 0;
    BEAVER_IO_FAIL(path, "not a regular file");
  }
  size_ = size_t(st.st_size);
  if (size_ > 0) {
    void* p = ::mmap(nullptr, size_, PROT_READ, MAP_PRIVATE, fd, 0);
    if (p == MAP_FAILED) {
      const int err = errno;
      ::close(fd);
      errno = err;
      BEAVER_IO_FAIL(path, "cannot map ", size_, " bytes");
    }
    data_ = static_cast<const uint8_t*>(p);
  }
  ::close(fd);  // the mapping keeps the file alive
}

MappedFile::~MappedFile() { release(); }

void MappedFile::release() noexcept {
  if (data_) ::munmap(const_cast<uint8_t*>(data_), size_);
  data_ = nullptr;
  size_ = 0;
}

MappedFile::MappedFile(MappedFile&& o) noexcept
    : data_(std::exchange(o.data_, nullptr)), size_(std::exchange(o.size_, 0)),
      path_(std::move(o.path_)) {}

MappedFile& MappedFile::operator=(MappedFile&& o) noexcept {
  if (this != &o) {
    release();
    data_ = std::exchange(o.data_, nullptr);
    size_ = std::exchange(o.size_, 0);
    path_ = std::move(o.path_);
  }
  return *this;
}

// ---- dtypes ----------------------------------------------------------------------------------
namespace {
struct StDType {
  std::string_view name;
  size_t size;
};
constexpr StDType kStDTypes[] = {
    {"F64", 8}, {"F32", 4},  {"F16", 2},  {"BF16", 2}, {"I64", 8},     {"I32", 4},
    {"I16", 2}, {"I8", 1},   {"U8", 1},   {"BOOL", 1}, {"F8_E4M3", 1}, {"F8_E5M2", 1},
};
}  // namespace

size_t safetensors_dtype_size(std::string_view name) {
  for (const auto& d : kStDTypes)
    if (d.name == name) return d.size;
  return 0;
}

std::optional<DType> safetensors_to_dtype(std::string_view name) {
  if (name == "F32") return DType::F32;
  if (name == "BF16") return DType::BF16;
  if (name == "F16") return DType::F16;
  if (name == "I32") return DType::I32;
  if (name == "I64") return DType::I64;
  if (name == "U8") return DType::U8;
  return std::nullopt;
}

std::string_view dtype_to_safetensors(DType t) {
  switch (t) {
    case DType::F32: return "F32";
    case DType::BF16: return "BF16";
    case DType::F16: return "F16";
    case DType::I32: return "I32";
    case DType::I64: return "I64";
    case DType::U8: return "U8";
  }
  BEAVER_FAIL("dtype_to_safetensors: unknown dtype ", int(t));
}

// ---- SafeTensorInfo --------------------------------------------------------------------------
int64_t SafeTensorInfo::numel() const {
  int64_t n = 1;
  for (int64_t d : shape) n *= d;  // validated against the byte range when parsed
  return n;
}

Tensor SafeTensorInfo::tensor() const {
  BEAVER_CHECK(dtype.has_value(), "tensor '", name, "' has dtype ", dtype_name,
               ", which Beaver cannot compute with");
  BEAVER_CHECK(shape.size() <= size_t(kMaxDims), "tensor '", name, "' has rank ", shape.size(),
               ", more than the ", kMaxDims, " Beaver supports");
  // Typed access to a misaligned element is undefined behaviour; writers that follow the format
  // never produce one, so refuse rather than hand out such a view.
  BEAVER_CHECK(reinterpret_cast<uintptr_t>(data) % dtype_size(*dtype) == 0, "tensor '", name,
               "' starts at a byte offset that is not a multiple of its ", dtype_size(*dtype),
               "-byte element size");
  return Tensor(const_cast<uint8_t*>(data), *dtype, Shape(shape), Device::CPU);
}

// ---- parsing ---------------------------------------------------------------------------------
namespace {

using json = nlohmann::json;

// Thrown from inside the parser callback; rethrown as beaver::Error with the label.
struct HeaderReject {
  std::string what;
};

uint64_t read_u64_le(const uint8_t* p) {
  uint64_t v = 0;
  for (int i = 7; i >= 0; --i) v = (v << 8) | p[i];
  return v;
}

}  // namespace

SafeTensorsHeader parse_safetensors(const uint8_t* data, size_t size, const std::string& label) {
  SafeTensorsHeader out;
  BEAVER_CHECK(size >= 8, label, ": safetensors file is truncated (", size,
               " bytes, fewer than the 8-byte header length)");
  const uint64_t n = read_u64_le(data);
  BEAVER_CHECK(n <= kSafeTensorsMaxHeader, label, ": safetensors header length ", n,
               " exceeds the limit of ", kSafeTensorsMaxHeader, " bytes");
  BEAVER_CHECK(n <= size - 8, label, ": safetensors header length ", n,
               " runs past the end of the file (", size, " bytes)");
  BEAVER_CHECK(n >= 1 && data[8] == '{', label,
               ": safetensors header does not start with '{' (not a safetensors file?)");
  out.header_size = n;
  const char* hbegin = reinterpret_cast<const char*>(data + 8);
  const uint8_t* buffer = data + 8 + n;
  const uint64_t buffer_size = size - 8 - n;

  // Keys seen in each open object, to catch duplicates; nesting beyond 3 levels is never valid.
  std::vector<std::set<std::string>> open_keys;
  json::parser_callback_t cb = [&](int depth, json::parse_event_t ev, json& parsed) {
    switch (ev) {
      case json::parse_event_t::object_start:
      case json::parse_event_t::array_start:
        if (depth > 3) throw HeaderReject{"header nests deeper than a safetensors header can"};
        if (ev == json::parse_event_t::object_start) open_keys.emplace_back();
        break;
      case json::parse_event_t::object_end:
        if (!open_keys.empty()) open_keys.pop_back();
        break;
      case json::parse_event_t::key: {
        const std::string& k = parsed.get_ref<const std::string&>();
        if (!open_keys.empty() && !open_keys.back().insert(k).second)
          throw HeaderReject{cat("duplicate name '", k, "' in header")};
        break;
      }
      default: break;
    }
    return true;
  };
  json h;
  try {
    h = json::parse(hbegin, hbegin + n, cb);
  } catch (const HeaderReject& e) {
    BEAVER_FAIL(label, ": safetensors ", e.what);
  } catch (const json::exception& e) {
    BEAVER_FAIL(label, ": safetensors header is not valid JSON: ", e.what());
  }
  BEAVER_CHECK(h.is_object(), label, ": safetensors header is not a JSON object");

  for (auto it = h.begin(); it != h.end(); ++it) {
    const std::string& name = it.key();
    const json& v = it.value();
    if (name == "__metadata__") {
      BEAVER_CHECK(v.is_object(), label, ": __metadata__ is not an object");
      for (auto m = v.begin(); m != v.end(); ++m) {
        BEAVER_CHECK(m.value().is_string(), label, ": __metadata__ value '", m.key(),
                     "' is not a string (", m.value().type_name(), ")");
        out.metadata[m.key()] = m.value().get<std::string>();
      }
      continue;
    }
    const std::string where = cat(label, ": tensor '", name, "'");
    BEAVER_CHECK(v.is_object(), where, ": entry is not an object");
    for (auto k = v.begin(); k != v.end(); ++k)
      BEAVER_CHECK(k.key() == "dtype" || k.key() == "shape" || k.key() == "data_offsets", where,
                   ": unexpected field '", k.key(), "'");
    BEAVER_CHECK(v.contains("dtype") && v["dtype"].is_string(), where,
                 ": missing or non-string 'dtype'");
    BEAVER_CHECK(v.contains("shape") && v["shape"].is_array(), where,
                 ": missing or non-array 'shape'");
    BEAVER_CHECK(v.contains("data_offsets") && v["data_offsets"].is_array() &&
                     v["data_offsets"].size() == 2,
                 where, ": 'data_offsets' must be an array [begin, end]");
    SafeTensorInfo t;
    t.name = name;
    t.dtype_name = v["dtype"].get<std::string>();
    const size_t esize = safetensors_dtype_size(t.dtype_name);
    BEAVER_CHECK(esize != 0, where, ": unknown dtype '", t.dtype_name,
                 "' (expected F64 F32 F16 BF16 I64 I32 I16 I8 U8 BOOL F8_E4M3 F8_E5M2)");
    t.dtype = safetensors_to_dtype(t.dtype_name);
    uint64_t numel = 1;
    bool overflow = false;
    for (const json& d : v["shape"]) {
      BEAVER_CHECK(d.is_number_integer(), where, ": shape entry ", d.dump(),
                   " is not an integer");
      BEAVER_CHECK(d.is_number_unsigned() && d.get<uint64_t>() <= uint64_t(INT64_MAX), where,
                   ": shape entry ", d.dump(), " is negative or too large");
      const uint64_t dim = d.get<uint64_t>();
      overflow = overflow || __builtin_mul_overflow(numel, dim, &numel);
      t.shape.push_back(int64_t(dim));
    }
    uint64_t nbytes = 0;
    overflow = overflow || __builtin_mul_overflow(numel, uint64_t(esize), &nbytes) ||
               numel > uint64_t(INT64_MAX);
    const json& b = v["data_offsets"][0];
    const json& e = v["data_offsets"][1];
    BEAVER_CHECK(b.is_number_unsigned() && e.is_number_unsigned(), where,
                 ": data_offsets ", v["data_offsets"].dump(),
                 " must be non-negative integers");
    t.begin = b.get<uint64_t>();
    t.end = e.get<uint64_t>();
    BEAVER_CHECK(t.begin <= t.end, where, ": data_offsets [", t.begin, ", ", t.end,
                 ") end before begin");
    BEAVER_CHECK(t.end <= buffer_size, where, ": data_offsets [", t.begin, ", ", t.end,
                 ") out of range: the data buffer holds ", buffer_size, " bytes");
    BEAVER_CHECK(!overflow && nbytes == t.end - t.begin, where, ": shape ",
                 v["shape"].dump(), " x ", t.dtype_name, " (", esize, " bytes) needs ",
                 overflow ? std::string("more than 2^64") : cat(nbytes), " bytes but data_offsets [",
                 t.begin, ", ", t.end, ") span ", t.end - t.begin);
    t.data = buffer + t.begin;
    out.tensors.push_back(std::move(t));
  }

  // Coverage: sorted by offsets, each tensor must start exactly where the previous one ended.
  std::sort(out.tensors.begin(), out.tensors.end(),
            [](const SafeTensorInfo& a, const SafeTensorInfo& c) {
              return a.begin != c.begin ? a.begin < c.begin : a.end < c.end;
            });
  uint64_t cursor = 0;
  const SafeTensorInfo* prev = nullptr;
  for (const auto& t : out.tensors) {
    BEAVER_CHECK(t.begin >= cursor, label, ": tensor '", t.name, "' data_offsets [", t.begin, ", ",
                 t.end, ") overlap tensor '", prev ? prev->name : "", "' [", prev ? prev->begin : 0,
                 ", ", cursor, ")");
    BEAVER_CHECK(t.begin == cursor, label, ": hole in the data buffer: bytes [", cursor, ", ",
                 t.begin, ") before tensor '", t.name, "' belong to no tensor");
    cursor = t.end;
    prev = &t;
  }
  BEAVER_CHECK(cursor == buffer_size, label, ": hole in the data buffer: bytes [", cursor, ", ",
               buffer_size, ") at the end belong to no tensor");
  return out;
}

// ---- SafeTensorsFile -------------------------------------------------------------------------
SafeTensorsFile::SafeTensorsFile(const std::string& path) : map_(path) {
  header_ = parse_safetensors(map_.data(), map_.size(), path);
}

const SafeTensorInfo* SafeTensorsFile::find(std::string_view name) const {
  for (const auto& t : header_.tensors)
    if (t.name == name) return &t;
  return nullptr;
}

const SafeTensorInfo& SafeTensorsFile::at(std::string_view name) const {
  const SafeTensorInfo* t = find(name);
  if (!t) BEAVER_FAIL(path(), ": no tensor named '", name, "'");
  return *t;
}

// ---- writer ----------------------------------------------------------------------------------
void write_safetensors(const std::string& path, const std::vector<SafeTensorsEntry>& entries,
                       const std::map<std::string, std::string>& metadata) {
  nlohmann::ordered_json h = nlohmann::ordered_json::object();
  if (!metadata.empty()) {
    nlohmann::ordered_json m = nlohmann::ordered_json::object();
    for (const auto& [k, v] : metadata) m[k] = v;
    h["__metadata__"] = std::move(m);
  }
  // Larger elements first (stable otherwise), as the reference writer does: with the buffer
  // 8-byte aligned, every tensor then starts aligned to its element size.
  std::vector<const SafeTensorsEntry*> order;
  for (const auto& e : entries) order.push_back(&e);
  std::stable_sort(order.begin(), order.end(), [](const auto* a, const auto* b) {
    return dtype_size(a->dtype) > dtype_size(b->dtype);
  });
  std::set<std::string> names;
  std::vector<uint64_t> sizes;
  uint64_t offset = 0;
  for (const SafeTensorsEntry* ep : order) {
    const SafeTensorsEntry& e = *ep;
    BEAVER_CHECK(!e.name.empty() && e.name != "__metadata__", path,
                 ": invalid tensor name '", e.name, "'");
    BEAVER_CHECK(names.insert(e.name).second, path, ": duplicate tensor name '", e.name, "'");
    BEAVER_CHECK(bool(e.fill), path, ": tensor '", e.name, "' has no data source");
    uint64_t numel = 1;
    for (int64_t d : e.shape) {
      BEAVER_CHECK(d >= 0, path, ": tensor '", e.name, "' has a negative dimension");
      numel *= uint64_t(d);
    }
    const uint64_t nbytes = numel * dtype_size(e.dtype);
    sizes.push_back(nbytes);
    h[e.name] = {{"dtype", dtype_to_safetensors(e.dtype)},
                 {"shape", e.shape},
                 {"data_offsets", {offset, offset + nbytes}}};
    offset += nbytes;
  }
  std::string header = h.dump();
  header.append((8 - header.size() % 8) % 8, ' ');  // 8 + N is then a multiple of 8

  AtomicFile f(path);
  uint8_t len[8];
  uint64_t n = header.size();
  for (int i = 0; i < 8; ++i) len[i] = uint8_t(n >> (8 * i));
  f.write(len, 8);
  f.write(header);
  std::vector<uint8_t> buf;
  for (size_t i = 0; i < order.size(); ++i) {
    buf.assign(size_t(sizes[i]), 0);
    order[i]->fill(std::span<uint8_t>(buf));
    f.write(buf.data(), buf.size());
  }
  f.commit();
}

void write_safetensors(const std::string& path,
                       const std::vector<std::pair<std::string, Tensor>>& tensors,
                       const std::map<std::string, std::string>& metadata) {
  std::vector<SafeTensorsEntry> entries;
  entries.reserve(tensors.size());
  for (const auto& [name, t] : tensors) {
    BEAVER_CHECK(t.defined(), path, ": tensor '", name, "' is undefined");
    const Tensor src = t;
    entries.push_back({name, t.dtype, t.shape.vec(), [src](std::span<uint8_t> out) {
                         if (src.device == Device::CPU) {
                           if (!out.empty()) std::memcpy(out.data(), src.data, out.size());
                         } else {
                           copy_tensor(Tensor(out.data(), src.dtype, src.shape, Device::CPU), src);
                         }
                       }});
  }
  write_safetensors(path, entries, metadata);
}

}  // namespace beaver
