// Writing a file so that readers only ever see the old contents or the complete new ones:
// bytes go to `<path>.tmp.<pid>`, and commit() flushes, fsyncs and renames over `path`.
// If the writer is destroyed without commit() (an exception on the way), the temporary file is
// removed. Every failure names the path and the OS error.
#pragma once

#include <cstddef>
#include <cstdio>
#include <string>
#include <string_view>

namespace beaver {

class AtomicFile {
 public:
  explicit AtomicFile(std::string path);
  ~AtomicFile();
  AtomicFile(const AtomicFile&) = delete;
  AtomicFile& operator=(const AtomicFile&) = delete;

  void write(const void* data, size_t n);
  void write(std::string_view s) { write(s.data(), s.size()); }
  // Flush, fsync, close and rename into place. Must be called exactly once.
  void commit();
  const std::string& path() const { return path_; }

 private:
  std::string path_;
  std::string tmp_;
  std::FILE* f_ = nullptr;
};

// Whole-file helpers built on AtomicFile / plain reads.
void write_text_file(const std::string& path, std::string_view text);
std::string read_text_file(const std::string& path);

// Commands that write a whole folder refuse one that exists and holds anything, unless told
// to overwrite (then its files are replaced as they are written; other files stay). `what`
// names the command and flag for the message ("eval --output"). A path that is a file is
// refused either way. Creates nothing.
void check_output_folder(const std::string& dir, bool overwrite, std::string_view what);

}  // namespace beaver
