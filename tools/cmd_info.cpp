// `beaver info`: what this build is and what it can use (backends, threads, devices).
#include <omp.h>

#include <cstdio>
#include <string>

#include "csrc/device.h"
#include "tools/commands.h"

namespace beaver::tools {

void add_info_command(CLI::App& app) {
  auto* cmd = app.add_subcommand("info", "Print the build configuration and available devices");
  cmd->callback([] {
    std::printf("beaver 0.1.0\n");
#ifdef BEAVER_WITH_CUDA
    std::printf("cuda backend: built\n");
#else
    std::printf("cuda backend: not built\n");
#endif
    std::string why;
    const bool ok = cuda_available(&why);
    std::printf("cuda device: %s\n", ok ? "available" : why.c_str());
    std::printf("cpu threads: %d\n", omp_get_max_threads());
  });
}

}  // namespace beaver::tools
