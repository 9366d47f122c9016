// torch.save checkpoints: the committed fixtures (written by tools/make_bin_fixtures.py with real
// PyTorch) load with the right bytes, and malicious or malformed pickles and archives are refused
// with messages naming the global, opcode, byte offset, tensor or zip entry.
#include <gtest/gtest.h>

#include <cmath>
#include <cstdlib>
#include <filesystem>
#include <nlohmann/json.hpp>

#include "csrc/atomic_file.h"
#include "csrc/torch_pickle.h"
#include "csrc/zip.h"
#include "format_fixtures.h"

namespace beaver {
namespace {

using test::expect_error;
using namespace std::string_literals;

std::string data_dir() {
  if (const char* s = std::getenv("BEAVER_SOURCE_DIR")) return std::string(s) + "/tests/data";
  return (std::filesystem::path(__FILE__).parent_path() / "data").string();
}
std::string bin_dir() { return data_dir() + "/torch_bin"; }

double element(const SafeTensorInfo& t, int64_t i) {
  const auto* p = t.data;
  if (t.dtype_name == "F32") { float v; std::memcpy(&v, p + 4 * i, 4); return v; }
  if (t.dtype_name == "F16") { f16 v; std::memcpy(&v, p + 2 * i, 2); return to_f32(v); }
  if (t.dtype_name == "BF16") { bf16 v; std::memcpy(&v, p + 2 * i, 2); return to_f32(v); }
  if (t.dtype_name == "I64") { int64_t v; std::memcpy(&v, p + 8 * i, 8); return double(v); }
  if (t.dtype_name == "I32") { int32_t v; std::memcpy(&v, p + 4 * i, 4); return v; }
  if (t.dtype_name == "U8" || t.dtype_name == "BOOL") return p[i];
  ADD_FAILURE() << "unexpected dtype " << t.dtype_name;
  return 0;
}

const std::map<std::string, std::string> kTorchToSt = {
    {"float32", "F32"}, {"float16", "F16"}, {"bfloat16", "BF16"}, {"int64", "I64"},
    {"int32", "I32"},   {"uint8", "U8"},    {"bool", "BOOL"}};

// Compares loaded tensors with expected.json[key]: same names, dtypes, shapes, sums, first values.
void check_against_expected(const std::vector<SafeTensorInfo>& got, const std::string& key) {
  const auto all = nlohmann::json::parse(read_text_file(bin_dir() + "/expected.json"));
  const auto& want = all.at(key);
  ASSERT_EQ(got.size(), want.size());
  for (const auto& t : got) {
    SCOPED_TRACE(t.name);
    ASSERT_TRUE(want.contains(t.name));
    const auto& w = want[t.name];
    EXPECT_EQ(t.dtype_name, kTorchToSt.at(w["dtype"].get<std::string>()));
    EXPECT_EQ(t.shape, w["shape"].get<std::vector<int64_t>>());
    double sum = 0;
    for (int64_t i = 0; i < t.numel(); ++i) sum += element(t, i);
    EXPECT_NEAR(sum, w["sum"].get<double>(), 1e-6 * (1 + std::fabs(sum)));
    const auto first = w["first"].get<std::vector<double>>();
    for (size_t i = 0; i < first.size(); ++i) EXPECT_EQ(element(t, int64_t(i)), first[i]);
  }
}

TEST(TorchBin, LoadsEveryDtypeAndStorageLayout) {
  TorchBinFile f(bin_dir() + "/misc.bin");
  check_against_expected(f.tensors(), "misc");
  std::map<std::string, const SafeTensorInfo*> by;
  for (const auto& t : f.tensors()) by[t.name] = &t;
  // A view into the middle of a storage starts at its offset; aliases share bytes.
  EXPECT_EQ(by.at("row1")->begin, 16u);
  EXPECT_EQ(element(*by.at("row1"), 0), 1.0);
  EXPECT_EQ(by.at("i64")->data, by.at("i64_alias")->data);
  EXPECT_TRUE(by.at("scalar")->shape.empty());
  EXPECT_EQ(by.at("empty")->nbytes(), 0u);
  EXPECT_EQ(by.at("bf16")->tensor().dtype, DType::BF16);
  EXPECT_FALSE(by.at("bool")->dtype.has_value());
}

TEST(TorchBin, SkipsRotaryBuffersOfOldCheckpoints) {
  TorchBinFile f(bin_dir() + "/tiny_llama/pytorch_model.bin");
  for (const auto& t : f.tensors()) EXPECT_EQ(t.name.find("rotary_emb"), std::string::npos);
  check_against_expected(f.tensors(), "tiny_llama");
}

TEST(TorchBin, RefusesMaliciousPickleWithoutRunningIt) {
  expect_error([] { TorchBinFile f(bin_dir() + "/malicious.bin"); },
               {"malicious.bin", "global 'posix.system' is not allowed", "at byte 13"});
}

TEST(TorchBin, RefusesNonContiguousTensor) {
  expect_error([] { TorchBinFile f(bin_dir() + "/noncontiguous.bin"); },
               {"noncontiguous.bin", "non-contiguous", "stride"});
}

TEST(TorchBin, RefusesCompressedArchive) {
  expect_error([] { TorchBinFile f(bin_dir() + "/compressed.bin"); },
               {"compressed.bin", "compressed entry (method 8)"});
}

// ---- hand-written pickles --------------------------------------------------------------------
std::vector<uint8_t> bytes(std::string_view s) { return {s.begin(), s.end()}; }

std::vector<PickledTensor> unpickle(std::string_view s) {
  const auto b = bytes(s);
  return unpickle_state_dict(b.data(), b.size(), "p.pkl");
}

std::string u(std::string_view s) {  // SHORT_BINUNICODE
  return std::string("\x8c") + char(s.size()) + std::string(s);
}

// {name: _rebuild_tensor_v2(FloatStorage key '0' of storage_numel, offset, (size,), (1,))}
std::string state_pickle(int storage_numel, int offset, int size, std::string_view name = "w") {
  std::string p = "\x80\x02}(" + u(name);
  p += "ctorch._utils\n_rebuild_tensor_v2\n(";
  p += "(" + u("storage") + "ctorch\nFloatStorage\n" + u("0") + u("cpu") + "K" +
       char(storage_numel) + "tQ";
  p += std::string("K") + char(offset) + "K" + char(size) + "\x85K\x01\x85\x89";
  p += "ccollections\nOrderedDict\n)RtRu.";
  return p;
}

TEST(TorchPickle, AcceptsMinimalStateDict) {
  const auto t = unpickle(state_pickle(6, 2, 4));
  ASSERT_EQ(t.size(), 1u);
  EXPECT_EQ(t[0].name, "w");
  EXPECT_EQ(t[0].storage_key, "0");
  EXPECT_EQ(t[0].storage_type, "FloatStorage");
  EXPECT_EQ(t[0].storage_numel, 6);
  EXPECT_EQ(t[0].storage_offset, 2);
  EXPECT_EQ(t[0].size, std::vector<int64_t>{4});
}

TEST(TorchPickle, RefusesDangerousGlobals) {
  expect_error([] { unpickle("\x80\x02" "cos\nsystem\n" + u("ls") + "\x85R."); },
               {"p.pkl", "global 'os.system' is not allowed", "opcode 0x63 'c' at byte 2"});
  // STACK_GLOBAL builtins.eval (protocol 4 style).
  expect_error([] { unpickle("\x80\x04" + u("builtins") + u("eval") + "\x93" + u("1") + "\x85R."); },
               {"global 'builtins.eval' is not allowed", "opcode 0x93 at byte 18"});
  // An allowed module with a disallowed name.
  expect_error([] { unpickle("\x80\x02" "ctorch\nload\n."); }, {"global 'torch.load'"});
}

TEST(TorchPickle, RefusesUnknownAndDisallowedOpcodes) {
  expect_error([] { unpickle("\x80\x02}\xff."); },
               {"opcode 0xff at byte 3", "not allowed in a state dict"});
  // INST ('i') and OBJ ('o') build arbitrary objects; EXT1 looks globals up in a registry.
  expect_error([] { unpickle("\x80\x02(ios\nsystem\n."); }, {"opcode 0x69 'i' at byte 3"});
  expect_error([] { unpickle("\x80\x02(o."); }, {"opcode 0x6f 'o' at byte 3"});
  expect_error([] { unpickle("\x80\x02\x82\x01."); }, {"opcode 0x82 at byte 2"});
  expect_error([] { unpickle("\x80\x09}."); }, {"protocol 9"});
}

TEST(TorchPickle, RefusesMalformedPrograms) {
  expect_error([] { unpickle("\x80\x02X\x64\x00\x00\x00" "abc"s); }, {"truncated", "at byte 2"});
  expect_error([] { unpickle("\x80\x02}"); }, {"without a STOP"});
  expect_error([] { unpickle("\x80\x02}h\x07."); }, {"memo entry 7"});
  expect_error([] { unpickle("\x80\x02s."); }, {"stack underflow"});
  expect_error([] { unpickle("\x80\x02}(" + u("a") + "K\x01u."); },
               {"state dict entry 'a' is a int, not a tensor"});
  expect_error([] { unpickle("\x80\x02)."); }, {"holds a tuple, not a state dict"});
  expect_error([] { unpickle("\x80\x02" "ccollections\nOrderedDict\nK\x01\x85R."); },
               {"OrderedDict called with arguments"});
  expect_error([] { unpickle("\x80\x02" "ctorch\nFloatStorage\n)R."); },
               {"'torch.FloatStorage' cannot be called"});
  expect_error([] { unpickle("\x80\x02\x8a\x09" "123456789."); }, {"LONG1", "9 bytes"});
}

TEST(TorchPickle, RefusesTensorsOutsideTheirStorage) {
  expect_error([] { unpickle(state_pickle(4, 0, 8)); },
               {"tensor elements [0, +8) exceed storage '0' of 4 elements"});
  expect_error([] { unpickle(state_pickle(4, 3, 2)); }, {"exceed storage"});
  EXPECT_NO_THROW(unpickle(state_pickle(4, 2, 2)));
}

TEST(TorchPickle, ParsesNegativeAndWideIntegers) {
  // LONG1 with 2 bytes 0xff 0xff is -1; a negative storage offset must be refused by name.
  std::string p = state_pickle(6, 2, 4);
  const size_t at = p.find("K\x02K\x04");
  p.replace(at, 2, "\x8a\x02\xff\xff");
  expect_error([&] { unpickle(p); }, {"negative storage offset -1"});
}

// ---- hand-built zip archives -----------------------------------------------------------------
struct ZipSpec {
  bool zip64 = false;
  uint16_t method = 0;
  int64_t shift_local_offset = 0;  // corrupts the local-header offset of the last entry
};

void put(std::vector<uint8_t>& b, uint64_t v, int n) {
  for (int i = 0; i < n; ++i) b.push_back(uint8_t(v >> (8 * i)));
}

std::vector<uint8_t> make_zip(const std::vector<std::pair<std::string, std::string>>& entries,
                              const ZipSpec& spec = {}) {
  std::vector<uint8_t> out, cd;
  for (size_t k = 0; k < entries.size(); ++k) {
    const auto& [name, data] = entries[k];
    const uint64_t local = out.size();
    put(out, 0x04034b50, 4); put(out, 45, 2); put(out, 0, 2); put(out, spec.method, 2);
    put(out, 0, 4); put(out, 0, 4); put(out, data.size(), 4); put(out, data.size(), 4);
    put(out, name.size(), 2); put(out, 0, 2);
    out.insert(out.end(), name.begin(), name.end());
    out.insert(out.end(), data.begin(), data.end());
    const uint64_t off = local + (k + 1 == entries.size() ? uint64_t(spec.shift_local_offset) : 0);
    put(cd, 0x02014b50, 4); put(cd, 45, 2); put(cd, 45, 2); put(cd, 0, 2);
    put(cd, spec.method, 2); put(cd, 0, 4); put(cd, 0, 4);
    const uint64_t sat = spec.zip64 ? 0xffffffffu : 0;
    put(cd, spec.zip64 ? sat : data.size(), 4); put(cd, spec.zip64 ? sat : data.size(), 4);
    put(cd, name.size(), 2); put(cd, spec.zip64 ? 28 : 0, 2); put(cd, 0, 2);
    put(cd, 0, 2); put(cd, 0, 2); put(cd, 0, 4); put(cd, spec.zip64 ? sat : off, 4);
    cd.insert(cd.end(), name.begin(), name.end());
    if (spec.zip64) {
      put(cd, 1, 2); put(cd, 24, 2); put(cd, data.size(), 8); put(cd, data.size(), 8);
      put(cd, off, 8);
    }
  }
  const uint64_t cd_off = out.size();
  out.insert(out.end(), cd.begin(), cd.end());
  if (spec.zip64) {
    const uint64_t z = out.size();
    put(out, 0x06064b50, 4); put(out, 44, 8); put(out, 45, 2); put(out, 45, 2);
    put(out, 0, 4); put(out, 0, 4); put(out, entries.size(), 8); put(out, entries.size(), 8);
    put(out, cd.size(), 8); put(out, cd_off, 8);
    put(out, 0x07064b50, 4); put(out, 0, 4); put(out, z, 8); put(out, 1, 4);
  }
  put(out, 0x06054b50, 4); put(out, 0, 2); put(out, 0, 2);
  put(out, spec.zip64 ? 0xffff : entries.size(), 2); put(out, spec.zip64 ? 0xffff : entries.size(), 2);
  put(out, spec.zip64 ? 0xffffffffu : cd.size(), 4); put(out, spec.zip64 ? 0xffffffffu : cd_off, 4);
  put(out, 0, 2);
  return out;
}

std::string floats(std::initializer_list<float> v) {
  std::string s(v.size() * 4, '\0');
  std::memcpy(s.data(), std::data(v), s.size());
  return s;
}

std::vector<SafeTensorInfo> load_zip(const std::vector<uint8_t>& z) {
  return parse_torch_zip(z.data(), z.size(), "z.bin");
}

TEST(TorchZip, ReadsZip64Archives) {
  for (bool zip64 : {false, true}) {
    SCOPED_TRACE(zip64);
    ZipSpec spec;
    spec.zip64 = zip64;
    const auto z = make_zip({{"ck/data.pkl", state_pickle(4, 1, 3)},
                             {"ck/data/0", floats({1, 2, 3, 4})},
                             {"ck/byteorder", "little"}},
                            spec);
    const auto t = load_zip(z);
    ASSERT_EQ(t.size(), 1u);
    EXPECT_EQ(t[0].shape, std::vector<int64_t>{3});
    EXPECT_EQ(element(t[0], 0), 2.0);
    EXPECT_EQ(element(t[0], 2), 4.0);
  }
}

TEST(TorchZip, RefusesBrokenArchives) {
  const std::string pkl = state_pickle(4, 0, 4);
  expect_error([&] { load_zip(make_zip({{"ck/data.pkl", pkl}})); },
               {"z.bin", "tensor 'w'", "storage entry 'ck/data/0' is missing"});
  expect_error([&] { load_zip(make_zip({{"ck/data.pkl", pkl}, {"ck/data/0", floats({1, 2})}})); },
               {"tensor 'w'", "should hold 4 x 4 bytes but the entry has 8"});
  expect_error([&] { load_zip(make_zip({{"ck/other", "x"}})); }, {"no <folder>/data.pkl"});
  expect_error([&] {
    load_zip(make_zip({{"ck/data.pkl", pkl}, {"ck/data/0", floats({1, 2, 3, 4})},
                       {"ck/byteorder", "big"}}));
  }, {"byteorder 'big'"});
  ZipSpec bad;
  bad.shift_local_offset = 100000;
  expect_error([&] { load_zip(make_zip({{"ck/data.pkl", pkl}}, bad)); },
               {"zip entry 'ck/data.pkl'", "local header offset 100000 is invalid"});
  bad.shift_local_offset = 3;
  expect_error([&] { load_zip(make_zip({{"ck/data.pkl", pkl}}, bad)); },
               {"local header offset 3 is invalid"});
  ZipSpec deflate;
  deflate.method = 8;
  expect_error([&] { load_zip(make_zip({{"ck/data.pkl", pkl}}, deflate)); },
               {"zip entry 'ck/data.pkl'", "compressed entry (method 8)"});
  // Truncating the archive loses the end-of-central-directory record.
  auto z = make_zip({{"ck/data.pkl", pkl}, {"ck/data/0", floats({1, 2, 3, 4})}});
  z.resize(z.size() - 30);
  expect_error([&] { load_zip(z); }, {"z.bin", "no end-of-central-directory"});
  expect_error([&] { load_zip({'P', 'K'}); }, {"too short"});
}

TEST(TorchZip, RefusesEntryDataPastTheEnd) {
  auto z = make_zip({{"ck/data.pkl", state_pickle(4, 0, 4)}});
  // Patch the central directory's sizes to claim far more data than the file holds.
  const size_t cd = size_t(std::search(z.begin(), z.end(), std::begin("PK\x01\x02"),
                                       std::begin("PK\x01\x02") + 4) - z.begin());
  for (int i = 0; i < 4; ++i) z[cd + 20 + size_t(i)] = z[cd + 24 + size_t(i)] = 0x7f;
  expect_error([&] { load_zip(z); }, {"zip entry 'ck/data.pkl'", "lies outside the archive"});
}

}  // namespace
}  // namespace beaver
