// safetensors: round trips through the writer and reader, and every malformed file the reader
// must refuse, each with a message naming the file and the problem.
#include <gtest/gtest.h>

#include <cstring>
#include <filesystem>

#include "csrc/safetensors.h"
#include "format_fixtures.h"
#include "testutil.h"

namespace beaver {
namespace {

using test::expect_error;
using test::raw_safetensors;
using test::TempDir;
using test::write_bytes;

TEST(SafeTensors, RoundTripsValuesShapesAndMetadata) {
  TempDir dir;
  auto a = test::random_tensor({3, 5}, 1);
  OwnedTensor b(DType::BF16, {4});
  for (int i = 0; i < 4; ++i) b.ptr<bf16>()[i] = to_bf16(float(i) - 1.5f);
  OwnedTensor c(DType::I64, {2, 1, 2});
  for (int i = 0; i < 4; ++i) c.ptr<int64_t>()[i] = int64_t(i) * 1000000000000LL - 7;
  OwnedTensor scalar(DType::F16, Shape(std::vector<int64_t>{}));
  scalar.ptr<f16>()[0] = to_f16(0.25f);
  OwnedTensor empty(DType::F32, {0, 7});
  const std::string path = dir / "x.safetensors";
  write_safetensors(path,
                    {{"a", a}, {"b.weight", b}, {"c", c}, {"scalar", scalar}, {"empty", empty}},
                    {{"format", "pt"}, {"note", "hello"}});

  // The data buffer starts 8-byte aligned and nothing temporary is left behind.
  const auto bytes = test::read_bytes(path);
  uint64_t n = 0;
  std::memcpy(&n, bytes.data(), 8);
  EXPECT_EQ((8 + n) % 8, 0u);
  EXPECT_EQ(std::distance(std::filesystem::directory_iterator(dir.str()), {}), 1);

  SafeTensorsFile f(path);
  ASSERT_EQ(f.tensors().size(), 5u);
  EXPECT_EQ(f.metadata().at("format"), "pt");
  EXPECT_EQ(f.metadata().at("note"), "hello");
  const Tensor ta = f.at("a").tensor();
  EXPECT_EQ(ta.shape, Shape({3, 5}));
  EXPECT_EQ(std::memcmp(ta.data, a.view().data, 15 * 4), 0);
  EXPECT_EQ(f.at("b.weight").dtype_name, "BF16");
  EXPECT_EQ(to_f32(f.at("b.weight").tensor().ptr<bf16>()[3]), 1.5f);
  EXPECT_EQ(f.at("c").tensor().ptr<int64_t>()[3], 3000000000000LL - 7);
  EXPECT_EQ(f.at("scalar").shape.size(), 0u);
  EXPECT_EQ(to_f32(f.at("scalar").tensor().ptr<f16>()[0]), 0.25f);
  EXPECT_EQ(f.at("empty").nbytes(), 0u);
  EXPECT_EQ(f.at("empty").tensor().shape, Shape({0, 7}));
  EXPECT_EQ(f.find("missing"), nullptr);
  expect_error([&] { f.at("missing"); }, {"x.safetensors", "no tensor named 'missing'"});
}

TEST(SafeTensors, EmptyFileOfTensorsIsValid) {
  TempDir dir;
  write_safetensors(dir / "e.safetensors", std::vector<std::pair<std::string, Tensor>>{});
  SafeTensorsFile f(dir / "e.safetensors");
  EXPECT_TRUE(f.tensors().empty());
}

TEST(SafeTensors, KeepsDtypesBeaverLacksByName) {
  TempDir dir;
  const std::string h =
      R"({"m":{"dtype":"BOOL","shape":[3],"data_offsets":[0,3]},)"
      R"("q":{"dtype":"F8_E4M3","shape":[2],"data_offsets":[3,5]},)"
      R"("d":{"dtype":"F64","shape":[1],"data_offsets":[5,13]},)"
      R"("i":{"dtype":"I16","shape":[1],"data_offsets":[13,15]},)"
      R"("j":{"dtype":"I8","shape":[1],"data_offsets":[15,16]},)"
      R"("k":{"dtype":"F8_E5M2","shape":[],"data_offsets":[16,17]}})";
  write_bytes(dir / "t.safetensors", raw_safetensors(h, 17));
  SafeTensorsFile f(dir / "t.safetensors");
  EXPECT_EQ(f.at("m").dtype_name, "BOOL");
  EXPECT_FALSE(f.at("m").dtype.has_value());
  EXPECT_EQ(f.at("d").nbytes(), 8u);
  expect_error([&] { f.at("q").tensor(); }, {"tensor 'q'", "F8_E4M3"});
}

TEST(SafeTensors, MisalignedTensorsAreNotViewed) {
  TempDir dir;
  // Header length 63 puts the buffer at byte 71; an F32 tensor at offset 1 is misaligned.
  std::string h = R"({"a":{"dtype":"U8","shape":[1],"data_offsets":[0,1]},)"
                  R"("b":{"dtype":"F32","shape":[1],"data_offsets":[1,5]}})";
  h.append((8 - (8 + h.size()) % 8) % 8, ' ');
  write_bytes(dir / "m.safetensors", raw_safetensors(h, 5));
  SafeTensorsFile f(dir / "m.safetensors");
  EXPECT_EQ(f.at("a").tensor().numel(), 1);
  expect_error([&] { f.at("b").tensor(); }, {"tensor 'b'", "not a multiple of its 4-byte"});
}

TEST(SafeTensors, HeaderPaddedWithSpacesIsAccepted) {
  TempDir dir;
  const std::string h = R"({"a":{"dtype":"U8","shape":[2],"data_offsets":[0,2]}})" + std::string(5, ' ');
  write_bytes(dir / "p.safetensors", raw_safetensors(h, 2));
  SafeTensorsFile f(dir / "p.safetensors");
  EXPECT_EQ(f.at("a").tensor().ptr<uint8_t>()[1], 8);
}

// A malformed file: header text, buffer size, optional explicit length field.
void expect_bad(const std::string& header, size_t buffer, std::initializer_list<std::string> msg,
                int64_t length = -1) {
  TempDir dir;
  const std::string path = dir / "bad.safetensors";
  write_bytes(path, raw_safetensors(header, buffer, length));
  std::vector<std::string> want{"bad.safetensors"};
  want.insert(want.end(), msg.begin(), msg.end());
  try {
    SafeTensorsFile f(path);
    ADD_FAILURE() << "accepted: " << header;
  } catch (const Error& e) {
    for (const auto& s : want)
      EXPECT_NE(std::string(e.what()).find(s), std::string::npos)
          << "message lacks '" << s << "': " << e.what();
  }
}

const std::string kOne = R"({"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]}})";

TEST(SafeTensorsMalformed, TruncatedFile) {
  TempDir dir;
  write_bytes(dir / "bad.safetensors", {1, 2, 3});
  expect_error([&] { SafeTensorsFile f(dir / "bad.safetensors"); },
               {"bad.safetensors", "truncated", "3 bytes"});
  write_bytes(dir / "empty.safetensors", {});
  expect_error([&] { SafeTensorsFile f(dir / "empty.safetensors"); }, {"truncated"});
}

TEST(SafeTensorsMalformed, TruncatedData) {
  expect_bad(kOne, 5, {"tensor 'a'", "out of range", "holds 5 bytes"});
}

TEST(SafeTensorsMalformed, HeaderLengthBeyondFile) {
  expect_bad(kOne, 8, {"header length 1000", "past the end of the file"}, 1000);
}

TEST(SafeTensorsMalformed, HeaderTooLarge) {
  expect_bad(kOne, 8, {"exceeds the limit"}, int64_t(kSafeTensorsMaxHeader) + 1);
  expect_bad(kOne, 8, {"exceeds the limit"}, INT64_MAX);
}

TEST(SafeTensorsMalformed, BadJson) {
  expect_bad(R"({"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]})", 8, {"not valid JSON"});
  expect_bad(R"({"a":{"dtype":"F32",)" "\xff\xfe" R"(":1}})", 8, {"not valid JSON"});
  expect_bad("[1,2]", 0, {"does not start with '{'"});
  expect_bad(" {}", 0, {"does not start with '{'"});
  expect_bad("", 0, {"does not start with '{'"});
  expect_bad(R"({"a":[[[[[[1]]]]]]})", 0, {"nests deeper"});
}

TEST(SafeTensorsMalformed, UnknownDtype) {
  expect_bad(R"({"a":{"dtype":"F31","shape":[2],"data_offsets":[0,8]}})", 8,
             {"tensor 'a'", "unknown dtype 'F31'"});
}

TEST(SafeTensorsMalformed, BadShapes) {
  expect_bad(R"({"a":{"dtype":"F32","shape":[-2],"data_offsets":[0,8]}})", 8,
             {"tensor 'a'", "negative"});
  expect_bad(R"({"a":{"dtype":"F32","shape":[2.0],"data_offsets":[0,8]}})", 8,
             {"tensor 'a'", "not an integer"});
  // Dimensions whose product overflows 64 bits must not wrap around to a small size.
  expect_bad(
      R"({"a":{"dtype":"U8","shape":[4294967296,4294967296,1],"data_offsets":[0,0]}})", 0,
      {"tensor 'a'", "more than 2^64"});
  expect_bad(R"({"a":{"dtype":"F32","shape":2,"data_offsets":[0,8]}})", 8, {"'shape'"});
}

TEST(SafeTensorsMalformed, OffsetsOutOfRange) {
  expect_bad(R"({"a":{"dtype":"F32","shape":[2],"data_offsets":[8,16]}})", 8,
             {"tensor 'a'", "[8, 16) out of range"});
  expect_bad(R"({"a":{"dtype":"F32","shape":[2],"data_offsets":[8,0]}})", 8,
             {"tensor 'a'", "end before begin"});
  expect_bad(R"({"a":{"dtype":"F32","shape":[2],"data_offsets":[-1,7]}})", 8,
             {"tensor 'a'", "non-negative"});
  expect_bad(R"({"a":{"dtype":"F32","shape":[2],"data_offsets":[0]}})", 8,
             {"tensor 'a'", "[begin, end]"});
}

TEST(SafeTensorsMalformed, ShapeTimesDtypeIsNotTheByteCount) {
  expect_bad(R"({"a":{"dtype":"F32","shape":[3],"data_offsets":[0,8]}})", 8,
             {"tensor 'a'", "needs 12 bytes", "span 8"});
}

TEST(SafeTensorsMalformed, Overlapping) {
  expect_bad(R"({"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},)"
             R"("b":{"dtype":"F32","shape":[1],"data_offsets":[4,8]}})",
             8, {"overlap", "'a'", "'b'"});
}

TEST(SafeTensorsMalformed, Holes) {
  expect_bad(R"({"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4]},)"
             R"("b":{"dtype":"F32","shape":[1],"data_offsets":[8,12]}})",
             12, {"hole", "[4, 8)", "'b'"});
  expect_bad(R"({"a":{"dtype":"F32","shape":[1],"data_offsets":[4,8]}})", 8, {"hole", "[0, 4)"});
  expect_bad(kOne, 12, {"hole", "[8, 12)", "at the end"});
}

TEST(SafeTensorsMalformed, DuplicateNames) {
  expect_bad(R"({"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4]},)"
             R"("a":{"dtype":"F32","shape":[1],"data_offsets":[4,8]}})",
             8, {"duplicate name 'a'"});
  expect_bad(R"({"a":{"dtype":"F32","dtype":"F16","shape":[2],"data_offsets":[0,8]}})", 8,
             {"duplicate name 'dtype'"});
}

TEST(SafeTensorsMalformed, MetadataMustBeStrings) {
  expect_bad(R"({"__metadata__":{"format":1},"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]}})",
             8, {"__metadata__ value 'format' is not a string"});
  expect_bad(R"({"__metadata__":[],"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]}})", 8,
             {"__metadata__ is not an object"});
}

TEST(SafeTensorsMalformed, EntryFields) {
  expect_bad(R"({"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8],"extra":1}})", 8,
             {"tensor 'a'", "unexpected field 'extra'"});
  expect_bad(R"({"a":{"shape":[2],"data_offsets":[0,8]}})", 8, {"tensor 'a'", "'dtype'"});
  expect_bad(R"({"a":5})", 0, {"tensor 'a'", "not an object"});
}

TEST(SafeTensors, WriterRejectsBadNames) {
  TempDir dir;
  auto a = test::random_tensor({2}, 3);
  expect_error([&] { write_safetensors(dir / "w.safetensors", {{"a", a}, {"a", a}}); },
               {"w.safetensors", "duplicate tensor name 'a'"});
  expect_error([&] { write_safetensors(dir / "w.safetensors", {{"__metadata__", a}}); },
               {"invalid tensor name"});
  // Nothing is left behind by a failed write.
  EXPECT_EQ(std::distance(std::filesystem::directory_iterator(dir.str()), {}), 0);
}

TEST(SafeTensors, FailedFillLeavesNoFile) {
  TempDir dir;
  std::vector<SafeTensorsEntry> e{{"a", DType::F32, {2}, [](std::span<uint8_t>) {
                                     BEAVER_FAIL("source unreadable");
                                   }}};
  expect_error([&] { write_safetensors(dir / "w.safetensors", e); }, {"source unreadable"});
  EXPECT_EQ(std::distance(std::filesystem::directory_iterator(dir.str()), {}), 0);
}

TEST(SafeTensors, MissingFileNamesThePath) {
  expect_error([] { SafeTensorsFile f("/nonexistent/dir/m.safetensors"); },
               {"/nonexistent/dir/m.safetensors", "cannot open"});
}

}  // namespace
}  // namespace beaver
