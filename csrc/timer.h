// Wall-clock timing for host code and whole steps. GPU kernels are timed with CUDA events in
// the benches; a step timer brackets the work with a context synchronize.
#pragma once

#include <chrono>

namespace beaver {

class Timer {
 public:
  Timer() : start_(std::chrono::steady_clock::now()) {}
  void reset() { start_ = std::chrono::steady_clock::now(); }
  double elapsed_ms() const {
    return std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - start_)
        .count();
  }
  double elapsed_s() const { return elapsed_ms() / 1000.0; }

 private:
  std::chrono::steady_clock::time_point start_;
};

}  // namespace beaver
