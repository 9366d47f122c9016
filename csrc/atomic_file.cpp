// See atomic_file.h: temp file + fsync + rename, removed again on failure.
#include "csrc/atomic_file.h"

#include <unistd.h>

#include <cerrno>
#include <filesystem>
#include <fstream>
#include <sstream>

#include "csrc/error.h"

namespace beaver {

AtomicFile::AtomicFile(std::string path) : path_(std::move(path)) {
  tmp_ = cat(path_, ".tmp.", ::getpid());
  errno = 0;
  f_ = std::fopen(tmp_.c_str(), "wb");
  if (!f_) BEAVER_IO_FAIL(tmp_, "cannot create file");
}

AtomicFile::~AtomicFile() {
  if (f_) {
    std::fclose(f_);
    std::remove(tmp_.c_str());
  }
}

void AtomicFile::write(const void* data, size_t n) {
  BEAVER_CHECK(f_ != nullptr, path_, ": write after commit");
  if (n == 0) return;
  errno = 0;
  if (std::fwrite(data, 1, n, f_) != n) BEAVER_IO_FAIL(tmp_, "write of ", n, " bytes failed");
}

void AtomicFile::commit() {
  BEAVER_CHECK(f_ != nullptr, path_, ": commit called twice");
  errno = 0;
  if (std::fflush(f_) != 0) BEAVER_IO_FAIL(tmp_, "flush failed");
  if (::fsync(::fileno(f_)) != 0) BEAVER_IO_FAIL(tmp_, "fsync failed");
  std::FILE* f = f_;
  f_ = nullptr;
  if (std::fclose(f) != 0) {
    std::remove(tmp_.c_str());
    BEAVER_IO_FAIL(tmp_, "close failed");
  }
  if (std::rename(tmp_.c_str(), path_.c_str()) != 0) {
    const int err = errno;
    std::remove(tmp_.c_str());
    errno = err;
    BEAVER_IO_FAIL(path_, "cannot rename ", tmp_, " into place");
  }
}

void write_text_file(const std::string& path, std::string_view text) {
  AtomicFile f(path);
  f.write(text);
  f.commit();
}

std::string read_text_file(const std::string& path) {
  errno = 0;
  std::ifstream in(path, std::ios::binary);
  if (!in) BEAVER_IO_FAIL(path, "cannot open file");
  std::ostringstream os;
  os << in.rdbuf();
  if (in.bad()) BEAVER_IO_FAIL(path, "read failed");
  return os.str();
}

void check_output_folder(const std::string& dir, bool overwrite, std::string_view what) {
  namespace fs = std::filesystem;
  std::error_code ec;
  const fs::file_status st = fs::status(dir, ec);
  if (!fs::exists(st)) return;
  if (!fs::is_directory(st))
    BEAVER_FAIL(what, ": ", dir, " is a file, not a folder; choose a folder path");
  if (overwrite) return;
  fs::directory_iterator it(dir, ec);
  if (ec) BEAVER_FAIL(what, ": cannot list ", dir, " (", ec.message(), ")");
  if (it == fs::directory_iterator()) return;  // empty
  size_t n = 0;
  std::string first;
  for (; it != fs::directory_iterator(); ++it, ++n)
    if (first.empty()) first = it->path().filename().string();
  BEAVER_FAIL(what, ": ", dir, " already holds ", n, n == 1 ? " entry" : " entries", " (", first,
              n > 1 ? ", ..." : "", "); choose another folder, or pass --overwrite to replace "
              "the files this command writes");
}

}  // namespace beaver
