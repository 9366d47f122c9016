#include "train/checkpoint_dir.h"

#include <fcntl.h>
#include <unistd.h>

#include <algorithm>
#include <csignal>
#include <cstdlib>
#include <cstring>
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

void publish(const std::string& root, const fs::path& tmp, const fs::path& final_dir, int keep);

}  // namespace

std::string write_checkpoint(const std::string& root, int64_t step,
                             const std::function<void(const std::string& dir)>& write_files,
                             int keep, Communicator* comm) {
  BEAVER_CHECK(step >= 0, "checkpoint step must be non-negative, got ", step);
  const bool multi = comm && comm->size() > 1;
  const bool root_rank = !comm || comm->is_root();
  std::error_code ec;
  const fs::path final_dir = fs::path(root) / step_name(step);
  std::string tmp_name = step_name(step) + ".tmp-" + std::to_string(::getpid());
  std::string setup_error;
  if (root_rank) {
    fs::create_directories(root, ec);
    if (ec) setup_error = cat(root, ": cannot create checkpoint root (", ec.message(), ")");
    fs::remove_all(fs::path(root) / tmp_name, ec);
    if (setup_error.empty()) fs::create_directories(fs::path(root) / tmp_name, ec);
    if (setup_error.empty() && ec)
      setup_error = cat((fs::path(root) / tmp_name).string(), ": cannot create (", ec.message(), ")");
  }
  if (multi) {
    comm->broadcast(tmp_name, 0);
    comm->broadcast(setup_error, 0);
  }
  if (!setup_error.empty()) BEAVER_FAIL(setup_error);
  const fs::path tmp = fs::path(root) / tmp_name;
  std::string write_error;
  try {
    write_files(tmp.string());
  } catch (const std::exception& e) {
    write_error = e.what();
  }
  if (multi) {
    if (const char* kill = std::getenv("BEAVER_TEST_KILL_RANK_IN_SAVE")) {
      // "<rank>" or "<rank>@<step>"
      const char* at = std::strchr(kill, '@');
      if (std::atoi(kill) == comm->rank() && (!at || std::atoll(at + 1) == step))
        std::raise(SIGKILL);
    }
    if (!comm->all_true(write_error.empty())) {
      if (root_rank) fs::remove_all(tmp, ec);
      BEAVER_FAIL(final_dir.string(), ": a rank failed to write its part of the checkpoint",
                  write_error.empty() ? std::string() : cat(" (this rank: ", write_error, ")"));
    }
  }
  if (!write_error.empty()) {
    fs::remove_all(tmp, ec);  // a failed save leaves nothing behind but the old checkpoints
    BEAVER_FAIL(write_error);
  }
  if (!root_rank) {
    comm->barrier();  // rank 0 publishes
    return final_dir.string();
  }
  // The other ranks wait in a barrier for the publish; a failure here stops the job through
  // rank 0's error (the caller aborts all ranks).
  publish(root, tmp, final_dir, keep);
  if (multi) comm->barrier();
  return final_dir.string();
}

namespace {
void publish(const std::string& root, const fs::path& tmp, const fs::path& final_dir, int keep) {
  std::error_code ec;
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
}
}  // namespace

std::string latest_checkpoint(const std::string& root) {
  const fs::path latest = fs::path(root) / "latest";
  if (!fs::exists(latest)) return {};
  std::ifstream f(latest);
  std::string name;
  std::getline(f, name);
  BEAVER_CHECK(!name.empty() && name.find('/') == std::string::npos, latest.string(),
               ": does not name a checkpoint directory");
  const fs::path dir = fs::path(root) / name;
  if (!fs::is_directory(dir))
    BEAVER_FAIL(latest.string(), " names ", dir.string(), ", which does not exist");
  return dir.string();
}

}  // namespace beaver::train
