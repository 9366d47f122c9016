// Random initialisation of a causal LM, for training from scratch (the toy world starts SFT
// from random weights). Hugging Face's LLaMA init: every embedding and linear weight ~ N(0, std)
// with std = initializer_range (0.02), RMSNorm weights 1, biases 0. Draws come from Philox
// (seed, one stream per tensor in table order), so the same seed gives the same model on every
// machine.
#pragma once

#include <cstdint>

#include "model/llama.h"

namespace beaver::train {

void random_init(const model::LlamaModel& m, uint64_t seed, double std = 0.02);

}  // namespace beaver::train
