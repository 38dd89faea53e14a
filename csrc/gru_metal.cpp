// eval_gpu of the GRU primitives: Metal builds dispatch metal/gru.metal per the shared launch plan;
// every other build has no GPU path.
#include "gru.h"

#include <stdexcept>

namespace dfnet4 {

#ifndef _METAL_
void GruForward::eval_gpu(const std::vector<mx::array>&, std::vector<mx::array>&) {
  throw std::runtime_error(
      "dfnet4.ops.gru: this build of dfnet4 has no GPU kernels (Metal builds only); run on the CPU "
      "stream (mx.set_default_device(mx.cpu)).");
}
void GruBackward::eval_gpu(const std::vector<mx::array>&, std::vector<mx::array>&) {
  throw std::runtime_error(
      "dfnet4.ops.gru: this build of dfnet4 has no GPU kernels (Metal builds only); run on the CPU "
      "stream (mx.set_default_device(mx.cpu)).");
}
#endif

}  // namespace dfnet4
