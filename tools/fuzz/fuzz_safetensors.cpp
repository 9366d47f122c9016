// libFuzzer target for the safetensors header parser: any byte string must either parse into
// tensors whose every byte lies inside the input, or be refused with beaver::Error. Reading each
// tensor's bytes lets AddressSanitizer catch an offset check that lets something through.
#include <cstddef>
#include <cstdint>

#include "csrc/error.h"
#include "csrc/safetensors.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  try {
    const auto h = beaver::parse_safetensors(data, size, "fuzz");
    unsigned sum = 0;
    for (const auto& t : h.tensors) {
      for (uint64_t i = 0; i < t.nbytes(); ++i) sum += t.data[i];
      if (t.dtype && t.shape.size() <= size_t(beaver::kMaxDims)) (void)t.tensor().nbytes();
    }
    volatile unsigned sink = sum;
    (void)sink;
  } catch (const beaver::Error&) {
    // Refusing malformed input is the expected outcome.
  }
  return 0;
}
