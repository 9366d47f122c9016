// Crash-safe checkpoint directories: publish order, retention, and a process killed while
// writing leaves the previous checkpoint as `latest`.
#include <gtest/gtest.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>

#include "csrc/error.h"
#include "train/checkpoint_dir.h"

namespace beaver::train {
namespace {

namespace fs = std::filesystem;

fs::path fresh_root(const char* name) {
  auto p = fs::temp_directory_path() / (std::string("beaver_ckpt_") + name + "_" +
                                        std::to_string(::getpid()));
  fs::remove_all(p);
  return p;
}

void write_text(const std::string& dir, const std::string& name, const std::string& text) {
  std::ofstream(fs::path(dir) / name) << text;
}

std::string read_text(const fs::path& p) {
  std::ifstream f(p);
  std::string s;
  std::getline(f, s);
  return s;
}

TEST(CheckpointDir, PublishesAndKeepsNewest) {
  const auto root = fresh_root("keep");
  EXPECT_EQ(latest_checkpoint(root.string()), "");
  for (int s : {10, 20, 30})
    write_checkpoint(root.string(), s, [&](const std::string& d) {
      write_text(d, "state.txt", std::to_string(s));
    }, 2);
  const std::string latest = latest_checkpoint(root.string());
  EXPECT_EQ(fs::path(latest).filename(), "step-00000030");
  EXPECT_EQ(read_text(fs::path(latest) / "state.txt"), "30");
  EXPECT_FALSE(fs::exists(root / "step-00000010"));
  EXPECT_TRUE(fs::exists(root / "step-00000020"));
  fs::remove_all(root);
}

TEST(CheckpointDir, FailedWriteLeavesPreviousLatest) {
  const auto root = fresh_root("fail");
  write_checkpoint(root.string(), 1, [&](const std::string& d) { write_text(d, "a", "1"); });
  EXPECT_THROW(write_checkpoint(root.string(), 2,
                                [&](const std::string& d) {
                                  write_text(d, "a", "partial");
                                  BEAVER_FAIL("disk full (simulated)");
                                }),
               Error);
  EXPECT_EQ(fs::path(latest_checkpoint(root.string())).filename(), "step-00000001");
  EXPECT_FALSE(fs::exists(root / "step-00000002"));
  int entries = 0;
  for ([[maybe_unused]] const auto& e : fs::directory_iterator(root)) ++entries;
  EXPECT_EQ(entries, 2);  // step-00000001 and latest: the temporary directory is gone
  fs::remove_all(root);
}

TEST(CheckpointDir, KilledDuringSaveLeavesPreviousLatest) {
  const auto root = fresh_root("kill");
  write_checkpoint(root.string(), 5, [&](const std::string& d) { write_text(d, "w", "five"); });
  int pipefd[2];
  ASSERT_EQ(::pipe(pipefd), 0);
  const pid_t pid = ::fork();
  ASSERT_GE(pid, 0);
  if (pid == 0) {
    // Child: start checkpoint 6, signal the parent mid-write, then wait to be killed.
    ::close(pipefd[0]);
    write_checkpoint(root.string(), 6, [&](const std::string& d) {
      write_text(d, "w", "six (half written)");
      const char x = 'x';
      (void)!::write(pipefd[1], &x, 1);
      ::pause();
    });
    ::_exit(0);
  }
  ::close(pipefd[1]);
  char x = 0;
  ASSERT_EQ(::read(pipefd[0], &x, 1), 1);
  ::kill(pid, SIGKILL);
  int status = 0;
  ::waitpid(pid, &status, 0);
  ::close(pipefd[0]);
  EXPECT_TRUE(WIFSIGNALED(status));
  const std::string latest = latest_checkpoint(root.string());
  EXPECT_EQ(fs::path(latest).filename(), "step-00000005");
  EXPECT_EQ(read_text(fs::path(latest) / "w"), "five");
  // A later save from a new process still succeeds next to the stale temporary directory.
  write_checkpoint(root.string(), 6, [&](const std::string& d) { write_text(d, "w", "six"); });
  EXPECT_EQ(read_text(fs::path(latest_checkpoint(root.string())) / "w"), "six");
  fs::remove_all(root);
}

TEST(CheckpointDir, LatestNamingMissingDirectoryIsAnError) {
  const auto root = fresh_root("missing");
  fs::create_directories(root);
  std::ofstream(root / "latest") << "step-00000099\n";
  EXPECT_THROW(latest_checkpoint(root.string()), Error);
  std::ofstream(root / "latest") << "../etc\n";
  EXPECT_THROW(latest_checkpoint(root.string()), Error);
  fs::remove_all(root);
}

}  // namespace
}  // namespace beaver::train
