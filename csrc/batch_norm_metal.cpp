// eval_gpu of the batch-norm primitives in Metal builds (elsewhere FlaggedPrimitive's says there are
// no GPU kernels): the kernels (metal/batch_norm.metal) and their launch plan (batch_norm_launch.h)
// pass the emulated-Metal tests; the host code that dispatches them is still to be written.
#include "batch_norm.h"

#ifdef _METAL_
#include "metal_pending.h"

namespace dfnet4 {

void BatchNormTrain::eval_gpu(const std::vector<mx::array>&, std::vector<mx::array>&) {
  metal_host_pending(kBnNames.op);
}
void BatchNormTrainGrad::eval_gpu(const std::vector<mx::array>&, std::vector<mx::array>&) {
  metal_host_pending(kBnNames.op);
}

}  // namespace dfnet4
#endif
