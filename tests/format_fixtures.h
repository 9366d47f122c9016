// Helpers for the file-format tests: a temporary directory removed on exit, raw safetensors
// bytes from a hand-written header (to build malformed files), and an assertion that a call
// throws beaver::Error whose message contains given substrings.
#pragma once

#include <gtest/gtest.h>
#include <unistd.h>

#include <cstdint>
#include <filesystem>
#include <fstream>
#include <initializer_list>
#include <string>
#include <vector>

#include "csrc/error.h"

#include "testutil.h"

namespace beaver::test {

class TempDir {
 public:
  TempDir() {
    const auto* info = ::testing::UnitTest::GetInstance()->current_test_info();
    std::string stem = info ? std::string(info->test_suite_name()) + "_" + info->name() : "t";
    for (auto& c : stem)
      if (c == '/') c = '_';
    path_ = std::filesystem::temp_directory_path() /
            ("beaver_" + stem + "_" + std::to_string(::getpid()));
    std::filesystem::remove_all(path_);
    std::filesystem::create_directories(path_);
  }
  ~TempDir() {
    std::error_code ec;
    std::filesystem::remove_all(path_, ec);
  }
  TempDir(const TempDir&) = delete;
  TempDir& operator=(const TempDir&) = delete;
  std::string str() const { return path_.string(); }
  std::string operator/(const std::string& name) const { return (path_ / name).string(); }

 private:
  std::filesystem::path path_;
};

inline void write_bytes(const std::string& path, const std::vector<uint8_t>& bytes) {
  std::ofstream out(path, std::ios::binary);
  out.write(reinterpret_cast<const char*>(bytes.data()), std::streamsize(bytes.size()));
}

inline std::vector<uint8_t> read_bytes(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  return {std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>()};
}

// 8-byte length + header + buffer, with the length field given explicitly or from the header.
inline std::vector<uint8_t> raw_safetensors(const std::string& header, size_t buffer_bytes,
                                            int64_t length_override = -1) {
  const uint64_t n = length_override >= 0 ? uint64_t(length_override) : header.size();
  std::vector<uint8_t> b;
  for (int i = 0; i < 8; ++i) b.push_back(uint8_t(n >> (8 * i)));
  b.insert(b.end(), header.begin(), header.end());
  for (size_t i = 0; i < buffer_bytes; ++i) b.push_back(uint8_t(i * 7 + 1));
  return b;
}

}  // namespace beaver::test
