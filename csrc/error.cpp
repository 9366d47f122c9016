#include "csrc/error.h"

#include <cerrno>
#include <cstring>

namespace beaver {

void throw_error(std::string_view file, int line, const std::string& what) {
  throw Error(cat(what, " [", source_basename(file), ":", line, "]"));
}

void throw_io_error(std::string_view file, int line, const std::string& path,
                    const std::string& what) {
  const int err = errno;
  std::string msg = cat(path, ": ", what);
  if (err != 0) msg += cat(" (", std::strerror(err), ")");
  throw Error(cat(msg, " [", source_basename(file), ":", line, "]"));
}

}  // namespace beaver
