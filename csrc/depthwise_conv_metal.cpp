// eval_gpu of the depthwise frequency-conv primitives. The Metal kernels (metal/depthwise_conv.metal)
// and their launch plan (depthwise_conv_launch.h) are written and run on the emulator; the host code
// that dispatches them waits for the shared Metal host helper, so every build raises a clear error
// on the GPU for now.
#include "depthwise_conv.h"

#include <stdexcept>

namespace dfnet4 {

namespace {
[[noreturn]] void no_gpu() {
  throw std::runtime_error(
      "dfnet4.ops.depthwise_conv: no GPU evaluation in this build yet (the Metal host code is pending); run "
      "it on the CPU stream, e.g. with mx.stream(mx.cpu)");
}
}  // namespace

void DepthwiseConv::eval_gpu(const std::vector<mx::array>&, std::vector<mx::array>&) { no_gpu(); }
void DepthwiseConvGrad::eval_gpu(const std::vector<mx::array>&, std::vector<mx::array>&) { no_gpu(); }

}  // namespace dfnet4
