// Shared by the libFuzzer targets whose parser reads files by path: a private scratch folder
// (one per fuzzing process, removed at exit) and a way to place the input there.
#pragma once
#include <unistd.h>

#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <string>
#include <system_error>

namespace beaver::fuzz {

class Scratch {
 public:
  Scratch() {
    dir_ = std::filesystem::temp_directory_path() /
           ("beaver-fuzz-" + std::to_string(static_cast<long>(::getpid())));
    std::filesystem::create_directories(dir_);
  }
  ~Scratch() {
    std::error_code ec;
    std::filesystem::remove_all(dir_, ec);
  }
  Scratch(const Scratch&) = delete;
  Scratch& operator=(const Scratch&) = delete;

  const std::filesystem::path& dir() const { return dir_; }

  // Writes `size` bytes as dir()/name (replacing it) and returns the path.
  std::string put(const std::string& name, const uint8_t* data, size_t size) const {
    const auto p = dir_ / name;
    std::ofstream f(p, std::ios::binary | std::ios::trunc);
    f.write(reinterpret_cast<const char*>(data), static_cast<std::streamsize>(size));
    if (!f) {
      std::fprintf(stderr, "fuzz: cannot write %s\n", p.c_str());
      std::abort();
    }
    return p.string();
  }

 private:
  std::filesystem::path dir_;
};

// The repository root, for targets that build on committed fixtures (tests/data).
inline std::filesystem::path source_root() {
  if (const char* r = std::getenv("BEAVER_ROOT")) return r;
#ifdef BEAVER_FUZZ_ROOT
  return BEAVER_FUZZ_ROOT;
#else
  return std::filesystem::current_path();
#endif
}

}  // namespace beaver::fuzz
