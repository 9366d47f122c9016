#include "csrc/stop_signal.h"

#include <csignal>
#include <cstring>
#include <unistd.h>

namespace beaver {

namespace {

// The flag the handler sets (see the header for why it is static); 0: no stop requested.
volatile std::sig_atomic_t g_received = 0;
// Whether a guard is installed; touched only by guards, never by the handler.
volatile std::sig_atomic_t g_installed = 0;

extern "C" void on_stop_signal(int signal) {
  g_received = signal;
  // write(2) is async-signal-safe; the message is a constant.
  static const char msg[] =
      "\nbeaver: stop requested; finishing the current step and writing a checkpoint "
      "(send the signal again to quit at once)\n";
  const ssize_t ignored = ::write(STDERR_FILENO, msg, sizeof msg - 1);
  (void)ignored;
}

}  // namespace

struct StopSignalGuard::Saved {
  struct sigaction int_action {}, term_action {};
};

StopSignalGuard::StopSignalGuard() : saved_(std::make_unique<Saved>()) {
  BEAVER_CHECK(g_installed == 0, "StopSignalGuard: a guard is installed already (one at a time)");
  g_installed = 1;
  g_received = 0;
  struct sigaction action {};
  action.sa_handler = on_stop_signal;
  sigemptyset(&action.sa_mask);
  action.sa_flags = SA_RESETHAND | SA_RESTART;  // a second signal takes the default action
  ::sigaction(SIGINT, &action, &saved_->int_action);
  ::sigaction(SIGTERM, &action, &saved_->term_action);
}

StopSignalGuard::~StopSignalGuard() {
  ::sigaction(SIGINT, &saved_->int_action, nullptr);
  ::sigaction(SIGTERM, &saved_->term_action, nullptr);
  g_received = 0;
  g_installed = 0;
}

int StopSignalGuard::received() const { return int(g_received); }

const char* StopSignalGuard::name(int signal) {
  switch (signal) {
    case SIGINT: return "SIGINT";
    case SIGTERM: return "SIGTERM";
    default: return "a signal";
  }
}

}  // namespace beaver
