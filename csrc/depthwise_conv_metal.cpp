// eval_gpu of the depthwise frequency-conv primitives in Metal builds (elsewhere FlaggedPrimitive's
// says there are no GPU kernels): the kernels (metal/depthwise_conv.metal) and their launch plan
// (depthwise_conv_launch.h) pass the emulated-Metal tests; the host code is still to be written.
#include "depthwise_conv.h"

#ifdef _METAL_
#include "metal_pending.h"

namespace dfnet4 {

void DepthwiseConv::eval_gpu(const std::vector<mx::array>&, std::vector<mx::array>&) {
  metal_host_pending(kDwNames.op);
}
void DepthwiseConvGrad::eval_gpu(const std::vector<mx::array>&, std::vector<mx::array>&) {
  metal_host_pending(kDwNames.op);
}

}  // namespace dfnet4
#endif
