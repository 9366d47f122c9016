// Errors are messages: every failure names what was wrong and where (source file and line,
// plus whatever the caller knows: a tensor name, a data file and line, expected vs found).
// Failures throw beaver::Error; the `beaver` entry point catches it, prints it and exits
// non-zero. CUDA, cuBLAS and NCCL status codes have their own check macros in
// csrc/cuda_check.h so that this header stays free of CUDA includes.
#pragma once

#include <sstream>
#include <stdexcept>
#include <string>
#include <string_view>

namespace beaver {

class Error : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

// Concatenate any streamable values into one string: cat("expected ", 3, " got ", x).
template <typename... Args>
std::string cat(const Args&... args) {
  std::ostringstream os;
  (os << ... << args);
  return os.str();
}

// Strip the directory part of __FILE__ so messages stay short but still locate the source.
constexpr std::string_view source_basename(std::string_view path) {
  const auto pos = path.find_last_of('/');
  return pos == std::string_view::npos ? path : path.substr(pos + 1);
}

[[noreturn]] void throw_error(std::string_view file, int line, const std::string& what);
// An I/O failure: names the path and the OS error (errno) after the message.
[[noreturn]] void throw_io_error(std::string_view file, int line, const std::string& path,
                                 const std::string& what);

}  // namespace beaver

#define BEAVER_FAIL(...) ::beaver::throw_error(__FILE__, __LINE__, ::beaver::cat(__VA_ARGS__))
// The message is what the user reads: it says what is wrong, not the C++ condition (the
// source file and line at its end locate the check).
#define BEAVER_CHECK(cond, ...)                                                    \
  do {                                                                             \
    if (!(cond)) [[unlikely]]                                                      \
      ::beaver::throw_error(__FILE__, __LINE__, ::beaver::cat(__VA_ARGS__));       \
  } while (0)
#define BEAVER_IO_FAIL(path, ...) \
  ::beaver::throw_io_error(__FILE__, __LINE__, (path), ::beaver::cat(__VA_ARGS__))
