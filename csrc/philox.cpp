#include "csrc/philox.h"

#include <cmath>

namespace beaver {

float PhiloxStream::normal() {
  // 1 - u lies in (0, 1], so the log is finite.
  const double u1 = 1.0 - double(uniform());
  const double u2 = double(uniform());
  return float(std::sqrt(-2.0 * std::log(u1)) * std::cos(6.283185307179586 * u2));
}

}  // namespace beaver
