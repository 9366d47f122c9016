// What the NCCL GPU tests (tests/gpu/test_comm_nccl.cpp, tests/gpu/test_nccl_sft.cpp) need
// before they run: a usable device, NCCL in the build, and one device per rank (NCCL rejects
// two ranks on one device). BEAVER_REQUIRE_NCCL(n) skips the test, saying which is missing.
#pragma once

#include <gtest/gtest.h>

#include <cuda_runtime.h>

#include <string>

#include "csrc/comm.h"
#include "csrc/device.h"

namespace beaver::test {

inline int visible_cuda_devices() {
  int n = 0;
  if (cudaGetDeviceCount(&n) != cudaSuccess) {
    cudaGetLastError();  // clear the error state
    return 0;
  }
  return n;
}

// Why NCCL cannot run `devices` ranks here, or empty when it can.
inline std::string nccl_missing(int devices) {
  std::string why;
  if (!cuda_available(&why)) return why;
  if (!nccl_available()) return "this build has no NCCL (libnccl not found at configure time)";
  if (const int n = visible_cuda_devices(); n < devices)
    return "needs " + std::to_string(devices) + " visible CUDA devices (NCCL takes one rank " +
           "per device), found " + std::to_string(n);
  return "";
}

#define BEAVER_REQUIRE_NCCL(devices)                                                  \
  do {                                                                                \
    if (const std::string beaver_why_ = ::beaver::test::nccl_missing(devices);        \
        !beaver_why_.empty())                                                         \
      GTEST_SKIP() << beaver_why_;                                                    \
  } while (0)

}  // namespace beaver::test
