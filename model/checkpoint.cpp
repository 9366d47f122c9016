// HF and Beaver checkpoint folders; see checkpoint.h. Writers stream one tensor at a time
// (converted into the target dtype as it is written), so converting a 7B model needs the mapped
// source plus one tensor's buffer, not a second copy of the model.
#include "model/checkpoint.h"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <map>
#include <set>

#include "csrc/atomic_file.h"
#include "csrc/error.h"

namespace beaver::model {

namespace fs = std::filesystem;
using json = nlohmann::json;

namespace {

std::string shape_str(const std::vector<int64_t>& s) {
  std::string r = "[";
  for (size_t i = 0; i < s.size(); ++i) r += (i ? ", " : "") + std::to_string(s[i]);
  return r + "]";
}

bool is_float_name(std::string_view n) { return n == "F32" || n == "F16" || n == "BF16"; }

json parse_json_file(const std::string& path) {
  const std::string text = read_text_file(path);
  try {
    return json::parse(text);
  } catch (const json::exception& e) {
    BEAVER_FAIL(path, ": not valid JSON: ", e.what());
  }
}

// A shard file name from an index: a plain file name inside the folder, never a path.
void check_shard_name(const std::string& name, const std::string& index) {
  BEAVER_CHECK(!name.empty() && name.find('/') == std::string::npos &&
                   name.find('\\') == std::string::npos && name != "." && name != "..",
               index, ": shard name '", name, "' is not a plain file name");
}

// Reads an index's weight_map (name → shard) and optional metadata.total_size.
std::map<std::string, std::string> read_index(const std::string& path, int64_t* total_size) {
  const json j = parse_json_file(path);
  BEAVER_CHECK(j.is_object() && j.contains("weight_map") && j["weight_map"].is_object(), path,
               ": index has no 'weight_map' object");
  std::map<std::string, std::string> map;
  for (auto it = j["weight_map"].begin(); it != j["weight_map"].end(); ++it) {
    BEAVER_CHECK(it.value().is_string(), path, ": weight_map entry '", it.key(),
                 "' is not a file name");
    map[it.key()] = it.value().get<std::string>();
    check_shard_name(map[it.key()], path);
  }
  *total_size = -1;
  if (j.contains("metadata") && j["metadata"].is_object() && j["metadata"].contains("total_size")) {
    const json& t = j["metadata"]["total_size"];
    BEAVER_CHECK(t.is_number_integer() && t.get<int64_t>() >= 0, path,
                 ": metadata.total_size is not a non-negative integer: ", t.dump());
    *total_size = t.get<int64_t>();
  }
  return map;
}

// Every index entry present in its shard, and no shard tensor left out of the index.
void check_shard(const std::map<std::string, std::string>& map, const std::string& shard,
                 const std::vector<SafeTensorInfo>& tensors, const std::string& index,
                 bool skip_rotary) {
  std::set<std::string> in_shard;
  for (const auto& t : tensors) {
    in_shard.insert(t.name);
    const auto it = map.find(t.name);
    BEAVER_CHECK(it != map.end(), index, ": shard '", shard, "' holds tensor '", t.name,
                 "' that the index does not list");
    BEAVER_CHECK(it->second == shard, index, ": tensor '", t.name, "' is in shard '", shard,
                 "' but the index places it in '", it->second, "'");
  }
  for (const auto& [name, file] : map) {
    if (file != shard || (skip_rotary && name.ends_with("rotary_emb.inv_freq"))) continue;
    BEAVER_CHECK(in_shard.count(name), index, ": tensor '", name, "' is listed for shard '",
                 shard, "' but missing from it");
  }
}

void refuse_existing_checkpoint(const std::string& dir) {
  for (const char* f : {"beaver.json", "config.json", "model.safetensors",
                        "model.safetensors.index.json", "pytorch_model.bin",
                        "pytorch_model.bin.index.json"})
    BEAVER_CHECK(!fs::exists(fs::path(dir) / f), dir, ": already holds a checkpoint (", f,
                 "); choose an empty or new output folder");
  std::error_code ec;
  fs::create_directories(dir, ec);
  BEAVER_CHECK(!ec && fs::is_directory(dir), dir, ": cannot create folder (", ec.message(), ")");
}

// Checks the sources against the table and returns them in table order.
std::vector<const TensorSource*> ordered_sources(const LlamaConfig& c, ModelKind kind,
                                                 const std::vector<TensorSource>& tensors,
                                                 const std::string& where) {
  std::map<std::string, const TensorSource*> by;
  for (const auto& t : tensors)
    BEAVER_CHECK(by.emplace(t.name, &t).second, where, ": tensor '", t.name, "' given twice");
  std::vector<const TensorSource*> out;
  for (const auto& spec : expected_tensors(c, kind)) {
    const auto it = by.find(spec.name);
    BEAVER_CHECK(it != by.end(), where, ": missing tensor '", spec.name, "' (expected shape ",
                 shape_str(spec.shape), ")");
    BEAVER_CHECK(it->second->shape == spec.shape, where, ": tensor '", spec.name, "' has shape ",
                 shape_str(it->second->shape), " but the config implies ", shape_str(spec.shape));
    out.push_back(it->second);
    by.erase(it);
  }
  BEAVER_CHECK(by.empty(), where, ": unexpected tensor '", by.empty() ? "" : by.begin()->first,
               "' for a ", kind_name(kind), " with this config");
  return out;
}

LlamaConfig with_kind(LlamaConfig c, ModelKind kind) {
  if (kind == ModelKind::ScoreModel && c.kind() != ModelKind::ScoreModel)
    c.architecture = "LlamaModelForScore";
  if (kind == ModelKind::CausalLM) c.architecture = "LlamaForCausalLM";
  return c;
}

// Each entry fills its bytes from the source and, unless allow_nonfinite, refuses them when
// they hold a NaN or an infinity (the writer then drops its temporary file).
std::vector<SafeTensorsEntry> entries_for(const std::vector<const TensorSource*>& src,
                                          DType dtype, const std::string& where,
                                          bool allow_nonfinite) {
  std::vector<SafeTensorsEntry> e;
  for (const TensorSource* s : src)
    e.push_back({s->name, dtype, s->shape,
                 [s, dtype, where, allow_nonfinite](std::span<uint8_t> out) {
                   s->fill(dtype, out);
                   if (allow_nonfinite) return;
                   const NonfiniteCount c = count_nonfinite(dtype, out);
                   BEAVER_CHECK(!c, where, ": tensor '", s->name, "' holds ",
                                describe_nonfinite(c, Tensor()),
                                "; refusing to write a checkpoint with non-finite weights");
                 }});
  return e;
}

}  // namespace

NonfiniteCount count_nonfinite(DType dtype, std::span<const uint8_t> bytes) {
  NonfiniteCount c;
  auto scan = [&](auto word, auto exp_mask) {
    using W = decltype(word);
    const size_t n = bytes.size() / sizeof(W);
    for (size_t i = 0; i < n; ++i) {
      W w;
      std::memcpy(&w, bytes.data() + i * sizeof(W), sizeof(W));
      if ((w & exp_mask) == exp_mask) {
        if (c.count++ == 0) c.first = int64_t(i);
      }
    }
  };
  switch (dtype) {
    case DType::F32: scan(uint32_t{}, uint32_t{0x7f800000u}); break;
    case DType::F16: scan(uint16_t{}, uint16_t{0x7c00u}); break;
    case DType::BF16: scan(uint16_t{}, uint16_t{0x7f80u}); break;
    default: BEAVER_FAIL("count_nonfinite: dtype ", dtype_name(dtype), " is not a float dtype");
  }
  return c;
}

NonfiniteCount count_nonfinite(const SafeTensorInfo& t) {
  BEAVER_CHECK(t.dtype && is_float(*t.dtype), t.name, ": dtype ", t.dtype_name,
               " is not a float dtype");
  return count_nonfinite(*t.dtype, std::span<const uint8_t>(t.data, t.nbytes()));
}

NonfiniteCount count_nonfinite(const Tensor& t) {
  BEAVER_CHECK(is_float(t.dtype), "count_nonfinite: dtype ", dtype_name(t.dtype),
               " is not a float dtype");
  if (t.device == Device::CPU)
    return count_nonfinite(t.dtype, std::span<const uint8_t>(static_cast<const uint8_t*>(t.data),
                                                             t.nbytes()));
  OwnedTensor host(t.dtype, t.shape, Device::CPU);
  copy_tensor(host, t);
  return count_nonfinite(host.view());
}

std::string describe_nonfinite(const NonfiniteCount& c, const Tensor& host) {
  std::string r = cat(c.count, " non-finite value", c.count == 1 ? "" : "s", " (first at element ",
                      c.first);
  if (host.data && host.device == Device::CPU && host.dtype == DType::F32 && c.first >= 0) {
    const float v = static_cast<const float*>(host.data)[c.first];
    r += std::isnan(v) ? ", nan" : (v > 0 ? ", inf" : ", -inf");
  }
  return r + ")";
}

std::string_view torch_dtype_name(DType t) {
  switch (t) {
    case DType::F32: return "float32";
    case DType::BF16: return "bfloat16";
    case DType::F16: return "float16";
    default: BEAVER_FAIL("checkpoints hold float tensors; got dtype ", dtype_name(t));
  }
}

void check_tensor_table(const std::vector<TensorSpec>& expected,
                        const std::vector<SafeTensorInfo>& got, const std::string& where) {
  std::map<std::string, const SafeTensorInfo*> by;
  for (const auto& t : got)
    BEAVER_CHECK(by.emplace(t.name, &t).second, where, ": tensor '", t.name,
                 "' appears twice");
  for (const auto& spec : expected) {
    const auto it = by.find(spec.name);
    BEAVER_CHECK(it != by.end(), where, ": missing tensor '", spec.name, "' (expected shape ",
                 shape_str(spec.shape), ")");
    const SafeTensorInfo& t = *it->second;
    BEAVER_CHECK(t.shape == spec.shape, where, ": tensor '", spec.name, "' has shape ",
                 shape_str(t.shape), " but the config implies ", shape_str(spec.shape));
    BEAVER_CHECK(is_float_name(t.dtype_name), where, ": tensor '", spec.name, "' has dtype ",
                 t.dtype_name, "; weights must be F32, F16 or BF16");
    by.erase(it);
  }
  BEAVER_CHECK(by.empty(), where, ": unexpected tensor '", by.empty() ? "" : by.begin()->first,
               "' (shape ", by.empty() ? "" : shape_str(by.begin()->second->shape),
               ") not in the config's tensor table");
}

void convert_float_bytes(const SafeTensorInfo& src, DType dst, std::span<uint8_t> out) {
  BEAVER_CHECK(is_float_name(src.dtype_name), "tensor '", src.name, "': dtype ", src.dtype_name,
               " is not a float type");
  BEAVER_CHECK(is_float(dst), "tensor '", src.name, "': target dtype ", dtype_name(dst),
               " is not a float type");
  const auto n = size_t(src.numel());
  BEAVER_CHECK(out.size() == n * dtype_size(dst), "tensor '", src.name, "': output holds ",
               out.size(), " bytes, need ", n * dtype_size(dst));
  if (*src.dtype == dst) {
    if (n) std::memcpy(out.data(), src.data, out.size());
    return;
  }
  const size_t in_size = dtype_size(*src.dtype);
  for (size_t i = 0; i < n; ++i) {
    const uint8_t* p = src.data + i * in_size;
    float x;
    if (*src.dtype == DType::F32) {
      std::memcpy(&x, p, 4);
    } else {
      uint16_t b;
      std::memcpy(&b, p, 2);
      x = *src.dtype == DType::BF16 ? to_f32(bf16{b}) : to_f32(f16{b});
    }
    uint8_t* q = out.data() + i * dtype_size(dst);
    if (dst == DType::F32) {
      std::memcpy(q, &x, 4);
    } else {
      const uint16_t b = dst == DType::BF16 ? to_bf16(x).bits : to_f16(x).bits;
      std::memcpy(q, &b, 2);
    }
  }
}

// Opens every shard an index names (each must exist), checks each against the index, and
// appends their tensors to `all`. Returns the bytes of tensor data in the shards; the index's
// metadata.total_size goes to *total (-1 when absent) when total is given.
template <typename File>
uint64_t load_shards(const fs::path& dir, const std::string& index, std::vector<File>& files,
                     bool is_bin, std::vector<SafeTensorInfo>& all, int64_t* total) {
  int64_t t = -1;
  const auto map = read_index(index, &t);
  if (total) *total = t;
  std::set<std::string> shards;
  for (const auto& [name, file] : map) shards.insert(file);
  uint64_t bytes = 0;
  for (const auto& shard : shards) {
    const fs::path p = dir / shard;
    std::error_code ec;  // a name the file system cannot look up (too long, ...) is missing too
    BEAVER_CHECK(fs::exists(p, ec), index, ": shard '", shard, "' is missing from ", dir.string());
    files.emplace_back(p.string());
    const auto& ts = files.back().tensors();
    check_shard(map, shard, ts, index, is_bin);
    for (const auto& x : ts) bytes += x.nbytes();
    all.insert(all.end(), ts.begin(), ts.end());
  }
  return bytes;
}

// ---- HF folder ------------------------------------------------------------------------------
void require_model_folder(const std::string& dir) {
  std::error_code ec;
  const fs::file_status st = fs::status(dir, ec);
  if (!fs::exists(st)) BEAVER_FAIL(dir, ": no such folder (the model folder does not exist)");
  if (!fs::is_directory(st)) BEAVER_FAIL(dir, ": is a file, not a model folder");
  const fs::path d(dir);
  if (!fs::exists(d / "beaver.json") && !fs::exists(d / "config.json"))
    BEAVER_FAIL(dir, ": not a model folder: it holds neither beaver.json (a Beaver checkpoint) "
                "nor config.json (an HF folder)");
}

HfCheckpoint::HfCheckpoint(const std::string& dir) : dir_(dir) {
  require_model_folder(dir);
  const fs::path d(dir);
  config_ = LlamaConfig::load((d / "config.json").string());
  std::vector<SafeTensorInfo> all;
  if (fs::exists(d / "model.safetensors")) {
    source_ = "model.safetensors";
    st_files_.emplace_back((d / source_).string());
    all = st_files_.back().tensors();
  } else if (fs::exists(d / "model.safetensors.index.json")) {
    source_ = "model.safetensors.index.json";
    const std::string index = (d / source_).string();
    int64_t total = -1;
    const uint64_t bytes = load_shards(d, index, st_files_, false, all, &total);
    BEAVER_CHECK(total < 0 || uint64_t(total) == bytes, index, ": metadata.total_size ", total,
                 " does not match the ", bytes, " bytes of tensors in the shards");
  } else if (fs::exists(d / "pytorch_model.bin")) {
    source_ = "pytorch_model.bin";
    bin_files_.emplace_back((d / source_).string());
    all = bin_files_.back().tensors();
  } else if (fs::exists(d / "pytorch_model.bin.index.json")) {
    // total_size is not checked here: it counts the rotary buffers the loader drops.
    source_ = "pytorch_model.bin.index.json";
    load_shards(d, (d / source_).string(), bin_files_, true, all, nullptr);
  } else {
    BEAVER_FAIL(dir, ": no weights found (looked for model.safetensors, "
                "model.safetensors.index.json, pytorch_model.bin, pytorch_model.bin.index.json)");
  }
  const std::string where = (d / source_).string();
  // Tied checkpoints sometimes still store the head; accept it only as an exact copy.
  if (config_.tie_word_embeddings && kind() == ModelKind::CausalLM) {
    auto head = std::find_if(all.begin(), all.end(),
                             [](const SafeTensorInfo& t) { return t.name == "lm_head.weight"; });
    auto emb = std::find_if(all.begin(), all.end(), [](const SafeTensorInfo& t) {
      return t.name == "model.embed_tokens.weight";
    });
    if (head != all.end() && emb != all.end()) {
      BEAVER_CHECK(head->dtype_name == emb->dtype_name && head->shape == emb->shape &&
                       std::memcmp(head->data, emb->data, size_t(head->nbytes())) == 0,
                   where, ": tensor 'lm_head.weight' differs from model.embed_tokens.weight "
                   "but config.json says tie_word_embeddings");
      all.erase(head);
    }
  }
  const auto expected = expected_tensors(config_, kind());
  check_tensor_table(expected, all, where);
  std::map<std::string, const SafeTensorInfo*> by;
  for (const auto& t : all) by[t.name] = &t;
  for (const auto& spec : expected) tensors_.push_back(*by.at(spec.name));
}

const SafeTensorInfo& HfCheckpoint::at(std::string_view name) const {
  for (const auto& t : tensors_)
    if (t.name == name) return t;
  BEAVER_FAIL(dir_, ": no tensor named '", name, "'");
}

std::optional<DType> HfCheckpoint::uniform_dtype() const {
  std::optional<DType> d;
  for (const auto& t : tensors_) {
    if (d && *d != *t.dtype) return std::nullopt;
    d = t.dtype;
  }
  return d;
}

// ---- tensor sources -------------------------------------------------------------------------
TensorSource tensor_source(const SafeTensorInfo& t) {
  return {t.name, t.shape, [t](DType dst, std::span<uint8_t> out) { convert_float_bytes(t, dst, out); }};
}

TensorSource tensor_source(std::string name, const Tensor& t) {
  BEAVER_CHECK(is_float(t.dtype), "tensor '", name, "' has dtype ", dtype_name(t.dtype),
               "; checkpoints hold float tensors");
  return {name, t.shape.vec(), [t, name](DType dst, std::span<uint8_t> out) {
            OwnedTensor host;
            const uint8_t* p = static_cast<const uint8_t*>(t.data);
            if (t.device != Device::CPU) {
              host = OwnedTensor(t.dtype, t.shape, Device::CPU);
              copy_tensor(host, t);
              p = static_cast<const uint8_t*>(host.view().data);
            }
            SafeTensorInfo info;
            info.name = name;
            info.dtype = t.dtype;
            info.dtype_name = std::string(dtype_to_safetensors(t.dtype));
            info.shape = t.shape.vec();
            info.end = t.nbytes();
            info.data = p;
            convert_float_bytes(info, dst, out);
          }};
}

// ---- Beaver folder --------------------------------------------------------------------------
void write_beaver_checkpoint(const std::string& dir, LlamaConfig config, ModelKind kind,
                             DType dtype, const std::vector<TensorSource>& tensors,
                             const std::string& tokenizer_dir, bool allow_nonfinite) {
  BEAVER_CHECK(is_float(dtype), dir, ": checkpoint dtype must be f32, bf16 or f16, got ",
               dtype_name(dtype));
  config = with_kind(std::move(config), kind);
  config.torch_dtype = std::string(torch_dtype_name(dtype));
  config.validate(dir);
  const auto src = ordered_sources(config, kind, tensors, dir);
  refuse_existing_checkpoint(dir);
  const fs::path d(dir);
  write_safetensors((d / "model.safetensors").string(),
                    entries_for(src, dtype, dir, allow_nonfinite), {{"format", "pt"}});
  copy_tokenizer_files(tokenizer_dir, dir);
  json h = {{"magic", kBeaverMagic},
            {"format_version", kBeaverFormatVersion},
            {"kind", kind_name(kind)},
            {"dtype", dtype_name(dtype)},
            {"config", config.to_json()}};
  write_text_file((d / "beaver.json").string(), h.dump(2) + "\n");
}

BeaverCheckpoint::BeaverCheckpoint(const std::string& dir) : dir_(dir) {
  const fs::path d(dir);
  const std::string hp = (d / "beaver.json").string();
  if (!fs::exists(d)) BEAVER_FAIL(dir, ": no such folder (the model folder does not exist)");
  BEAVER_CHECK(fs::exists(hp), dir, ": not a Beaver checkpoint (no beaver.json); HF folders "
               "are converted with `beaver convert`");
  const json h = parse_json_file(hp);
  BEAVER_CHECK(h.is_object() && h.value("magic", json()) == kBeaverMagic, hp,
               ": field 'magic' is not \"", kBeaverMagic, "\"");
  BEAVER_CHECK(h.contains("format_version") && h["format_version"].is_number_integer(), hp,
               ": field 'format_version' is missing");
  BEAVER_CHECK(h["format_version"].get<int64_t>() == kBeaverFormatVersion, hp,
               ": format version ", h["format_version"].get<int64_t>(),
               " is not supported (this build reads ", kBeaverFormatVersion, ")");
  BEAVER_CHECK(h.contains("kind") && h["kind"].is_string(), hp, ": field 'kind' is missing");
  BEAVER_CHECK(h.contains("dtype") && h["dtype"].is_string(), hp, ": field 'dtype' is missing");
  BEAVER_CHECK(h.contains("config"), hp, ": field 'config' is missing");
  try {
    kind_ = parse_kind(h["kind"].get<std::string>());
    dtype_ = parse_dtype(h["dtype"].get<std::string>());
  } catch (const Error& e) {
    BEAVER_FAIL(hp, ": ", e.what());
  }
  BEAVER_CHECK(is_float(dtype_), hp, ": field 'dtype' must be f32, bf16 or f16");
  config_ = LlamaConfig::from_json(h["config"], hp + ": config");
  BEAVER_CHECK(config_.kind() == kind_, hp, ": kind '", kind_name(kind_),
               "' contradicts the config's architecture '", config_.architecture, "'");
  weights_.emplace((d / "model.safetensors").string());
  check_tensor_table(expected_tensors(config_, kind_), weights_->tensors(), weights_->path());
  for (const auto& t : weights_->tensors())
    BEAVER_CHECK(t.dtype == dtype_, weights_->path(), ": tensor '", t.name, "' has dtype ",
                 t.dtype_name, " but beaver.json declares ", dtype_name(dtype_));
}

Tensor BeaverCheckpoint::tensor(std::string_view name) const { return weights_->at(name).tensor(); }

std::vector<TensorSource> BeaverCheckpoint::sources() const {
  std::vector<TensorSource> out;
  for (const auto& spec : expected_tensors(config_, kind_))
    out.push_back(tensor_source(weights_->at(spec.name)));
  return out;
}

// ---- HF export ------------------------------------------------------------------------------
std::vector<std::string> copy_tokenizer_files(const std::string& from, const std::string& to) {
  std::vector<std::string> copied;
  if (from.empty()) return copied;
  for (std::string_view f : kTokenizerFiles) {
    const fs::path src = fs::path(from) / f;
    if (!fs::exists(src)) continue;
    std::error_code ec;
    fs::copy_file(src, fs::path(to) / f, fs::copy_options::overwrite_existing, ec);
    BEAVER_CHECK(!ec, src.string(), ": cannot copy to ", to, " (", ec.message(), ")");
    copied.emplace_back(f);
  }
  return copied;
}

void write_hf_checkpoint(const std::string& dir, LlamaConfig config, ModelKind kind, DType dtype,
                         const std::vector<TensorSource>& tensors, uint64_t shard_bytes,
                         const std::string& tokenizer_dir, bool allow_nonfinite) {
  BEAVER_CHECK(is_float(dtype), dir, ": export dtype must be f32, bf16 or f16, got ",
               dtype_name(dtype));
  config = with_kind(std::move(config), kind);
  config.torch_dtype = std::string(torch_dtype_name(dtype));
  config.validate(dir);
  const auto src = ordered_sources(config, kind, tensors, dir);
  refuse_existing_checkpoint(dir);
  const fs::path d(dir);
  auto entries = entries_for(src, dtype, dir, allow_nonfinite);
  std::vector<uint64_t> sizes;
  uint64_t total = 0;
  for (const auto& e : entries) {
    uint64_t n = dtype_size(dtype);
    for (int64_t s : e.shape) n *= uint64_t(s);
    sizes.push_back(n);
    total += n;
  }
  if (shard_bytes == 0 || total <= shard_bytes) {
    write_safetensors((d / "model.safetensors").string(), entries, {{"format", "pt"}});
  } else {
    // Greedy packing in table order; a tensor larger than the limit gets a shard of its own.
    std::vector<std::vector<SafeTensorsEntry>> shards(1);
    uint64_t cur = 0;
    for (size_t i = 0; i < entries.size(); ++i) {
      if (!shards.back().empty() && cur + sizes[i] > shard_bytes) {
        shards.emplace_back();
        cur = 0;
      }
      shards.back().push_back(std::move(entries[i]));
      cur += sizes[i];
    }
    json map = json::object();
    for (size_t k = 0; k < shards.size(); ++k) {
      char name[64];
      std::snprintf(name, sizeof name, "model-%05zu-of-%05zu.safetensors", k + 1, shards.size());
      write_safetensors((d / name).string(), shards[k], {{"format", "pt"}});
      for (const auto& e : shards[k]) map[e.name] = name;
    }
    const json index = {{"metadata", {{"total_size", total}}}, {"weight_map", map}};
    write_text_file((d / "model.safetensors.index.json").string(), index.dump(2) + "\n");
  }
  copy_tokenizer_files(tokenizer_dir, dir);
  write_text_file((d / "config.json").string(), config.to_json().dump(2) + "\n");
}

}  // namespace beaver::model
