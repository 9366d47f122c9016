// HF-style random init of a LlamaModel (init_model.h).
#include "train/init_model.h"

#include <vector>

#include "csrc/error.h"
#include "csrc/philox.h"

namespace beaver::train {

void random_init(const model::LlamaModel& m, uint64_t seed, double std) {
  BEAVER_CHECK(std > 0.0, "random_init: std must be > 0, got ", std);
  uint64_t stream = 0x1417;
  for (const auto& p : m.params()) {
    const int64_t n = p.shape.numel();
    std::vector<float> host(size_t(n), 0.0f);
    if (p.is_norm) {
      std::fill(host.begin(), host.end(), 1.0f);
    } else if (!p.is_bias) {
      PhiloxStream rng(seed, stream);
      for (auto& x : host) x = float(std * double(rng.normal()));
    }
    ++stream;
    copy_tensor(m.param(p.name), Tensor(host.data(), DType::F32, p.shape, Device::CPU));
  }
}

}  // namespace beaver::train
