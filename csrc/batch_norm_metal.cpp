// eval_gpu of the batch-norm primitives. The Metal kernels (metal/batch_norm.metal) and their launch
// plan (batch_norm_launch.h) are written and run on the emulator; the host code that dispatches them
// waits for the shared Metal host helper, so every build raises a clear error on the GPU for now.
#include "batch_norm.h"

#include <stdexcept>

namespace dfnet4 {

namespace {
[[noreturn]] void no_gpu() {
  throw std::runtime_error(
      "dfnet4.ops.batch_norm: no GPU evaluation in this build yet (the Metal host code is pending); run "
      "it on the CPU stream, e.g. with mx.stream(mx.cpu)");
}
}  // namespace

void BatchNormTrain::eval_gpu(const std::vector<mx::array>&, std::vector<mx::array>&) { no_gpu(); }
void BatchNormTrainGrad::eval_gpu(const std::vector<mx::array>&, std::vector<mx::array>&) { no_gpu(); }

}  // namespace dfnet4
