// Graceful stops for long runs: while a StopSignalGuard lives, SIGINT (Ctrl-C) and SIGTERM only
// set a flag. A trainer polls stop_requested() after each optimizer step, writes a resumable
// checkpoint and throws Interrupted, which the `beaver` entry point turns into exit code
// 128 + signal (130 for Ctrl-C, 143 for SIGTERM), as a shell reports a process killed by it.
// A second signal while the first is being handled ends the process at once (the handler is
// installed with SA_RESETHAND: the default action comes back after the first delivery).
//
// Why one piece of static state: a signal handler receives only the signal number, so the flag
// it sets must live in static storage; a volatile std::sig_atomic_t is the only object the C++
// standard lets a handler write. It is private to stop_signal.cpp, written only by the handler
// and by the guard (cleared when a guard is installed and when it goes), and read only through
// the guard; at most one guard exists at a time (a second one is refused).
#pragma once

#include <memory>
#include <string>

#include "csrc/error.h"

namespace beaver {

// A run stopped on request; what() says where its checkpoint is.
class Interrupted : public Error {
 public:
  Interrupted(int signal, const std::string& what) : Error(what), signal_(signal) {}
  int signal() const { return signal_; }
  int exit_code() const { return 128 + signal_; }

 private:
  int signal_;
};

class StopSignalGuard {
 public:
  StopSignalGuard();  // installs the handlers for SIGINT and SIGTERM
  ~StopSignalGuard();  // restores the previous handlers
  StopSignalGuard(const StopSignalGuard&) = delete;
  StopSignalGuard& operator=(const StopSignalGuard&) = delete;

  // The signal received since the guard was installed (SIGINT or SIGTERM), or 0.
  int received() const;
  bool stop_requested() const { return received() != 0; }
  // "SIGINT" / "SIGTERM" for received().
  static const char* name(int signal);

 private:
  struct Saved;  // the handlers in force before (struct sigaction stays out of this header)
  std::unique_ptr<Saved> saved_;
};

}  // namespace beaver
