#include "train/checkpoint_dir.h"

#include <fcntl.h>
#include <unistd.h>

#include <algorithm>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <vector>

#include "csrc/error.h"

namespace beaver::train {

namespace fs = std::filesystem;

namespace {

void fsync_path(const fs::path& p) {
  const int fd = ::open(p.c_str(), O_RDONLY);
  if (fd < 0) return;  // best effort: some file systems refuse O_RDONLY on directories
  ::fsync(fd);
  ::close(fd);
}

std::string step_name(int64_t step) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "step-%08lld", static_cast<long long>(step));
  return buf;
}

}  // namespace

std::string write_checkpoint(const std::string& root, int64_t step,
                             const std::function<void(const std::string& dir)>& write_files,
                             int keep) {
  BEAVER_CHECK(step >= 0, "checkpoint step must be non-negative, got ", step);
  std::error_code ec;
  fs::create_directories(root, ec);
  if (ec) BEAVER_FAIL(root, ": cannot create checkpoint root (", ec.message(), ")");
  const fs::path final_dir = fs::path(root) / step_name(step);
  const fs::path tmp = fs::path(root) / (step_name(step) + ".tmp-" + std::to_string(::getpid()));
  fs::remove_all(tmp, ec);
  fs::create_directories(tmp, ec);
  if (ec) BEAVER_FAIL(tmp.string(), ": cannot create (", ec.message(), ")");
  try {
    write_files(tmp.string());
  } catch (...) {
    fs::remove_all(tmp, ec);  // a failed save leaves nothing behind but the old checkpoints
    throw;
  }
  for (const auto& e : fs::directory_iterator(tmp)) fsync_path(e.path());
  fsync_path(tmp);
  if (fs::exists(final_dir)) fs::remove_all(final_dir);  // re-saving the same step
  fs::rename(tmp, final_dir, ec);
  if (ec) BEAVER_FAIL(final_dir.string(), ": cannot publish checkpoint (", ec.message(), ")");
  // Publish: latest.tmp then rename over latest.
  const fs::path latest = fs::path(root) / "latest";
  const fs::path latest_tmp = fs::path(root) / ("latest.tmp-" + std::to_string(::getpid()));
  {
    std::ofstream f(latest_tmp);
    f << final_dir.filename().string() << "\n";
    f.flush();
    if (!f) BEAVER_IO_FAIL(latest_tmp.string(), "write failed");
  }
  fsync_path(latest_tmp);
  fs::rename(latest_tmp, latest, ec);
  if (ec) BEAVER_FAIL(latest.string(), ": cannot update (", ec.message(), ")");
  fsync_path(root);
  if (keep > 0) {
    std::vector<fs::path> steps;
    for (const auto& e : fs::directory_iterator(root)) {
      const std::string n = e.path().filename().string();
      if (e.is_directory() && n.rfind("step-", 0) == 0 && n.find(".tmp") == std::string::npos)
        steps.push_back(e.path());
    }
    std::sort(steps.begin(), steps.end());
    for (size_t i = 0; i + size_t(keep) < steps.size(); ++i) fs::remove_all(steps[i], ec);
  }
  return final_dir.string();
}

std::string latest_checkpoint(const std::string& root) {
  const fs::path latest = fs::path(root) / "latest";
  if (!fs::exists(latest)) return {};
  std::ifstream f(latest);
  std::string name;
  std::getline(f, name);
  BEAVER_CHECK(!name.empty() && name.find('/') == std::string::npos, latest.string(),
               ": does not name a checkpoint directory");
  const fs::path dir = fs::path(root) / name;
  std::error_code ec;  // a name the file system cannot even look up (too long, ...) is refused
  if (!fs::is_directory(dir, ec))
    BEAVER_FAIL(latest.string(), " names ", dir.string(), ", which does not exist");
  return dir.string();
}

}  // namespace beaver::train
