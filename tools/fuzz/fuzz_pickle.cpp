// libFuzzer target for the torch.save loader. Inputs starting with "PK" go through the whole
// archive path (zip central directory, data.pkl, storage lookup, bounds); anything else is fed
// to the restricted unpickler directly, which reaches deep opcode sequences faster. Either the
// input is accepted and every tensor byte lies inside it (read here so AddressSanitizer would
// see an escape), or it is refused with beaver::Error.
#include <cstddef>
#include <cstdint>

#include "csrc/error.h"
#include "csrc/torch_pickle.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  try {
    unsigned sum = 0;
    if (size >= 2 && data[0] == 'P' && data[1] == 'K') {
      for (const auto& t : beaver::parse_torch_zip(data, size, "fuzz"))
        for (uint64_t i = 0; i < t.nbytes(); ++i) sum += t.data[i];
    } else {
      for (const auto& t : beaver::unpickle_state_dict(data, size, "fuzz"))
        sum += unsigned(t.size.size() + t.storage_key.size());
    }
    volatile unsigned sink = sum;
    (void)sink;
  } catch (const beaver::Error&) {
    // Refusing malformed input is the expected outcome.
  }
  return 0;
}
