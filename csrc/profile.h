// Profiler ranges (NVTX 3, header-only from the CUDA toolkit) so that Nsight Systems shows
// which op, which training step and which phase of an RL step a span of GPU work belongs to.
//
//   { ProfileRange r("rl/generate"); ... }   // pushes on construction, pops on destruction
//   ProfileRange r("rl/actor_update"); ...; r.end();   // or earlier, once
//
// Without a profiler attached NVTX 3 calls go through a function pointer that points at a
// no-op, so a range costs a predictable branch and no allocation. The build option
// BEAVER_NVTX=OFF, or a build without the CUDA toolkit, compiles every range to nothing.
// NVTX copies the name, so it need only live for the constructor call.
#pragma once

#if defined(BEAVER_WITH_NVTX)
#include <nvtx3/nvToolsExt.h>
#endif

namespace beaver {

class ProfileRange {
 public:
  explicit ProfileRange(const char* name) {
#if defined(BEAVER_WITH_NVTX)
    nvtxRangePushA(name);
#else
    static_cast<void>(name);
#endif
  }
  ~ProfileRange() { end(); }
  // Closes the range before the end of the scope (later calls and the destructor do nothing).
  void end() {
#if defined(BEAVER_WITH_NVTX)
    if (open_) nvtxRangePop();
#endif
    open_ = false;
  }
  ProfileRange(const ProfileRange&) = delete;
  ProfileRange& operator=(const ProfileRange&) = delete;

 private:
  bool open_ = true;
};

// True when the ranges are compiled in (the build had NVTX and BEAVER_NVTX was ON).
constexpr bool profile_ranges_enabled() {
#if defined(BEAVER_WITH_NVTX)
  return true;
#else
  return false;
#endif
}

}  // namespace beaver
