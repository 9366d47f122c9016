// Restricted unpickler and torch.save archive loader; see torch_pickle.h.
// Objects live in one vector and refer to each other by index, so memo references and
// self-referencing containers a hostile pickle may build are harmless (no ownership cycles), and
// nothing is recursive: the machine's work and memory are linear in the input length.
#include "csrc/torch_pickle.h"

#include <cstring>
#include <set>
#include <string_view>
#include <unordered_map>

#include "csrc/error.h"
#include "csrc/zip.h"

namespace beaver {

StorageDType storage_dtype(std::string_view t) {
  if (t == "FloatStorage") return {"F32", 4};
  if (t == "HalfStorage") return {"F16", 2};
  if (t == "BFloat16Storage") return {"BF16", 2};
  if (t == "DoubleStorage") return {"F64", 8};
  if (t == "LongStorage") return {"I64", 8};
  if (t == "IntStorage") return {"I32", 4};
  if (t == "ShortStorage") return {"I16", 2};
  if (t == "CharStorage") return {"I8", 1};
  if (t == "ByteStorage") return {"U8", 1};
  if (t == "BoolStorage") return {"BOOL", 1};
  BEAVER_FAIL("unknown torch storage type '", t, "'");
}

namespace {

enum class K : uint8_t { None, Bool, Int, Str, Tuple, List, Dict, Global, Storage, Tensor };

constexpr std::string_view kind_name(K k) {
  switch (k) {
    case K::None: return "None";
    case K::Bool: return "bool";
    case K::Int: return "int";
    case K::Str: return "str";
    case K::Tuple: return "tuple";
    case K::List: return "list";
    case K::Dict: return "dict";
    case K::Global: return "global";
    case K::Storage: return "storage";
    case K::Tensor: return "tensor";
  }
  return "?";
}

struct Obj {
  K kind = K::None;
  int64_t i = 0;                // Int / Bool value; Storage / Tensor: index into their tables
  std::string s;                // Str; Global: "module.name"
  std::vector<uint32_t> items;  // Tuple / List elements; Dict: key, value, key, value, ...
};

struct StorageRec {
  std::string type, key;
  int64_t numel = 0;
};

constexpr std::string_view kAllowedGlobals[] = {
    "collections.OrderedDict",   "torch._utils._rebuild_tensor_v2",
    "torch._utils._rebuild_parameter", "torch.FloatStorage",
    "torch.HalfStorage",         "torch.BFloat16Storage",
    "torch.DoubleStorage",       "torch.LongStorage",
    "torch.IntStorage",          "torch.ShortStorage",
    "torch.CharStorage",         "torch.ByteStorage",
    "torch.BoolStorage",
};

class Unpickler {
 public:
  Unpickler(const uint8_t* data, size_t size, const std::string& label)
      : p_(data), n_(size), label_(label) {}

  std::vector<PickledTensor> run() {
    while (true) {
      BEAVER_CHECK(pos_ < n_, label_, ": pickle ends at byte ", n_, " without a STOP opcode");
      op_pos_ = pos_;
      op_ = p_[pos_++];
      if (op_ == '.') break;
      step();
    }
    const uint32_t root = pop();
    const Obj& d = heap_[root];
    if (d.kind != K::Dict)
      fail(cat("the pickle holds a ", kind_name(d.kind), ", not a state dict"));
    std::vector<PickledTensor> out;
    std::set<std::string> names;
    for (size_t j = 0; j + 1 < d.items.size(); j += 2) {
      const Obj& k = heap_[d.items[j]];
      const Obj& v = heap_[d.items[j + 1]];
      if (k.kind != K::Str) fail(cat("state dict key is a ", kind_name(k.kind), ", not a string"));
      if (v.kind != K::Tensor)
        fail(cat("state dict entry '", k.s, "' is a ", kind_name(v.kind), ", not a tensor"));
      if (!names.insert(k.s).second) fail(cat("duplicate state dict entry '", k.s, "'"));
      PickledTensor t = tensors_[size_t(v.i)];
      t.name = k.s;
      out.push_back(std::move(t));
    }
    return out;
  }

 private:
  [[noreturn]] void fail(const std::string& msg) const {
    const char c = char(op_);
    BEAVER_FAIL(label_, ": pickle opcode 0x", hex(op_),
                (c >= 0x20 && c < 0x7f) ? cat(" '", c, "'") : std::string(), " at byte ",
                op_pos_, ": ", msg);
  }
  static std::string hex(uint8_t b) {
    const char* d = "0123456789abcdef";
    return {d[b >> 4], d[b & 15]};
  }

  const uint8_t* take(uint64_t count) {
    if (count > n_ - pos_) fail(cat("truncated: needs ", count, " more bytes, ", n_ - pos_, " left"));
    const uint8_t* r = p_ + pos_;
    pos_ += size_t(count);
    return r;
  }
  uint64_t uint_le(int bytes) {
    const uint8_t* b = take(uint64_t(bytes));
    uint64_t v = 0;
    for (int i = bytes - 1; i >= 0; --i) v = (v << 8) | b[i];
    return v;
  }
  std::string line() {
    const size_t start = pos_;
    while (pos_ < n_ && p_[pos_] != '\n') ++pos_;
    if (pos_ >= n_) fail("truncated: unterminated GLOBAL line");
    std::string s(reinterpret_cast<const char*>(p_ + start), pos_ - start);
    ++pos_;
    return s;
  }

  uint32_t push_new(Obj o) {
    heap_.push_back(std::move(o));
    stack_.push_back(uint32_t(heap_.size() - 1));
    return stack_.back();
  }
  uint32_t pop() {
    if (stack_.size() <= (marks_.empty() ? 0 : marks_.back())) fail("stack underflow");
    const uint32_t v = stack_.back();
    stack_.pop_back();
    return v;
  }
  uint32_t top() {
    if (stack_.size() <= (marks_.empty() ? 0 : marks_.back())) fail("stack underflow");
    return stack_.back();
  }
  std::vector<uint32_t> pop_to_mark() {
    if (marks_.empty()) fail("no MARK on the stack");
    const size_t m = marks_.back();
    marks_.pop_back();
    std::vector<uint32_t> items(stack_.begin() + std::ptrdiff_t(m), stack_.end());
    stack_.resize(m);
    return items;
  }
  Obj& expect(uint32_t idx, K kind, std::string_view what) {
    Obj& o = heap_[idx];
    if (o.kind != kind)
      fail(cat(what, " must be a ", kind_name(kind), ", got a ", kind_name(o.kind)));
    return o;
  }
  void memo_put(uint64_t key) { memo_[key] = top(); }
  void memo_get(uint64_t key) {
    const auto it = memo_.find(key);
    if (it == memo_.end()) fail(cat("memo entry ", key, " was never stored"));
    stack_.push_back(it->second);
  }
  void push_tuple(std::vector<uint32_t> items) {
    Obj o;
    o.kind = K::Tuple;
    o.items = std::move(items);
    push_new(std::move(o));
  }
  void push_global(const std::string& module, const std::string& name) {
    const std::string full = module + "." + name;
    bool ok = false;
    for (auto g : kAllowedGlobals) ok = ok || g == full;
    if (!ok)
      fail(cat("global '", full,
               "' is not allowed (a state dict needs only collections.OrderedDict, "
               "torch._utils._rebuild_tensor_v2/_rebuild_parameter and torch.*Storage)"));
    Obj o;
    o.kind = K::Global;
    o.s = full;
    push_new(std::move(o));
  }
  int64_t as_int(uint32_t idx, std::string_view what) { return expect(idx, K::Int, what).i; }

  void reduce() {
    const uint32_t args_idx = pop();
    const uint32_t fn_idx = pop();
    const std::vector<uint32_t> args = expect(args_idx, K::Tuple, "REDUCE arguments").items;
    const std::string fn = expect(fn_idx, K::Global, "REDUCE callable").s;
    if (fn == "collections.OrderedDict") {
      if (!args.empty()) fail("collections.OrderedDict called with arguments");
      Obj o;
      o.kind = K::Dict;
      push_new(std::move(o));
    } else if (fn == "torch._utils._rebuild_tensor_v2") {
      // (storage, storage_offset, size, stride, requires_grad, backward_hooks[, metadata])
      if (args.size() != 6 && args.size() != 7)
        fail(cat("_rebuild_tensor_v2 takes 6 or 7 arguments, got ", args.size()));
      const Obj& st = expect(args[0], K::Storage, "_rebuild_tensor_v2 storage");
      const StorageRec& rec = storages_[size_t(st.i)];
      PickledTensor t;
      t.storage_key = rec.key;
      t.storage_type = rec.type;
      t.storage_numel = rec.numel;
      t.storage_offset = as_int(args[1], "_rebuild_tensor_v2 storage_offset");
      const auto& size = expect(args[2], K::Tuple, "_rebuild_tensor_v2 size").items;
      const auto& stride = expect(args[3], K::Tuple, "_rebuild_tensor_v2 stride").items;
      if (size.size() != stride.size())
        fail(cat("size has ", size.size(), " dimensions but stride has ", stride.size()));
      for (uint32_t s : size) t.size.push_back(as_int(s, "tensor size entry"));
      for (uint32_t s : stride) t.stride.push_back(as_int(s, "tensor stride entry"));
      expect(args[4], K::Bool, "_rebuild_tensor_v2 requires_grad");
      if (heap_[args[5]].kind != K::Dict) fail("_rebuild_tensor_v2 backward_hooks must be a dict");
      if (!heap_[args[5]].items.empty()) fail("tensor with backward hooks");
      check_tensor(t);
      Obj o;
      o.kind = K::Tensor;
      o.i = int64_t(tensors_.size());
      tensors_.push_back(std::move(t));
      push_new(std::move(o));
    } else if (fn == "torch._utils._rebuild_parameter") {
      // (data, requires_grad, backward_hooks): the parameter is its data tensor.
      if (args.size() != 3) fail(cat("_rebuild_parameter takes 3 arguments, got ", args.size()));
      expect(args[0], K::Tensor, "_rebuild_parameter data");
      stack_.push_back(args[0]);
    } else {
      fail(cat("'", fn, "' cannot be called"));
    }
  }

  // Sizes non-negative, strides row-major (dimensions of size 1 may have any stride, as torch
  // leaves them), and [offset, offset + numel) inside the storage, without overflow.
  void check_tensor(const PickledTensor& t) {
    if (t.storage_offset < 0) fail(cat("negative storage offset ", t.storage_offset));
    uint64_t numel = 1;
    for (size_t d = 0; d < t.size.size(); ++d) {
      if (t.size[d] < 0) fail(cat("negative size ", t.size[d], " in dimension ", d));
      if (__builtin_mul_overflow(numel, uint64_t(t.size[d]), &numel) || numel > uint64_t(INT64_MAX))
        fail("tensor size overflows");
    }
    int64_t expected = 1;  // numel fits in int64, so no partial product overflows
    for (size_t d = t.size.size(); numel > 0 && d-- > 0;) {
      if (t.size[d] != 1 && t.stride[d] != expected)
        fail(cat("non-contiguous tensor (dimension ", d, " has stride ", t.stride[d],
                 ", row-major needs ", expected, "); save it with .contiguous()"));
      expected *= t.size[d];
    }
    uint64_t end = 0;
    if (__builtin_add_overflow(uint64_t(t.storage_offset), numel, &end) ||
        end > uint64_t(t.storage_numel))
      fail(cat("tensor elements [", t.storage_offset, ", +", numel, ") exceed storage '",
               t.storage_key, "' of ", t.storage_numel, " elements"));
  }

  void persistent_id() {
    const uint32_t pid = pop();
    const auto& f = expect(pid, K::Tuple, "persistent id").items;
    if (f.size() != 5) fail(cat("persistent id has ", f.size(), " fields, expected 5"));
    if (heap_[f[0]].kind != K::Str || heap_[f[0]].s != "storage")
      fail("persistent id is not a ('storage', ...) tuple");
    const std::string& cls = expect(f[1], K::Global, "storage type").s;
    StorageRec rec;
    rec.type = cls.substr(cls.rfind('.') + 1);
    if (cls.rfind("torch.", 0) != 0 || rec.type.find("Storage") == std::string::npos)
      fail(cat("'", cls, "' is not a storage type"));
    rec.key = expect(f[2], K::Str, "storage key").s;
    expect(f[3], K::Str, "storage location");
    rec.numel = as_int(f[4], "storage size");
    if (rec.numel < 0) fail(cat("negative storage size ", rec.numel));
    if (rec.key.empty() || rec.key.find('/') != std::string::npos || rec.key == "." ||
        rec.key == "..")
      fail(cat("invalid storage key '", rec.key, "'"));
    Obj o;
    o.kind = K::Storage;
    o.i = int64_t(storages_.size());
    storages_.push_back(std::move(rec));
    push_new(std::move(o));
  }

  void step() {
    switch (op_) {
      case 0x80: {  // PROTO
        const uint64_t v = uint_le(1);
        if (v < 2 || v > 5) fail(cat("pickle protocol ", v, " is not supported (2 to 5)"));
        break;
      }
      case 0x95: uint_le(8); break;  // FRAME: a length hint only
      case '(': marks_.push_back(stack_.size()); break;
      case '}': case ']': {
        Obj o;
        o.kind = op_ == '}' ? K::Dict : K::List;
        push_new(std::move(o));
        break;
      }
      case ')': push_tuple({}); break;
      case 't': push_tuple(pop_to_mark()); break;
      case 0x85: case 0x86: case 0x87: {  // TUPLE1..3
        const size_t k = size_t(op_ - 0x84);
        std::vector<uint32_t> items(k);
        for (size_t j = k; j-- > 0;) items[j] = pop();
        push_tuple(std::move(items));
        break;
      }
      case 'a': {  // APPEND
        const uint32_t v = pop();
        expect(top(), K::List, "APPEND target").items.push_back(v);
        break;
      }
      case 'e': {  // APPENDS
        const auto items = pop_to_mark();
        auto& l = expect(top(), K::List, "APPENDS target").items;
        l.insert(l.end(), items.begin(), items.end());
        break;
      }
      case 's': {  // SETITEM
        const uint32_t v = pop();
        const uint32_t k = pop();
        auto& d = expect(top(), K::Dict, "SETITEM target").items;
        d.push_back(k);
        d.push_back(v);
        break;
      }
      case 'u': {  // SETITEMS
        const auto items = pop_to_mark();
        if (items.size() % 2 != 0) fail("SETITEMS with an odd number of items");
        auto& d = expect(top(), K::Dict, "SETITEMS target").items;
        d.insert(d.end(), items.begin(), items.end());
        break;
      }
      case 'X': case 0x8c: case 0x8d: {  // BINUNICODE, SHORT_BINUNICODE, BINUNICODE8
        const uint64_t len = uint_le(op_ == 'X' ? 4 : op_ == 0x8c ? 1 : 8);
        const uint8_t* b = take(len);
        Obj o;
        o.kind = K::Str;
        o.s.assign(reinterpret_cast<const char*>(b), size_t(len));
        push_new(std::move(o));
        break;
      }
      case 'J': case 'K': case 'M': case 0x8a: {  // BININT, BININT1, BININT2, LONG1
        int64_t v = 0;
        if (op_ == 'J') {
          v = int64_t(int32_t(uint32_t(uint_le(4))));
        } else if (op_ == 'K') {
          v = int64_t(uint_le(1));
        } else if (op_ == 'M') {
          v = int64_t(uint_le(2));
        } else {
          const uint64_t nb = uint_le(1);
          if (nb > 8) fail(cat("LONG1 integer of ", nb, " bytes does not fit in 64 bits"));
          const uint64_t u = nb == 0 ? 0 : uint_le(int(nb));
          // Sign-extend the two's-complement value from nb bytes.
          v = (nb == 0 || nb == 8) ? int64_t(u)
                                   : int64_t(u << (64 - 8 * nb)) >> (64 - 8 * nb);
        }
        Obj o;
        o.kind = K::Int;
        o.i = v;
        push_new(std::move(o));
        break;
      }
      case 'q': memo_put(uint_le(1)); break;      // BINPUT
      case 'r': memo_put(uint_le(4)); break;      // LONG_BINPUT
      case 0x94: memo_put(memo_.size()); break;   // MEMOIZE
      case 'h': memo_get(uint_le(1)); break;      // BINGET
      case 'j': memo_get(uint_le(4)); break;      // LONG_BINGET
      case 'N': push_new(Obj{}); break;           // NONE
      case 0x88: case 0x89: {                     // NEWTRUE, NEWFALSE
        Obj o;
        o.kind = K::Bool;
        o.i = op_ == 0x88;
        push_new(std::move(o));
        break;
      }
      case 'c': {  // GLOBAL
        std::string module = line();
        std::string name = line();
        push_global(module, name);
        break;
      }
      case 0x93: {  // STACK_GLOBAL
        const uint32_t name = pop();
        const uint32_t module = pop();
        push_global(expect(module, K::Str, "STACK_GLOBAL module").s,
                    expect(name, K::Str, "STACK_GLOBAL name").s);
        break;
      }
      case 'R': reduce(); break;
      case 'b': {  // BUILD: only OrderedDict state (torch's _metadata attribute), ignored
        const uint32_t state = pop();
        expect(top(), K::Dict, "BUILD target");
        expect(state, K::Dict, "BUILD state");
        break;
      }
      case 'Q': persistent_id(); break;  // BINPERSID
      default: fail("opcode not allowed in a state dict");
    }
  }

  const uint8_t* p_;
  size_t n_;
  const std::string& label_;
  size_t pos_ = 0, op_pos_ = 0;
  uint8_t op_ = 0;
  std::vector<Obj> heap_;
  std::vector<uint32_t> stack_;
  std::vector<size_t> marks_;
  std::unordered_map<uint64_t, uint32_t> memo_;
  std::vector<StorageRec> storages_;
  std::vector<PickledTensor> tensors_;
};

}  // namespace

std::vector<PickledTensor> unpickle_state_dict(const uint8_t* data, size_t size,
                                               const std::string& label) {
  return Unpickler(data, size, label).run();
}

std::vector<SafeTensorInfo> parse_torch_zip(const uint8_t* data, size_t size,
                                            const std::string& label) {
  const ZipReader zip(data, size, label);
  const ZipEntry* pkl = nullptr;
  std::string top;
  for (const auto& e : zip.entries()) {
    const size_t slash = e.name.find('/');
    if (slash != std::string::npos && slash > 0 && e.name.substr(slash) == "/data.pkl") {
      BEAVER_CHECK(pkl == nullptr, label, ": archive holds two data.pkl files ('", pkl->name,
                   "' and '", e.name, "')");
      pkl = &e;
      top = e.name.substr(0, slash);
    }
  }
  BEAVER_CHECK(pkl != nullptr, label,
               ": zip archive has no <folder>/data.pkl (not a torch.save checkpoint)");
  if (const ZipEntry* bo = zip.find(top + "/byteorder")) {
    const std::string_view order(reinterpret_cast<const char*>(bo->data), size_t(bo->size));
    BEAVER_CHECK(order == "little", label, ": byteorder '", order,
                 "' is not supported (little-endian only)");
  }
  const auto pickled = unpickle_state_dict(pkl->data, size_t(pkl->size), label + ":" + pkl->name);
  std::vector<SafeTensorInfo> out;
  for (const auto& t : pickled) {
    if (t.name.ends_with("rotary_emb.inv_freq")) continue;  // recomputed from the config
    const std::string where = cat(label, ": tensor '", t.name, "'");
    const StorageDType sd = storage_dtype(t.storage_type);
    const std::string entry_name = top + "/data/" + t.storage_key;
    const ZipEntry* e = zip.find(entry_name);
    BEAVER_CHECK(e != nullptr, where, ": storage entry '", entry_name, "' is missing");
    uint64_t storage_bytes = 0;
    BEAVER_CHECK(!__builtin_mul_overflow(uint64_t(t.storage_numel), uint64_t(sd.size),
                                         &storage_bytes) &&
                     storage_bytes == e->size,
                 where, ": storage '", t.storage_key, "' should hold ", t.storage_numel, " x ",
                 sd.size, " bytes but the entry has ", e->size);
    SafeTensorInfo info;
    info.name = t.name;
    info.dtype_name = std::string(sd.dtype_name);
    info.dtype = safetensors_to_dtype(sd.dtype_name);
    info.shape = t.size;
    int64_t numel = 1;
    for (int64_t d : t.size) numel *= d;  // bounded by the storage (checked when unpickled)
    info.begin = uint64_t(t.storage_offset) * sd.size;
    info.end = info.begin + uint64_t(numel) * sd.size;
    info.data = e->data + info.begin;
    out.push_back(std::move(info));
  }
  return out;
}

TorchBinFile::TorchBinFile(const std::string& path) : map_(path) {
  tensors_ = parse_torch_zip(map_.data(), map_.size(), path);
}

}  // namespace beaver
